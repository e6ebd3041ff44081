"""The block-diffusion drafter: config checks, mask token, shapes, and training/decoding parity of one block."""
from __future__ import annotations

import dataclasses

import pytest
import torch

from specframe.drafters import DRAFTERS
from specframe.drafters.block_diffusion import BlockDiffusionConfig, BlockDiffusionDrafter
from specframe.errors import ConfigError


@pytest.mark.parametrize("kwargs, match", [
    ({"num_layers": 0}, "num_layers must be >= 1"),
    ({"block_size": 1}, r"block_size must be in \[2, 256\]"),
    ({"block_size": 257}, r"block_size must be in \[2, 256\]"),
])
def test_config_rejects_bad_values(kwargs, match) -> None:
    with pytest.raises(ConfigError, match=match):
        DRAFTERS.get("block_diffusion").make_config(kwargs, "drafter")


def test_learned_mask_embedding_without_a_spare_row(tiny_spec) -> None:
    d = BlockDiffusionDrafter(BlockDiffusionConfig(block_size=4), tiny_spec)
    assert d.mask_token_id is None and d.mask_embedding is not None
    assert d.mask_embedding.shape == (tiny_spec.hidden_size,)
    with pytest.raises(ValueError, match="no spare embedding row"):
        BlockDiffusionDrafter(BlockDiffusionConfig(mask_token="spare_row"), tiny_spec)


def test_spare_row_mask_token(tiny_spec) -> None:
    spec = dataclasses.replace(tiny_spec, spare_token_id=258)
    d = BlockDiffusionDrafter(BlockDiffusionConfig(block_size=4), spec)
    assert d.mask_token_id == 258 and d.mask_embedding is None
    assert "mask_embedding" not in dict(d.named_parameters())
    emb = torch.randn(1, 2, spec.hidden_size)
    with pytest.raises(RuntimeError, match="mask_embed"):
        d.block_inputs(emb)
    mask = torch.randn(spec.hidden_size)
    blocks = d.block_inputs(emb, mask)
    assert blocks.shape == (1, 2, 4, spec.hidden_size)
    assert torch.equal(blocks[:, :, 0], emb) and torch.equal(blocks[0, 1, 3], mask)


def test_block_inputs_are_anchor_then_masks(tiny_spec) -> None:
    d = BlockDiffusionDrafter(BlockDiffusionConfig(block_size=5), tiny_spec)
    emb = torch.randn(2, 3, tiny_spec.hidden_size)
    blocks = d.block_inputs(emb)
    assert torch.equal(blocks[:, :, 0], emb)
    assert torch.equal(blocks[:, :, 1:], d.mask_embedding.expand(2, 3, 4, -1))


def test_gqa_and_layer_count(tiny_spec) -> None:
    d = BlockDiffusionDrafter(BlockDiffusionConfig(num_layers=3, num_heads=4, num_kv_heads=1, block_size=4),
                              tiny_spec)
    assert len(d.layers) == 3
    assert d.layers[0].k_proj.out_features == d.head_dim and d.layers[0].q_proj.out_features == 4 * d.head_dim
    out = d(torch.randn(1, 10, len(tiny_spec.tap_layers) * tiny_spec.hidden_size), torch.ones(1, 10, dtype=torch.bool),
            torch.randn(1, 2, tiny_spec.hidden_size), torch.tensor([[3, 6]]), torch.ones(1, 2, dtype=torch.bool))
    assert out.shape == (1, 2, 4, tiny_spec.hidden_size) and torch.isfinite(out).all()


@pytest.mark.parametrize("anchor", [1, 5, 11])
def test_training_forward_equals_decoding_one_block(tiny_spec, anchor: int) -> None:
    """Train/serve parity: at decode time the drafter caches K/V of the context before the anchor and runs one
    block with no mask; that must equal the block's output in the all-blocks training forward."""
    torch.manual_seed(0)
    d = BlockDiffusionDrafter(BlockDiffusionConfig(num_layers=2, block_size=4), tiny_spec).eval()
    S, H = 12, tiny_spec.hidden_size
    context = torch.randn(1, S, len(tiny_spec.tap_layers) * H)
    emb = torch.randn(1, 3, H)
    anchors = torch.tensor([[anchor, max(0, anchor - 1), min(S - 1, anchor + 2)]])
    with torch.no_grad():
        train_out = d(context, torch.ones(1, S, dtype=torch.bool), emb, anchors, torch.ones(1, 3, dtype=torch.bool))
        kv = d.context_kv(d.fuse_context(context[:, :anchor]), torch.arange(anchor).unsqueeze(0))
        decode_out = d.run_layers(d.block_inputs(emb[:, :1]), torch.tensor([[anchor]]), kv, None)
    torch.testing.assert_close(decode_out[:, 0], train_out[:, 0], atol=1e-5, rtol=1e-5)
