"""Every shipped recipe validates; the slow tier trains each one for 2 steps with recipes/debug/tiny.yaml.

    python -m pytest -q -p no:cacheprovider tests/recipes              # validation only (fast)
    python -m pytest -q -p no:cacheprovider tests/recipes -m slow      # 2 training steps per recipe

recipes/ is walked recursively and the number of YAML files is pinned, so a recipe that silently disappears
(or a new folder that nobody validates) is noticed. recipes/debug/ holds overlays and recipes/sweeps/ grid
files: both are counted but are not recipes.
"""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from specframe.config import compose, load_recipe, validate_recipe

REPO_ROOT = Path(__file__).resolve().parents[2]
RECIPES = REPO_ROOT / "recipes"
OVERLAY = RECIPES / "debug" / "tiny.yaml"
NOT_RECIPES = ("debug", "sweeps")  # overlays and sweep grids

# Update when a recipe is added or removed on purpose (the test prints the list it found).
EXPECTED_YAML_FILES = 23  # + cpu_long.yaml, sweeps/loss_search.yaml (Optuna grid), block_diffusion/qwen3_8b_finetune_dflash.yaml,
# sweeps/quickstart_seeds.yaml

ALL_YAML = sorted(RECIPES.rglob("*.yaml"))
RECIPE_FILES = [p for p in ALL_YAML if p.relative_to(RECIPES).parts[0] not in NOT_RECIPES]


def rel(p: Path) -> str:
    return str(p.relative_to(RECIPES))


def test_recipe_count_is_pinned() -> None:
    found = [rel(p) for p in ALL_YAML]
    assert len(found) == EXPECTED_YAML_FILES, f"found {len(found)} YAML files under recipes/: {found}"
    assert OVERLAY in ALL_YAML
    assert not list(RECIPES.rglob("*.yml")), "use the .yaml extension (the walk and the CLI expect it)"


@pytest.fixture(autouse=True)
def _repo_cwd(monkeypatch):
    # recipes name plugins (`plugins.x`) and data folders relative to the repository root, where they are run
    monkeypatch.chdir(REPO_ROOT)


@pytest.mark.parametrize("path", RECIPE_FILES, ids=rel)
def test_recipe_validates(path: Path) -> None:
    recipe = load_recipe(path)
    assert recipe.loss and recipe.run.name
    header = path.read_text().lstrip()
    assert header.startswith("#"), "a recipe starts with a comment giving the command that runs it"


@pytest.mark.parametrize("path", RECIPE_FILES, ids=rel)
def test_recipe_validates_with_the_debug_overlay(path: Path, tmp_path: Path) -> None:
    recipe = load_recipe(path, [f"run.output_dir={tmp_path}/run"], [OVERLAY])
    assert recipe.target.name == "tiny" and recipe.trainer.max_steps == 2


def _hub_model(path: Path) -> str | None:
    """The hub id a recipe's target names, if any (those are validated only, never downloaded here)."""
    from specframe.targets.hf import BUILTIN_MODELS

    target = dict(compose(path).target)
    model = str(target.get("model", "")) if target.get("name") == "hf" else ""
    if not model or model in BUILTIN_MODELS or Path(model).expanduser().exists():
        return None
    return model


def _missing_data(path: Path) -> str | None:
    train = str(compose(path).data.train)
    if train == "sharegpt" or Path(train).exists():
        return None
    return train


@pytest.mark.slow
@pytest.mark.parametrize("path", RECIPE_FILES, ids=rel)
def test_recipe_trains_two_steps_with_the_debug_overlay(path: Path, tmp_path: Path) -> None:
    from specframe.training import train

    hub = _hub_model(path)
    if hub:
        pytest.skip(f"names the hub model {hub}: validated only")
    missing = _missing_data(path)
    if missing:
        pytest.skip(f"data.train={missing} does not exist yet (generate it first, e.g. `specframe regenerate`)")
    out = tmp_path / "run"
    recipe = validate_recipe(compose(path, [OVERLAY], [f"run.output_dir={out}"]))
    summary = train(recipe)
    assert summary["steps"] == 2
    assert json.loads((out / "summary.json").read_text())["steps"] == 2
    assert (out / "checkpoints" / "last.ckpt").is_file()
