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


def test_auto_mask_is_a_frozen_row_without_a_spare_row(tiny_spec) -> None:
    """auto must pick what every engine serves: the target's own row (tiny: unk, else pad, else eos)."""
    d = BlockDiffusionDrafter(BlockDiffusionConfig(block_size=4), tiny_spec)
    assert tiny_spec.spare_token_id is None and tiny_spec.mask_row is not None
    assert d.mask_kind == "frozen_row" and d.mask_token_id == tiny_spec.mask_row
    assert d.mask_embedding is None and "mask_embedding" not in dict(d.named_parameters())


def test_learned_mask_embedding_when_asked(tiny_spec) -> None:
    d = BlockDiffusionDrafter(BlockDiffusionConfig(block_size=4, mask_token="learned"), tiny_spec)
    assert d.mask_kind == "learned" and d.mask_token_id is None and d.mask_embedding is not None
    assert d.mask_embedding.shape == (tiny_spec.hidden_size,)
    with pytest.raises(ValueError, match="no spare embedding row"):
        BlockDiffusionDrafter(BlockDiffusionConfig(mask_token="spare_row"), tiny_spec)


def test_frozen_row_by_id_or_by_token_text(tiny_target) -> None:
    spec = tiny_target.spec
    eos_text = tiny_target.tokenizer.eos_token
    eos = tiny_target.tokenizer.eos_token_id
    by_id = BlockDiffusionDrafter(BlockDiffusionConfig(mask_token="frozen_row", mask_token_id=eos), spec)
    by_text = BlockDiffusionDrafter(BlockDiffusionConfig(mask_token_id=eos_text), spec)  # auto + a row: frozen
    assert by_id.mask_token_id == by_text.mask_token_id == eos and by_text.mask_kind == "frozen_row"
    with pytest.raises(ValueError, match="not one token of the target's tokenizer"):
        BlockDiffusionDrafter(BlockDiffusionConfig(mask_token_id="no such token"), spec)
    with pytest.raises(ValueError, match=r"outside the target's vocabulary \[0, 259\]"):
        BlockDiffusionDrafter(BlockDiffusionConfig(mask_token_id=260), spec)
    with pytest.raises(ConfigError, match="not used with mask_token: spare_row"):
        DRAFTERS.get("block_diffusion").make_config({"mask_token": "spare_row", "mask_token_id": 3}, "drafter")


def test_spare_row_mask_token(tiny_spec) -> None:
    spec = dataclasses.replace(tiny_spec, spare_token_id=258)
    d = BlockDiffusionDrafter(BlockDiffusionConfig(block_size=4), spec)
    assert d.mask_kind == "spare_row" and d.mask_token_id == 258 and d.mask_embedding is None
    emb = torch.randn(1, 2, spec.hidden_size)
    with pytest.raises(RuntimeError, match="mask_embed"):
        d.block_inputs(emb)
    mask = torch.randn(spec.hidden_size)
    blocks = d.block_inputs(emb, mask)
    assert blocks.shape == (1, 2, 4, spec.hidden_size)
    assert torch.equal(blocks[:, :, 0], emb) and torch.equal(blocks[0, 1, 3], mask)


def test_parameter_names_are_the_dflash_format(tiny_spec) -> None:
    d = BlockDiffusionDrafter(BlockDiffusionConfig(num_layers=2, block_size=4), tiny_spec)
    layer = {"input_layernorm.weight", "post_attention_layernorm.weight", "self_attn.q_norm.weight",
             "self_attn.k_norm.weight"} | {f"self_attn.{p}_proj.weight" for p in "qkvo"} | {
             f"mlp.{p}_proj.weight" for p in ("gate", "up", "down")}
    expected = {"fc.weight", "hidden_norm.weight", "norm.weight"} | {f"layers.{i}.{n}" for i in (0, 1) for n in layer}
    assert set(d.state_dict()) == expected
    off = BlockDiffusionDrafter(BlockDiffusionConfig(block_size=4, qk_norm=False), tiny_spec)
    assert not any("q_norm" in k or "k_norm" in k for k in off.state_dict())


def test_qk_norm_changes_the_function(tiny_spec) -> None:
    """The norms are applied (a checkpoint served with norms it was not trained with computes something else)."""
    torch.manual_seed(0)
    d = BlockDiffusionDrafter(BlockDiffusionConfig(block_size=4, mask_token="learned"), tiny_spec).eval()
    args = (torch.randn(1, 8, len(tiny_spec.tap_layers) * tiny_spec.hidden_size), torch.ones(1, 8, dtype=torch.bool),
            torch.randn(1, 1, tiny_spec.hidden_size), torch.tensor([[5]]), torch.ones(1, 1, dtype=torch.bool))
    with torch.no_grad():
        before = d(*args)
        d.layers[0].self_attn.k_norm.weight.mul_(3.0)
        assert (d(*args) - before).abs().max() > 1e-3


def test_pre_rename_state_dict_loads_under_the_new_names(tiny_spec) -> None:
    torch.manual_seed(0)
    new = BlockDiffusionDrafter(BlockDiffusionConfig(block_size=4, qk_norm=False, mask_token="learned"), tiny_spec)
    old_of = {"fc.weight": "fuse.weight", "hidden_norm.weight": "fuse_norm.weight",
              "layers.0.input_layernorm.weight": "layers.0.input_norm.weight",
              "layers.0.post_attention_layernorm.weight": "layers.0.post_norm.weight",
              **{f"layers.0.self_attn.{p}_proj.weight": f"layers.0.{p}_proj.weight" for p in "qkvo"}}
    old_state = {old_of.get(k, k): v.clone() for k, v in new.state_dict().items()}  # as written before the rename
    assert "fuse.weight" in old_state and "layers.0.q_proj.weight" in old_state and "fc.weight" not in old_state
    fresh = BlockDiffusionDrafter(BlockDiffusionConfig(block_size=4, qk_norm=False, mask_token="learned"), tiny_spec)
    fresh.load_state_dict(old_state)
    for k, v in new.state_dict().items():
        assert torch.equal(fresh.state_dict()[k], v), k
    with pytest.raises(RuntimeError, match="set drafter.qk_norm: false"):
        BlockDiffusionDrafter(BlockDiffusionConfig(block_size=4, mask_token="learned"), tiny_spec).load_state_dict(
            dict(old_state), strict=False)  # never half-loaded, strict or not
    with pytest.raises(RuntimeError, match="set drafter.mask_token: learned"):
        BlockDiffusionDrafter(BlockDiffusionConfig(block_size=4, qk_norm=False), tiny_spec).load_state_dict(
            dict(old_state))


def test_block_inputs_are_anchor_then_masks(tiny_spec) -> None:
    d = BlockDiffusionDrafter(BlockDiffusionConfig(block_size=5, mask_token="learned"), tiny_spec)
    emb = torch.randn(2, 3, tiny_spec.hidden_size)
    blocks = d.block_inputs(emb)
    assert torch.equal(blocks[:, :, 0], emb)
    assert torch.equal(blocks[:, :, 1:], d.mask_embedding.expand(2, 3, 4, -1))


def test_gqa_and_layer_count(tiny_spec) -> None:
    d = BlockDiffusionDrafter(BlockDiffusionConfig(num_layers=3, num_heads=4, num_kv_heads=1, block_size=4, mask_token="learned"),
                              tiny_spec)
    assert len(d.layers) == 3
    attn = d.layers[0].self_attn
    assert attn.k_proj.out_features == d.head_dim and attn.q_proj.out_features == 4 * d.head_dim
    out = d(torch.randn(1, 10, len(tiny_spec.tap_layers) * tiny_spec.hidden_size), torch.ones(1, 10, dtype=torch.bool),
            torch.randn(1, 2, tiny_spec.hidden_size), torch.tensor([[3, 6]]), torch.ones(1, 2, dtype=torch.bool))
    assert out.shape == (1, 2, 4, tiny_spec.hidden_size) and torch.isfinite(out).all()


@pytest.mark.parametrize("anchor", [1, 5, 11])
def test_training_forward_equals_decoding_one_block(tiny_spec, anchor: int) -> None:
    """Train/serve parity: at decode time the drafter caches K/V of the context before the anchor and runs one
    block with no mask; that must equal the block's output in the all-blocks training forward."""
    torch.manual_seed(0)
    d = BlockDiffusionDrafter(BlockDiffusionConfig(num_layers=2, block_size=4, mask_token="learned"), tiny_spec).eval()
    S, H = 12, tiny_spec.hidden_size
    context = torch.randn(1, S, len(tiny_spec.tap_layers) * H)
    emb = torch.randn(1, 3, H)
    anchors = torch.tensor([[anchor, max(0, anchor - 1), min(S - 1, anchor + 2)]])
    with torch.no_grad():
        train_out = d(context, torch.ones(1, S, dtype=torch.bool), emb, anchors, torch.ones(1, 3, dtype=torch.bool))
        kv = d.context_kv(d.fuse_context(context[:, :anchor]), torch.arange(anchor).unsqueeze(0))
        decode_out = d.run_layers(d.block_inputs(emb[:, :1]), torch.tensor([[anchor]]), kv, None)
    torch.testing.assert_close(decode_out[:, 0], train_out[:, 0], atol=1e-5, rtol=1e-5)
