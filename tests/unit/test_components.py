"""components.init_from_target: what a drafter copies from the target when its config asks."""
from __future__ import annotations

import copy

import pytest
import torch

from specframe.components import init_from_target
from specframe.drafters.block_diffusion import BlockDiffusionConfig, BlockDiffusionDrafter


def _drafter(tiny_target, **kwargs) -> BlockDiffusionDrafter:
    torch.manual_seed(0)
    drafter = BlockDiffusionDrafter(BlockDiffusionConfig(block_size=4, **kwargs), tiny_target.spec)
    init_from_target(drafter, tiny_target)
    return drafter


def test_layers_start_as_the_targets_top_layers(tiny_target) -> None:
    drafter = _drafter(tiny_target, num_layers=2, init_layers_from_target=True)
    top = tiny_target.model.model.layers[-2:]
    for mine, theirs in zip(drafter.layers, top):
        own = mine.state_dict()
        for name, value in theirs.state_dict().items():
            assert torch.equal(own[name], value), name
        # No Llama counterpart: the per-head q/k norms keep their identity init.
        assert torch.equal(own["self_attn.q_norm.weight"], torch.ones_like(own["self_attn.q_norm.weight"]))
        # Same weights, same computation: the MLP block maps an input as the target's does.
        x = torch.randn(3, tiny_target.spec.hidden_size)
        assert torch.allclose(mine.mlp(x), theirs.mlp(x))
    # A copy, not a share: training the drafter must not move the frozen target.
    assert drafter.layers[0].mlp.up_proj.weight.data_ptr() != top[0].mlp.up_proj.weight.data_ptr()


def test_off_by_default(tiny_target) -> None:
    drafter = _drafter(tiny_target, num_layers=1)
    top = tiny_target.model.model.layers[-1]
    assert not torch.equal(drafter.layers[0].mlp.up_proj.weight, top.mlp.up_proj.weight)


def test_a_layer_of_another_shape_is_refused_with_the_fix(tiny_target) -> None:
    with pytest.raises(ValueError, match=r"mlp.up_proj.weight .*intermediate_size"):
        _drafter(tiny_target, init_layers_from_target=True, intermediate_size=32)


def test_a_target_without_layers_to_lend_is_refused(tiny_target) -> None:
    class Headless:
        final_norm_weight = None

    drafter = BlockDiffusionDrafter(BlockDiffusionConfig(block_size=4, init_layers_from_target=True),
                                    tiny_target.spec)
    with pytest.raises(ValueError, match="cannot lend its decoder layers"):
        init_from_target(drafter, Headless())


def test_init_from_supersedes_the_copies(tiny_target) -> None:
    """A published drafter (init_from) replaces every weight: the quickstart's init options stay valid beside it
    and copy nothing."""
    drafter = _drafter(tiny_target, init_layers_from_target=True, init_fusion_from_top_tap=True,
                       init_from="some/drafter")
    top = tiny_target.model.model.layers[-1]
    assert not torch.equal(drafter.layers[0].mlp.up_proj.weight, top.mlp.up_proj.weight)
    H = tiny_target.spec.hidden_size
    assert not torch.equal(drafter.fc.weight[:, -H:], torch.eye(H))


def test_fusion_passes_the_top_tap_through(tiny_target) -> None:
    """With both options, the context keys/values start as the copied target layer computes them from the last
    tapped layer's output."""
    target = copy.deepcopy(tiny_target)  # a random init has norms at one: give the copied norm values to find
    top = target.model.model.layers[-1]
    with torch.no_grad():
        top.input_layernorm.weight.uniform_(0.5, 2.0)
    drafter = _drafter(target, init_layers_from_target=True, init_fusion_from_top_tap=True)
    H, taps = target.spec.hidden_size, len(target.spec.tap_layers)
    features = torch.randn(2, 5, taps * H)
    assert torch.allclose(drafter.fuse_context(features), top.input_layernorm(features[..., -H:]), atol=1e-6)
    assert torch.equal(drafter.fc.weight[:, :-H], torch.zeros(H, (taps - 1) * H))


def test_two_fusion_inits_are_refused() -> None:
    with pytest.raises(ValueError, match="choose one"):
        BlockDiffusionConfig(init_fusion_from_top_tap=True, init_fusion_from_features=True)
