"""Shared fixtures: the tiny random target, a tiny recipe with in-memory chats, and a sealed environment.

Every test runs offline on CPU: W&B is disabled and its folders, like other tool caches, point into a
session temporary folder, so that nothing a test does lands in the repository or the home folder.
"""
from __future__ import annotations

import copy
import os
import random
import sys
from pathlib import Path
from typing import Any

import pytest
import torch

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:  # `plugins.<name>` imports resolve from the repository root
    sys.path.insert(0, str(REPO_ROOT))

# A few real multi-turn chats (system / user / assistant). Assistant replies are long enough for blocks of 8 to
# fit inside them at max_length 160 with the byte-level tiny tokenizer (one token per byte).
CONVERSATIONS: list[list[dict[str, str]]] = [
    [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "What is 2+2?"},
        {"role": "assistant", "content": "2+2 is 4. Adding two and two gives four."},
        {"role": "user", "content": "And 3+3?"},
        {"role": "assistant", "content": "3+3 is 6, an even number."},
    ],
    [
        {"role": "user", "content": "Name a colour."},
        {"role": "assistant", "content": "Blue, the colour of a clear sky at noon."},
    ],
    [
        {"role": "system", "content": "You like lists."},
        {"role": "user", "content": "Two fruits?"},
        {"role": "assistant", "content": "1. apple\n2. pear\nBoth grow on trees."},
    ],
    [
        {"role": "user", "content": "Say hello in French."},
        {"role": "assistant", "content": "Bonjour! That is hello in French."},
        {"role": "user", "content": "And goodbye?"},
        {"role": "assistant", "content": "Au revoir, which means goodbye."},
    ],
    [
        {"role": "system", "content": "Answer in one line."},
        {"role": "user", "content": "Capital of Italy?"},
        {"role": "assistant", "content": "Rome is the capital of Italy."},
    ],
    [
        {"role": "user", "content": "Count to five."},
        {"role": "assistant", "content": "one, two, three, four, five."},
    ],
]


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--specframe-plugin", action="append", default=[], metavar="MODULE_OR_PATH",
        help="import this specframe plugin (a module name, or a .py file relative to the current folder) before "
             "collection, so that the registry contract tests (tests/unit/losses/test_loss_contract.py, "
             "tests/unit/test_contracts.py) cover what it registers; repeatable")


def pytest_configure(config: pytest.Config) -> None:
    """Import the --specframe-plugin plugins before any test module lists a registry."""
    specs = config.getoption("specframe_plugin", default=None) or []
    if not specs:
        return
    import traceback

    from specframe.errors import PluginImportError
    from specframe.plugins import import_plugins

    try:
        import_plugins(specs, entry_point_group=False)
    except PluginImportError as e:
        cause = "".join(traceback.format_exception(e.__cause__ or e))
        raise pytest.UsageError(f"--specframe-plugin: {e}\n{cause}") from e


@pytest.fixture(scope="session", autouse=True)
def _sealed_environment(tmp_path_factory: pytest.TempPathFactory):
    """W&B off and tool caches in a temporary folder for the whole session."""
    root = tmp_path_factory.mktemp("env")
    # Pin the caches that matter for real models to where they are now before moving XDG_CACHE_HOME, so that
    # tests that use a cached SmolLM2 (other test files) still find it.
    home_cache = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
    env = {
        "WANDB_MODE": "disabled",
        "WANDB_SILENT": "true",
        "WANDB_DIR": str(root / "wandb"),
        "WANDB_CACHE_DIR": str(root / "wandb_cache"),
        "WANDB_CONFIG_DIR": str(root / "wandb_config"),
        "WANDB_DATA_DIR": str(root / "wandb_data"),
        "MPLCONFIGDIR": str(root / "matplotlib"),
        "TORCHINDUCTOR_CACHE_DIR": str(root / "inductor"),
        "TRITON_CACHE_DIR": str(root / "triton"),
        "HF_HOME": os.environ.get("HF_HOME", str(home_cache / "huggingface")),
        "SPECFRAME_CACHE": os.environ.get("SPECFRAME_CACHE", str(home_cache / "specframe")),
        "XDG_CACHE_HOME": str(root / "xdg_cache"),
        "HF_HUB_OFFLINE": "1",
        "TOKENIZERS_PARALLELISM": "false",
    }
    mp = pytest.MonkeyPatch()
    for key, value in env.items():
        mp.setenv(key, value)
    yield root
    mp.undo()


@pytest.fixture(autouse=True)
def _seed() -> None:
    """Every test starts from the same global RNG state (tests that need other seeds use generators)."""
    random.seed(0)
    torch.manual_seed(0)


@pytest.fixture(scope="session")
def tiny_target():
    """The tiny random Llama target (byte-level ChatML tokenizer); its weights are a function of its seed."""
    from specframe.targets import TARGETS

    return TARGETS.build("tiny", {})


@pytest.fixture(scope="session")
def tiny_spec(tiny_target):
    return tiny_target.spec


@pytest.fixture(scope="session")
def conversations() -> list[list[dict[str, str]]]:
    """Six small chats; pass them as `train(recipe, conversations=...)` / `ChatDataModule(..., conversations=...)`.

    Shared by the session: do not mutate (copy.deepcopy it first).
    """
    return copy.deepcopy(CONVERSATIONS)


def make_recipe_dict(output_dir: Path, **sections: dict[str, Any]) -> dict[str, Any]:
    """A complete recipe dict on the tiny target; keyword arguments update the named sections."""
    recipe: dict[str, Any] = {
        "run": {"name": "tiny", "output_dir": str(output_dir), "seed": 0, "resume": True},
        "data": {"train": "in_memory", "val_conversations": 2, "max_length": 160, "batch_size": 2,
                 "num_anchors": 4, "min_supervised": 2},
        "target": {"name": "tiny"},
        "drafter": {"name": "block_diffusion", "num_layers": 1, "block_size": 8},
        "alignment": [],
        "loss": [{"name": "ce", "weight": 1.0}],
        "optim": {"lr": 1e-3, "chunk_blocks": 64},
        "trainer": {"max_steps": 2, "val_every_n_steps": 2, "save_every_n_steps": 1, "log_every_n_steps": 1,
                    "accelerator": "cpu", "devices": 1, "strategy": "auto", "precision": "32-true",
                    "progress_bar": False},
        "eval": {},
        "plugins": [],
    }
    for key, value in sections.items():
        if isinstance(value, dict) and isinstance(recipe.get(key), dict):
            recipe[key] = {**recipe[key], **value}
        else:
            recipe[key] = value
    return recipe


@pytest.fixture(scope="session")
def recipe_factory():
    """`make_recipe_dict(output_dir, **section_updates)`, for tests that need several recipes."""
    return make_recipe_dict


@pytest.fixture
def tiny_recipe_dict(tmp_path: Path) -> dict[str, Any]:
    """A resolved recipe dict: tiny target, 1-layer drafter, block_size 8, 2 steps, output under tmp_path."""
    return make_recipe_dict(tmp_path / "run")


@pytest.fixture(scope="session")
def make_untrained_run():
    """`make(run_folder)`: write a Lightning-style checkpoint of an untrained quickstart+tiny drafter (the resolved
    recipe + drafter/vocab weights, no target) into `run_folder/checkpoints/last.ckpt`; returns the module."""
    from specframe.config import compose, validate_recipe
    from specframe.module import DraftTrainingModule

    recipes = Path(__file__).resolve().parents[1] / "recipes"

    def make(run: Path) -> Any:
        recipe = validate_recipe(compose(recipes / "quickstart.yaml", [recipes / "debug" / "tiny.yaml"],
                                         [f"run.output_dir={run}"]))
        module = DraftTrainingModule(recipe.resolved)
        state = {k: v for k, v in module.state_dict().items() if not k.startswith("target.")}
        (run / "checkpoints").mkdir()
        torch.save({"hyper_parameters": {"config": recipe.resolved}, "state_dict": state},
                   run / "checkpoints" / "last.ckpt")
        return module

    return make
