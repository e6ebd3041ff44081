"""A run folder belongs to one recipe and has one writer; a failed run leaves nothing that looks complete."""
from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path

import pytest

from specframe.config import validate_recipe
from specframe.errors import RunError
from specframe.run_folder import (FAILED, LOCK, RESUMABLE_KEYS, claim_run_folder, recipe_differences)
from specframe.training import train

pytestmark = pytest.mark.filterwarnings(r"ignore:Found \d+ module\(s\) in eval mode")


def digest(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def test_recipe_differences_names_keys_and_ignores_resumable_ones() -> None:
    old = {"drafter": {"num_layers": 1, "block_size": 8}, "trainer": {"max_steps": 2}, "eval": {"num_prompts": 1},
           "_provenance": {"git_revision": "x"}}
    new = {"drafter": {"num_layers": 2, "block_size": 4}, "trainer": {"max_steps": 9}, "eval": {"num_prompts": 5}}
    assert recipe_differences(old, new) == ["drafter.block_size: 8 -> 4", "drafter.num_layers: 1 -> 2"]
    assert "trainer.max_steps" in RESUMABLE_KEYS and "eval" in RESUMABLE_KEYS


@pytest.fixture(scope="module")
def trained(tmp_path_factory, recipe_factory, conversations):
    out = tmp_path_factory.mktemp("trained") / "run"
    train(validate_recipe(recipe_factory(out)), conversations=conversations)
    return out


@pytest.mark.parametrize("change", [{"drafter": {"name": "block_diffusion", "num_layers": 2, "block_size": 8}},
                                    {"drafter": {"name": "block_diffusion", "num_layers": 1, "block_size": 4}}])
def test_changed_recipe_resume_refused_folder_untouched(trained, tmp_path, recipe_factory, conversations,
                                                        change) -> None:
    import shutil

    run = tmp_path / "run"
    shutil.copytree(trained, run)
    before = digest(run)
    recipe = validate_recipe(recipe_factory(run, trainer={"max_steps": 3}, **change))
    with pytest.raises(RunError) as info:
        train(recipe, conversations=conversations)
    key = "num_layers: 1 -> 2" if change["drafter"]["num_layers"] == 2 else "block_size: 8 -> 4"
    assert f"drafter.{key}" in str(info.value)
    assert digest(run) == before  # not even a lock file or failed.json


def test_resume_with_more_steps_is_allowed(trained, tmp_path, recipe_factory, conversations) -> None:
    import shutil

    run = tmp_path / "run"
    shutil.copytree(trained, run)
    summary = train(validate_recipe(recipe_factory(run, trainer={"max_steps": 3}, eval={"num_prompts": 3})),
                    conversations=conversations)
    assert summary["steps"] == 3


def test_second_writer_refused_and_lock_released(tmp_path: Path) -> None:
    run = tmp_path / "run"
    with claim_run_folder(run, {}) as folder:
        with pytest.raises(RunError, match=r"being written by pid \d+"):
            with claim_run_folder(run, {}):
                pass
        folder.succeeded()
    with claim_run_folder(run, {}) as folder:  # released on exit
        folder.succeeded()


def test_lock_of_a_killed_owner_is_stale(tmp_path: Path) -> None:
    """The owner is killed with SIGKILL while holding the lock: the kernel drops it and the next run proceeds."""
    run = tmp_path / "run"
    code = ("import sys, time; from pathlib import Path; from specframe.run_folder import claim_run_folder\n"
            f"with claim_run_folder(Path({str(run)!r}), {{}}):\n    print('held', flush=True); time.sleep(60)\n")
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "held"
        with pytest.raises(RunError, match=f"pid {proc.pid}"):
            with claim_run_folder(run, {}):
                pass
    finally:
        proc.kill()
        proc.wait()
    assert json.loads((run / LOCK).read_text())["pid"] == proc.pid  # the file stays; the lock does not
    with claim_run_folder(run, {}) as folder:
        folder.succeeded()


def test_failed_new_run_leaves_no_folder(tmp_path: Path) -> None:
    run = tmp_path / "run"
    with pytest.raises(ValueError):
        with claim_run_folder(run, {}) as folder:
            folder.touch()
            (run / "recipe.resolved.yaml").write_text("run: {}\n")
            raise ValueError("no usable conversation")
    assert not run.exists()


def test_failed_resume_marks_folder(tmp_path: Path) -> None:
    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    (run / "recipe.resolved.yaml").write_text("run: {}\n")
    with pytest.raises(ValueError):
        with claim_run_folder(run, {"run": {}}) as folder:
            folder.touch()
            raise ValueError("boom")
    assert json.loads((run / FAILED).read_text())["error"] == "ValueError: boom"
    with claim_run_folder(run, {"run": {}}) as folder:
        folder.succeeded()
    assert not (run / FAILED).exists()


def test_train_failing_on_data_removes_its_new_folder(tmp_path, recipe_factory) -> None:
    run = tmp_path / "run"
    no_assistant = [[{"role": "user", "content": "hi there"}]] * 6
    with pytest.raises(Exception):
        train(validate_recipe(recipe_factory(run)), conversations=no_assistant)
    assert not run.exists()
