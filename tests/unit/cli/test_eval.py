"""`specframe eval` end to end on a checkpoint of the tiny recipe (written without training)."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from specframe.cli import main
from specframe.config import compose, validate_recipe
from specframe.module import DraftTrainingModule

RECIPES = Path(__file__).resolve().parents[3] / "recipes"


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory, make_untrained_run):
    """A Lightning-style checkpoint of an untrained drafter: the resolved recipe + drafter/vocab weights."""
    run = tmp_path_factory.mktemp("run")
    make_untrained_run(run)
    return run


@pytest.fixture
def prompt_file(tmp_path):
    path = tmp_path / "p.jsonl"
    path.write_text('{"prompt": "Hello"}\n{"prompt": "Bye"}\n')
    return path


def test_eval_command(checkpoint, prompt_file, tmp_path, capsys):
    out = tmp_path / "out"
    rc = main(["eval", str(checkpoint), "--benchmarks", str(prompt_file), "--num-prompts", "2", "--max-new-tokens",
               "6", "--oracle", "--parity", "--no-progress", "--out", str(out)])
    printed = capsys.readouterr().out
    assert rc == 0
    assert "| benchmark | responses | τ |" in printed and "train/serve parity" in printed
    [json_file] = out.glob("*.json")
    report = json.loads(json_file.read_text())
    assert report["settings"]["block_size"] == 8  # the drafter's, from the recipe
    assert report["summary"][str(prompt_file)]["identical"] == "2/2"
    assert report["parity"]["steps_with_equal_accepted_length"] == report["parity"]["steps"]
    assert (out / json_file.name.replace(".json", ".md")).is_file()


def test_eval_strategy_options(checkpoint, prompt_file, tmp_path, capsys):
    rc = main(["eval", str(checkpoint / "checkpoints" / "last.ckpt"), "--benchmarks", str(prompt_file),
               "--num-prompts", "1", "--max-new-tokens", "4", "--strategy", "self_selection", "--strategy-opt",
               "num_drafts=2", "--block-size", "4", "--no-progress", "--no-baseline", "--out", str(tmp_path)])
    assert rc == 0
    [json_file] = tmp_path.glob("self_selection*.json")
    report = json.loads(json_file.read_text())
    assert report["settings"]["strategy"] == {"name": "self_selection", "num_drafts": 2}
    assert report["settings"]["block_size"] == 4
    assert "speedup" not in report["summary"][str(prompt_file)]


def test_eval_bad_strategy_option(checkpoint, prompt_file, capsys):
    rc = main(["eval", str(checkpoint), "--benchmarks", str(prompt_file), "--strategy", "self_selection",
               "--strategy-opt", "num_draft=2"])
    assert rc == 2
    assert "did you mean 'num_drafts'" in capsys.readouterr().err


def test_recipe_eval_settings_choose_dtype_and_skip_the_speedup(tmp_path, prompt_file, capsys):
    """`eval.dtype` and `eval.speedup: false` in the run's recipe act like --dtype and --no-baseline."""
    run = tmp_path / "run"
    recipe = validate_recipe(compose(RECIPES / "quickstart.yaml", [RECIPES / "debug" / "tiny.yaml"],
                                     [f"run.output_dir={run}", "eval.dtype=bfloat16", "eval.speedup=false"]))
    module = DraftTrainingModule(recipe.resolved)
    state = {k: v for k, v in module.state_dict().items() if not k.startswith("target.")}
    (run / "checkpoints").mkdir(parents=True)
    torch.save({"hyper_parameters": {"config": recipe.resolved}, "state_dict": state}, run / "checkpoints" / "last.ckpt")
    rc = main(["eval", str(run), "--benchmarks", str(prompt_file), "--num-prompts", "1", "--max-new-tokens", "3",
               "--no-progress", "--out", str(tmp_path / "out")])
    assert rc == 0
    [json_file] = (tmp_path / "out").glob("*.json")
    report = json.loads(json_file.read_text())
    assert report["dtype"] == "bfloat16"
    assert "speedup" not in report["summary"][str(prompt_file)]


def test_a_bad_eval_dtype_is_a_config_error():
    from specframe.errors import ConfigError

    with pytest.raises(ConfigError, match="float32, bfloat16, float16 or auto"):
        validate_recipe(compose(RECIPES / "quickstart.yaml", [RECIPES / "debug" / "tiny.yaml"], ["eval.dtype=fp8"]))


def test_a_run_evaluates_without_the_features_cache_it_was_trained_from(tmp_path, prompt_file, capsys):
    """The checkpoint's recipe names a features cache that no longer exists: eval does not need it."""
    run = tmp_path / "run"
    gone = tmp_path / "deleted_cache"
    recipe = validate_recipe(compose(RECIPES / "quickstart.yaml", [RECIPES / "debug" / "tiny.yaml"],
                                     [f"run.output_dir={run}", f"data.features_cache={gone}"]))
    module = DraftTrainingModule(recipe.resolved)
    state = {k: v for k, v in module.state_dict().items() if not k.startswith("target.")}
    (run / "checkpoints").mkdir(parents=True)
    torch.save({"hyper_parameters": {"config": recipe.resolved}, "state_dict": state}, run / "checkpoints" / "last.ckpt")
    assert not gone.exists()
    rc = main(["eval", str(run), "--benchmarks", str(prompt_file), "--num-prompts", "1", "--max-new-tokens", "3",
               "--no-progress", "--no-baseline", "--out", str(tmp_path / "out")])
    assert rc == 0, capsys.readouterr().err
    assert list((tmp_path / "out").glob("*.json"))


def test_eval_flags_are_checked_like_the_recipe_eval_section(checkpoint, prompt_file, capsys):
    """Flags override the recipe's `eval:` section and go through the same checks as `specframe validate`."""
    rc = main(["eval", str(checkpoint), "--benchmarks", str(prompt_file), "--block-size", "1", "--num-prompts", "0"])
    err = capsys.readouterr().err
    assert rc == 2
    assert "eval: num_prompts must be >= 1, got 0; block_size must be >= 2" in err
    rc = main(["eval", str(checkpoint), "--benchmarks", "humaneavl"])
    assert rc == 2
    assert "eval.benchmarks[0]" in capsys.readouterr().err
    rc = main(["eval", str(checkpoint), "--strategy", "target_greedy_labels"])
    assert rc == 2
    assert "'target_greedy_labels' is a training-time strategy" in capsys.readouterr().err
