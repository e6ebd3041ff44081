"""A checkpoint planted in a run folder must never run code: every load is weights_only (issue 10, item 1)."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch

from specframe.checkpoint import load_checkpoint, load_trained
from specframe.cli import main as cli_main
from specframe.config import save_resolved, validate_recipe
from specframe.errors import ConfigError, RunError
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
    """A run folder of this very recipe with its last.ckpt swapped: refused before anything is written."""
    out = tmp_path / "run"
    marker = tmp_path / "pwned"
    recipe = validate_recipe(recipe_factory(out, trainer={"max_steps": 2}))
    save_resolved(recipe, out, [])
    plant(out / "checkpoints" / "last.ckpt", marker)
    before = sorted((p.name, p.stat().st_mtime_ns) for p in out.rglob("*"))
    with pytest.raises(ConfigError, match="weights_only"):
        train(recipe, conversations=conversations)
    assert not marker.exists()
    assert sorted((p.name, p.stat().st_mtime_ns) for p in out.rglob("*") if p.name != ".lock") == before


def test_train_refuses_folder_with_checkpoint_but_no_recipe(tmp_path: Path, recipe_factory, conversations) -> None:
    out = tmp_path / "run"
    marker = tmp_path / "pwned"
    plant(out / "checkpoints" / "last.ckpt", marker)
    recipe = validate_recipe(recipe_factory(out, trainer={"max_steps": 2}))
    with pytest.raises(RunError, match="no recipe.resolved.yaml"):
        train(recipe, conversations=conversations)
    assert not marker.exists()
    assert sorted(p.name for p in out.rglob("*")) == ["checkpoints", "last.ckpt"]


def test_eval_load_refuses_planted_checkpoint(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    plant(tmp_path / "run" / "checkpoints" / "last.ckpt", marker)
    with pytest.raises(ConfigError, match="weights_only"):
        load_trained(tmp_path / "run")
    assert not marker.exists()


def test_eval_cli_refuses_planted_checkpoint(tmp_path: Path, capsys) -> None:
    marker = tmp_path / "pwned"
    plant(tmp_path / "run" / "checkpoints" / "last.ckpt", marker)
    assert cli_main(["eval", str(tmp_path / "run"), "--benchmarks", "mt_bench", "--num-prompts", "1"]) == 2
    assert "not a checkpoint that can be loaded safely (weights_only)" in capsys.readouterr().err
    assert not marker.exists()


def test_export_cli_refuses_planted_checkpoint(tmp_path: Path, capsys) -> None:
    from specframe.cli import build_parser

    commands = build_parser()._subparsers._group_actions[0].choices  # type: ignore[union-attr]
    if "export" not in commands:
        pytest.skip("`specframe export` is not in this checkout yet (issue 11 adds it); this test runs once it is")
    marker = tmp_path / "pwned"
    plant(tmp_path / "run" / "checkpoints" / "last.ckpt", marker)
    rc = cli_main(["export", str(tmp_path / "run"), "--out", str(tmp_path / "exported")])
    assert rc != 0
    assert "weights_only" in capsys.readouterr().err
    assert not marker.exists()
    assert not (tmp_path / "exported").exists() or not any((tmp_path / "exported").iterdir())


def test_sweep_refuses_planted_checkpoint(tmp_path: Path, monkeypatch, recipe_factory, conversations) -> None:
    """tools/sweep.py resumes a point through `specframe train` in a subprocess: the child refuses the pickle."""
    import json
    import sys

    import yaml

    repo = Path(__file__).resolve().parents[2]
    sys.path.insert(0, str(repo / "tools"))
    try:
        import sweep
    finally:
        sys.path.remove(str(repo / "tools"))
    data = tmp_path / "chats.jsonl"
    data.write_text("".join(json.dumps({"messages": c}) + "\n" for c in conversations * 2))
    recipe = recipe_factory(tmp_path / "unused", data={"train": str(data)})
    (tmp_path / "r.yaml").write_text(yaml.safe_dump(recipe))
    # The point's folder as a real interrupted point leaves it (its resolved recipe), with last.ckpt swapped.
    point = tmp_path / "sweep" / "base"
    save_resolved(validate_recipe(recipe_factory(point, data={"train": str(data)})), point, [])
    marker = tmp_path / "pwned"
    plant(point / "checkpoints" / "last.ckpt", marker)
    monkeypatch.setenv("PYTHONPATH", str(repo))
    monkeypatch.chdir(tmp_path)
    rc = sweep.main([str(tmp_path / "r.yaml"), "--sweep-dir", str(tmp_path / "sweep"), "--no-eval"])
    assert rc == 1
    log = (tmp_path / "sweep" / "base" / "train.log").read_text()
    assert "not a checkpoint that can be loaded safely (weights_only)" in log
    assert not marker.exists()
    assert not (tmp_path / "sweep" / "base" / "summary.json").exists()
