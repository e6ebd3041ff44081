"""Runs to export: a tiny-target recipe with the drafter options a test asks for, weights randomised (norms too,
so that a norm applied in the wrong place shows), saved as a checkpoint the way training saves one."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch

RECIPES = Path(__file__).resolve().parents[3] / "recipes"


def make_run(folder: Path, seed: int = 0, draft_ids: torch.Tensor | None = None, **drafter_options) -> Path:
    from specframe.config import compose, validate_recipe
    from specframe.module import DraftTrainingModule

    overrides = [f"run.output_dir={folder}"] + [f"+drafter.{k}={v}" if k not in ("block_size",) else
                                                f"drafter.{k}={v}" for k, v in drafter_options.items()]
    recipe = validate_recipe(compose(RECIPES / "quickstart.yaml", [RECIPES / "debug" / "tiny.yaml"], overrides))
    module = DraftTrainingModule(recipe.resolved)
    with torch.no_grad(), torch.random.fork_rng():
        torch.manual_seed(seed)
        for name, p in module.drafter.named_parameters():
            if p.dim() == 1:  # norms and the mask vector: away from their init, so each one matters
                p.copy_(1.0 + 0.3 * torch.randn_like(p)) if "norm" in name else p.normal_(0, 0.5)
            else:
                p.normal_(0, 0.15)
    if draft_ids is not None:
        module.vocab.set_ids(draft_ids)
    state = {k: v for k, v in module.state_dict().items() if not k.startswith("target.")}
    (folder / "checkpoints").mkdir(parents=True, exist_ok=True)
    torch.save({"hyper_parameters": {"config": recipe.resolved}, "state_dict": state},
               folder / "checkpoints" / "last.ckpt")
    return folder


@pytest.fixture
def run_factory(tmp_path):
    counter = iter(range(100))
    return lambda **kw: make_run(tmp_path / f"run{next(counter)}", **kw)
