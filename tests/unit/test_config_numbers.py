"""Numbers that cannot be right, an empty recipe and a loss mapping are refused at validate time (issue 10, 2/8)."""
from __future__ import annotations

import math
from pathlib import Path

import pytest

from specframe.cli import main
from specframe.config import compose, validate_recipe
from specframe.errors import ConfigError


@pytest.mark.parametrize("weight", [math.nan, math.inf, -math.inf, -1.0])
def test_non_finite_or_negative_loss_weight(tiny_recipe_dict, weight) -> None:
    tiny_recipe_dict["loss"] = [{"name": "ce", "weight": weight}]
    with pytest.raises(ConfigError, match=r"loss\[0\]\.weight: must be a finite number >= 0"):
        validate_recipe(tiny_recipe_dict)


def test_zero_weight_is_allowed(tiny_recipe_dict) -> None:
    tiny_recipe_dict["loss"] = [{"name": "ce", "weight": 0.0}, {"name": "ce", "weight": 1.0, "label": "ce2"}]
    assert validate_recipe(tiny_recipe_dict).loss[0].weight == 0.0


@pytest.mark.parametrize("section,key,value,message", [
    ("trainer", "save_every_n_steps", 2.5, "trainer.save_every_n_steps: must be an integer, got 2.5"),
    ("trainer", "precision", "bf17-mixed", "precision must be one of 32-true, bf16-mixed"),
    ("trainer", "accumulate_grad_batches", 0, "accumulate_grad_batches must be >= 1, got 0"),
    ("trainer", "num_nodes", 0, "num_nodes must be >= 1, got 0"),
    ("trainer", "log_every_n_steps", 0, "log_every_n_steps must be >= 1"),
    ("trainer", "gradient_clip_val", math.inf, "trainer.gradient_clip_val: must be a finite number"),
    ("trainer", "max_steps", "100", "trainer.max_steps: must be an integer, got the string '100'"),
    ("optim", "lr", math.inf, "optim.lr: must be a finite number, got inf"),
    ("optim", "lr", math.nan, "optim.lr: must be a finite number, got nan"),
    ("data", "batch_size", True, "data.batch_size: expected an integer, got the boolean True"),
    ("run", "resume", "yes", "run.resume: must be true or false"),
])
def test_bad_numbers_named(tiny_recipe_dict, section, key, value, message) -> None:
    tiny_recipe_dict[section][key] = value
    with pytest.raises(ConfigError) as info:
        validate_recipe(tiny_recipe_dict)
    assert any(message in issue for issue in info.value.issues), info.value.issues


def test_precision_typo_suggests_the_closest(tiny_recipe_dict) -> None:
    tiny_recipe_dict["trainer"]["precision"] = "bf17-mixed"
    with pytest.raises(ConfigError, match="did you mean 'bf16-mixed'"):
        validate_recipe(tiny_recipe_dict)


def test_integral_float_becomes_an_integer(tiny_recipe_dict) -> None:
    tiny_recipe_dict["trainer"]["max_steps"] = 1e3  # YAML `1e3`
    recipe = validate_recipe(tiny_recipe_dict)
    assert recipe.trainer.max_steps == 1000 and isinstance(recipe.trainer.max_steps, int)


def test_empty_recipe_is_refused_naming_the_sections(tmp_path: Path, capsys) -> None:
    empty = tmp_path / "empty.yaml"
    empty.write_text("")
    with pytest.raises(ConfigError) as info:
        compose(empty)
    assert [i.split(": ", 1)[1].split(";")[0] for i in info.value.issues] == ["no `target:` section"]
    assert main(["validate", str(empty)]) == 2
    assert "no `target:` section" in capsys.readouterr().err


def test_required_sections_may_come_from_overrides(tmp_path: Path) -> None:
    empty = tmp_path / "empty.yaml"
    empty.write_text("")
    cfg = compose(empty, overrides=["target.name=tiny"])
    assert cfg.target.name == "tiny"


def test_loss_given_as_a_mapping(tmp_path: Path) -> None:
    path = tmp_path / "r.yaml"
    path.write_text("target: {name: tiny}\nloss: {name: ce, weight: 1.0}\n")
    with pytest.raises(ConfigError, match=r"`loss:` must be a list, like \[\{name: ce, weight: 1.0\}\]; got a dict"):
        compose(path)


def test_section_given_as_a_scalar(tiny_recipe_dict) -> None:
    tiny_recipe_dict["trainer"] = 5
    with pytest.raises(ConfigError, match="trainer: expected a mapping of options, got int 5"):
        validate_recipe(tiny_recipe_dict)


def test_plugin_option_before_the_overrides(tmp_path: Path, capsys) -> None:
    (tmp_path / "my_plugin.py").write_text("X = 1\n")
    recipe = tmp_path / "r.yaml"
    recipe.write_text("target: {name: tiny}\ndata: {train: in_memory}\n"
                      f"run: {{output_dir: {tmp_path / 'run'}}}\n")
    assert main(["validate", str(recipe), "--plugin", str(tmp_path / "my_plugin.py"), "trainer.max_steps=3"]) == 0
    assert "OK" in capsys.readouterr().out
