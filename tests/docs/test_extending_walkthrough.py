"""The loss-term walkthrough of docs/extending.md works as written: its files, copied from the page, register the
term, validate in a recipe from another folder with an override of the term's option, and pass their own tests."""
from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest

from specframe.config import compose, validate_recipe
from specframe.losses import LOSS_TERMS
from specframe.plugins import import_plugin

REPO_ROOT = Path(__file__).resolve().parents[2]
DOC = REPO_ROOT / "docs" / "extending.md"


def block_after(text: str, marker: str) -> str:
    """The first fenced code block after `marker` in the page."""
    found = re.compile(r"```\w*\n(.*?)```", re.S).search(text, text.index(marker))
    assert found, f"no code block after {marker!r} in {DOC}"
    return found.group(1)


@pytest.fixture
def myplug(tmp_path: Path) -> Path:
    text = DOC.read_text()
    folder = tmp_path / "myplug"
    folder.mkdir()
    (folder / "slot1_boost.py").write_text(block_after(text, "`~/myplug/slot1_boost.py`:"))
    recipe = block_after(text, "`~/myplug/recipe.yaml`:")
    assert "/path/to/specframe/recipes/quickstart.yaml" in recipe
    (folder / "recipe.yaml").write_text(recipe.replace("/path/to/specframe", str(REPO_ROOT)))
    (folder / "test_slot1_boost.py").write_text(block_after(text, "**Your own tests**"))
    return folder


def test_the_walkthrough_recipe_validates_from_another_folder_with_an_override(myplug, tmp_path, monkeypatch):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    with LOSS_TERMS.isolated():
        recipe = validate_recipe(compose(myplug / "recipe.yaml", overrides=["loss.1.slot=2"]))
        assert [(t.name, t.weight, t.options) for t in recipe.loss] == [
            ("positional", 1.0, {"gamma": 10}), ("slot1_boost", 0.5, {"slot": 2}), ("chain", 40.0, {})]
        assert recipe.plugins == [str((myplug / "slot1_boost.py").resolve())]


def test_the_walkthrough_tests_pass(myplug):
    with LOSS_TERMS.isolated():
        tests = sys.modules[import_plugin(str(myplug / "test_slot1_boost.py"))]  # the page's test file
        assert "slot1_boost" in LOSS_TERMS
        for slot in (1, 2, 3):
            tests.test_matches_a_naive_loop_in_value_and_gradient(slot)
        tests.test_nothing_to_supervise_gives_zero_over_zero()
        tests.test_slot_zero_is_a_config_error()
