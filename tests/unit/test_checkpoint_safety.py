"""A checkpoint planted in a run folder must never run code: every load is weights_only (issue 10, item 1)."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch

from specframe.checkpoint import load_checkpoint, load_trained
from specframe.config import validate_recipe
from specframe.errors import ConfigError
from specframe.training import train

pytestmark = pytest.mark.filterwarnings(r"ignore:Found \d+ module\(s\) in eval mode")


class _CreatesFile:
    """Unpickling this calls open(marker, "w"): the file appearing is proof that the pickle ran code."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


def plant(path: Path, marker: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"global_step": 5, "state_dict": {}, "payload": _CreatesFile(marker)}, path)
    return path


def test_planted_pickle_runs_without_weights_only(tmp_path: Path) -> None:
    """Control: the planted file really is harmful when unpickled the unsafe way (so the tests below mean it)."""
    marker = tmp_path / "pwned"
    ckpt = plant(tmp_path / "last.ckpt", marker)
    torch.load(ckpt, weights_only=False)
    assert marker.exists()


def test_load_checkpoint_refuses_planted_pickle(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    ckpt = plant(tmp_path / "last.ckpt", marker)
    with pytest.raises(ConfigError, match="weights_only"):
        load_checkpoint(ckpt)
    assert not marker.exists()


@pytest.mark.parametrize("content", [b"", b"\x00garbage\xff" * 10])
def test_load_checkpoint_names_unreadable_file(tmp_path: Path, content: bytes) -> None:
    ckpt = tmp_path / "last.ckpt"
    ckpt.write_bytes(content)
    with pytest.raises(ConfigError, match=r"last\.ckpt: not a checkpoint that can be loaded safely"):
        load_checkpoint(ckpt)


def test_train_resume_refuses_planted_last_ckpt(tmp_path: Path, recipe_factory, conversations) -> None:
    out = tmp_path / "run"
    marker = tmp_path / "pwned"
    plant(out / "checkpoints" / "last.ckpt", marker)
    recipe = validate_recipe(recipe_factory(out, trainer={"max_steps": 2}))
    with pytest.raises(ConfigError, match="weights_only"):
        train(recipe, conversations=conversations)
    assert not marker.exists()


def test_eval_load_refuses_planted_checkpoint(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    plant(tmp_path / "run" / "checkpoints" / "last.ckpt", marker)
    with pytest.raises(ConfigError, match="weights_only"):
        load_trained(tmp_path / "run")
    assert not marker.exists()
