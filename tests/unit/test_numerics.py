"""Training stops at the first non-finite loss or gradient; no summary from non-finite weights (issue 10, item 2)."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

from specframe.checkpoint import load_checkpoint
from specframe.config import validate_recipe
from specframe.errors import RunError
from specframe.numerics import check_finite_grads, check_finite_loss, check_finite_weights
from specframe.training import train

pytestmark = pytest.mark.filterwarnings(r"ignore:Found \d+ module\(s\) in eval mode")


def test_non_finite_loss_named_with_its_terms() -> None:
    check_finite_loss(torch.tensor(1.5), {"ce": torch.tensor(1.5)}, 3)
    with pytest.raises(RunError, match=r"training stopped at step 3: the loss is nan \(ce=nan\)"):
        check_finite_loss(torch.tensor(float("nan")), {"ce": torch.tensor(float("nan"))}, 3)


def test_non_finite_gradient_names_the_parameter() -> None:
    layer = nn.Linear(2, 2)
    layer(torch.ones(1, 2)).sum().backward()
    check_finite_grads(layer, 0)
    layer.bias.grad[0] = float("inf")
    with pytest.raises(RunError, match=r"non-finite gradients in 1 parameter\(s\), first \['bias'\]"):
        check_finite_grads(layer, 0)
    with torch.no_grad():
        layer.weight[0, 0] = float("nan")
    with pytest.raises(RunError, match="no summary is written"):
        check_finite_weights(layer, 5)


def test_diverging_run_stops_without_summary(tmp_path: Path, recipe_factory, conversations) -> None:
    """lr=1e30 is finite (validate accepts it) but the loss becomes non-finite within a few steps."""
    out = tmp_path / "run"
    recipe = validate_recipe(recipe_factory(out, optim={"lr": 1e30, "chunk_blocks": 64},
                                            trainer={"max_steps": 6, "val_every_n_steps": 1}))
    with pytest.raises(RunError, match="training stopped at step"):
        train(recipe, conversations=conversations)
    assert not (out / "summary.json").exists()
    assert (out / "failed.json").is_file()
    for ckpt in (out / "checkpoints").glob("*.ckpt"):  # whatever was saved before the stop is finite
        state = load_checkpoint(ckpt)["state_dict"]
        assert all(torch.isfinite(v).all() for k, v in state.items() if k.startswith("drafter."))
