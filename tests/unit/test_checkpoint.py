"""load_trained: a run folder or .ckpt back to (recipe, target, drafter, vocab)."""
from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from specframe.checkpoint import load_trained, resolve_checkpoint, run_folder_of
from specframe.config import compose, validate_recipe
from specframe.errors import ConfigError
from specframe.module import DraftTrainingModule

RECIPES = Path(__file__).resolve().parents[2] / "recipes"


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    run = tmp_path_factory.mktemp("run")
    recipe = validate_recipe(compose(RECIPES / "quickstart.yaml", [RECIPES / "debug" / "tiny.yaml"],
                                     [f"run.output_dir={run}", "drafter.draft_vocab_size=64"]))
    module = DraftTrainingModule(recipe.resolved)
    module.vocab.set_ids(torch.arange(100, 164))
    state = {k: v for k, v in module.state_dict().items() if not k.startswith("target.")}
    (run / "checkpoints").mkdir()
    checkpoint = {"hyper_parameters": {"config": recipe.resolved}, "state_dict": state}
    torch.save(checkpoint, run / "checkpoints" / "last.ckpt")
    return run, module


def test_round_trip(run):
    folder, module = run
    recipe, target, drafter, vocab = load_trained(folder)
    assert recipe["drafter"]["draft_vocab_size"] == 64
    for name, value in module.drafter.state_dict().items():
        torch.testing.assert_close(drafter.state_dict()[name], value)
    assert vocab.reduced and vocab.ids.tolist() == list(range(100, 164))
    assert not drafter.training and target.tap_layers == module.target.tap_layers


def test_resolve(run, tmp_path):
    folder, _ = run
    last = folder / "checkpoints" / "last.ckpt"
    assert resolve_checkpoint(folder) == last and run_folder_of(last) == folder
    best = folder / "checkpoints" / "best-step9.ckpt"
    best.write_bytes(last.read_bytes())
    try:
        assert resolve_checkpoint(folder) == best
    finally:
        os.remove(best)
    with pytest.raises(FileNotFoundError, match="no checkpoint"):
        resolve_checkpoint(tmp_path)
    bad = tmp_path / "x.ckpt"
    torch.save({"state_dict": {}}, bad)
    with pytest.raises(ConfigError, match="no recipe"):
        load_trained(bad)


OLD_NAMES = {"fc.": "fuse.", "hidden_norm.": "fuse_norm.", "input_layernorm.": "input_norm.",
             "post_attention_layernorm.": "post_norm.", "self_attn.": ""}


def test_checkpoint_written_before_the_dflash_names_loads_as_it_was_trained(tmp_path) -> None:
    """A pre-rename run: old parameter names, no q/k norm, a learned mask vector, a recipe without those options."""
    base = validate_recipe(compose(RECIPES / "quickstart.yaml", [RECIPES / "debug" / "tiny.yaml"],
                                   [f"run.output_dir={tmp_path}"])).resolved
    as_trained = {**base, "drafter": {**base["drafter"], "qk_norm": False, "mask_token": "learned"}}
    module = DraftTrainingModule(as_trained)
    old = {}
    for k, v in module.state_dict().items():
        if k.startswith("target."):
            continue
        for new, was in OLD_NAMES.items():
            k = k.replace(new, was)
        old[k] = v
    assert "drafter.fuse.weight" in old and "drafter.layers.0.q_proj.weight" in old
    (tmp_path / "checkpoints").mkdir()
    torch.save({"hyper_parameters": {"config": base}, "state_dict": old}, tmp_path / "checkpoints" / "last.ckpt")
    recipe, _, drafter, _ = load_trained(tmp_path)
    assert drafter.mask_kind == "learned" and drafter.cfg.qk_norm is False
    for name, value in module.drafter.state_dict().items():
        assert torch.equal(drafter.state_dict()[name], value), name
    # the same weights under a recipe that asks for q/k norm are refused with the fix, not half-loaded
    torch.save({"hyper_parameters": {"config": {**base, "drafter": {**base["drafter"], "qk_norm": True}}},
                "state_dict": old}, tmp_path / "checkpoints" / "last.ckpt")
    with pytest.raises(ConfigError, match="set drafter.qk_norm: false"):
        load_trained(tmp_path)
