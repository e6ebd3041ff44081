"""`data.features_cache: auto`: the first run builds the cache, trains from it exactly as from `cache-features`'s,
and the next run of the same target and data reuses it."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from specframe.cli import main
from specframe.config import load_recipe
from specframe.data.auto_cache import auto_cache_folder

RECIPES = Path(__file__).resolve().parents[3] / "recipes"
BASE = [str(RECIPES / "quickstart.yaml"), str(RECIPES / "debug" / "tiny.yaml")]
TINY = ["data.answers=null", "trainer.max_steps=3", "trainer.save_every_n_steps=3", "trainer.val_every_n_steps=3"]


def drafter_weights(run: Path) -> dict[str, torch.Tensor]:
    ckpt = torch.load(run / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    return {k: v for k, v in ckpt["state_dict"].items() if k.startswith("drafter.")}


def test_auto_cache_is_built_once_reused_and_trains_like_an_explicit_cache(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("SPECFRAME_CACHE", str(tmp_path / "cache"))
    recipe = load_recipe(BASE[0], [*TINY, "data.features_cache=auto", f"run.output_dir={tmp_path / 'a'}"],
                         overlays=BASE[1:])
    folder = auto_cache_folder(recipe)
    assert folder.parent == tmp_path / "cache" / "features"

    assert main(["train", *BASE, *TINY, "data.features_cache=auto", f"run.output_dir={tmp_path / 'a'}"]) == 0
    assert "features cache built" in capsys.readouterr().out
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["logits_topk"] == 1  # target_greedy_labels needs the argmax only
    stamp = (folder / "manifest.json").stat().st_mtime_ns

    assert main(["train", *BASE, *TINY, "data.features_cache=auto", f"run.output_dir={tmp_path / 'b'}"]) == 0
    assert "features cache reused" in capsys.readouterr().out
    assert (folder / "manifest.json").stat().st_mtime_ns == stamp

    # the same run from the explicit cache folder trains the same weights
    assert main(["train", *BASE, *TINY, f"data.features_cache={folder}", f"run.output_dir={tmp_path / 'c'}"]) == 0
    a, c = drafter_weights(tmp_path / "a"), drafter_weights(tmp_path / "c")
    for key in a:
        torch.testing.assert_close(a[key], c[key])

    # other data settings -> another folder
    other = load_recipe(BASE[0], [*TINY, "data.features_cache=auto", "data.max_length=64",
                                  f"run.output_dir={tmp_path / 'd'}"], overlays=BASE[1:])
    assert auto_cache_folder(other) != folder


def test_auto_cache_refuses_a_loss_that_needs_the_target_distribution(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("SPECFRAME_CACHE", str(tmp_path / "cache"))
    code = main(["train", *BASE, *TINY, "data.features_cache=auto", "loss=[{name: forward_kl}]",
                 f"run.output_dir={tmp_path / 'kl'}"])
    assert code != 0
    assert "needs the target's distribution" in capsys.readouterr().err
