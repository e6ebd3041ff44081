"""Recipes: compose (base + overlays + overrides), validate in layers with all problems at once, save, CLI."""
from __future__ import annotations

import os
import textwrap
from pathlib import Path

import pytest
import yaml

from specframe.cli import main
from specframe.config import compose, load_recipe, save_resolved, validate_recipe
from specframe.resources import prepare_recipe
from specframe.errors import ConfigError, PluginImportError
from specframe.losses import LOSS_TERMS


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text))
    return path


@pytest.fixture
def recipes(tmp_path: Path) -> dict[str, Path]:
    """A base recipe, an experiment on it (deltas only) and an overlay, all writing under tmp_path."""
    base = write(tmp_path / "r" / "base.yaml", f"""
        run: {{name: base_run, output_dir: "{tmp_path}/runs/${{run.name}}", seed: 3}}
        data: {{max_length: 256, batch_size: 8}}
        target: {{name: hf, model: some-org/some-model, dtype: bfloat16, num_taps: 3}}
        drafter: {{name: block_diffusion, num_layers: 2, block_size: 16}}
        loss:
          - {{name: positional, weight: 1.0, gamma: 10}}
          - {{name: first_error_focal, weight: 0.3}}
          - {{name: chain, weight: 40.0}}
        optim: {{lr: 6.0e-4}}
        trainer: {{max_steps: 100}}
        eval: {{benchmarks: [mt_bench, gsm8k]}}
        """)
    exp = write(tmp_path / "r" / "exp.yaml", """
        base: base.yaml
        run: {name: exp_run}
        loss:
          - {name: ce, weight: 1.0}
        """)
    overlay = write(tmp_path / "r" / "debug" / "tiny.yaml", """
        data: {batch_size: 2, num_anchors: 4}
        target: {name: tiny}
        drafter: {block_size: 8}
        trainer: {max_steps: 2}
        """)
    return {"base": base, "exp": exp, "overlay": overlay}


# -- composition -----------------------------------------------------------------------------------
def test_base_then_recipe_then_overlay_then_overrides(recipes, tmp_path) -> None:
    cfg = compose(recipes["exp"], [recipes["overlay"]], ["optim.lr=0.01", "data.max_length=64"])
    assert cfg.run.name == "exp_run" and cfg.run.seed == 3  # recipe over base, base kept where untouched
    assert cfg.run.output_dir == f"{tmp_path}/runs/exp_run"  # interpolation sees the final name
    assert cfg.data.batch_size == 2 and cfg.data.num_anchors == 4  # overlay over recipe
    assert cfg.drafter.block_size == 8 and cfg.drafter.num_layers == 2  # overlay merges within a section
    assert cfg.optim.lr == 0.01 and cfg.data.max_length == 64  # overrides last
    recipe = validate_recipe(cfg)
    assert recipe.optim.lr == 0.01 and recipe.trainer.max_steps == 2
    assert recipe.output_dir == tmp_path / "runs" / "exp_run"


def test_answers_path_in_a_file_is_relative_to_that_file(recipes, tmp_path, monkeypatch) -> None:
    shipped = write(tmp_path / "r" / "shipped.yaml", "base: base.yaml\ndata: {answers: data/answers.jsonl.gz}\n")
    monkeypatch.chdir(tmp_path)
    # taken against the recipe's folder, wherever the command runs
    assert compose(shipped).data.answers == str(tmp_path / "r" / "data" / "answers.jsonl.gz")
    overlay = write(tmp_path / "o" / "answers.yaml", "data: {answers: ~/a.jsonl.gz}\n")
    assert compose(shipped, [overlay]).data.answers == str(Path("~/a.jsonl.gz").expanduser())
    # an override on the command line is relative to the current folder, as the user typed it
    assert compose(shipped, [], ["data.answers=mine.jsonl.gz"]).data.answers == "mine.jsonl.gz"


def test_lists_are_replaced_not_merged(recipes) -> None:
    cfg = compose(recipes["exp"])
    assert [t["name"] for t in cfg.loss] == ["ce"]  # base had three terms
    cfg = compose(recipes["exp"], overrides=["eval.benchmarks=[humaneval]"])
    assert list(cfg.eval.benchmarks) == ["humaneval"]


def test_naming_another_target_replaces_the_section(recipes) -> None:
    cfg = compose(recipes["base"], [recipes["overlay"]])
    assert dict(cfg.target) == {"name": "tiny"}  # hf's model/dtype/num_taps must not leak into tiny
    validate_recipe(cfg)  # and tiny would reject them


def test_same_target_name_merges_options(recipes, tmp_path) -> None:
    over = write(tmp_path / "o.yaml", "target: {name: hf, dtype: float32}\n")
    cfg = compose(recipes["base"], [over])
    assert cfg.target.model == "some-org/some-model" and cfg.target.dtype == "float32"


def test_naming_another_drafter_replaces_the_section(recipes, tmp_path) -> None:
    from specframe.drafters import DRAFTERS

    with DRAFTERS.isolated():
        DRAFTERS.register("other_drafter")(type("OtherDrafter", (), {"__doc__": "x"}))
        over = write(tmp_path / "o.yaml", "drafter: {name: other_drafter}\n")
        cfg = compose(recipes["base"], [over])
        assert dict(cfg.drafter) == {"name": "other_drafter"}


def test_unknown_section_in_file_error_with_suggestion(tmp_path) -> None:
    bad = write(tmp_path / "bad.yaml", "target: {name: tiny}\noptimm: {lr: 1}\ntrainr: {}\n")
    with pytest.raises(ConfigError) as info:
        compose(bad)
    assert len(info.value.issues) == 2
    assert "unknown section 'optimm'; did you mean 'optim'?" in str(info.value)
    assert "unknown section 'trainr'; did you mean 'trainer'?" in str(info.value)
    assert str(bad) in str(info.value)


def test_unknown_override_keys_all_reported_with_suggestions(recipes) -> None:
    with pytest.raises(ConfigError) as info:
        compose(recipes["exp"], overrides=["optim.lrr=1", "traner.max_steps=3", "drafter.num_layer=2",
                                           "loss.0.wieght=2"])
    issues = info.value.issues
    assert len(issues) == 4
    assert "did you mean 'optim.lr'?" in issues[0] and "+optim.lrr" in issues[0]
    assert "unknown section 'traner'; did you mean 'trainer'?" in issues[1]
    assert "did you mean 'drafter.num_layers'?" in issues[2]
    assert "did you mean 'loss.0.weight'?" in issues[3]


def test_override_schema_and_component_keys_not_yet_present(recipes) -> None:
    # keys absent from the file but declared by the section schema or the component's config are fine
    cfg = compose(recipes["exp"], overrides=["optim.weight_decay=0.1", "drafter.attention=sdpa",
                                             "loss.0.label=base_ce"])
    assert cfg.optim.weight_decay == 0.1 and cfg.drafter.attention == "sdpa" and cfg.loss[0].label == "base_ce"


def test_override_index_out_of_range(recipes) -> None:
    with pytest.raises(ConfigError, match=r"no such entry 'loss\.5'"):
        compose(recipes["exp"], overrides=["loss.5.weight=2"])


def test_override_without_equals_sign(recipes) -> None:
    with pytest.raises(ConfigError, match="expected key=value"):
        compose(recipes["exp"], overrides=["optim.lr"])


def test_plus_adds_a_key_on_purpose(recipes) -> None:
    with pytest.raises(ConfigError):
        compose(recipes["exp"], overrides=["run.note=hello"])
    cfg = compose(recipes["exp"], overrides=["+run.note=hello"])
    assert cfg.run.note == "hello"
    # ... and the schema layer still rejects it at validation time, with a suggestion-bearing message
    with pytest.raises(ConfigError, match=r"run\.note: unknown option"):
        validate_recipe(cfg)


def test_override_values_are_typed(recipes) -> None:
    cfg = compose(recipes["exp"], overrides=["trainer.max_steps=7", "optim.lr=1e-3", "run.resume=false",
                                             "trainer.gradient_clip_val=null"])
    assert cfg.trainer.max_steps == 7 and cfg.optim.lr == pytest.approx(1e-3)
    assert cfg.run.resume is False and cfg.trainer.gradient_clip_val is None


def test_exponent_floats_are_numbers_in_files_and_overrides(tmp_path) -> None:
    # PyYAML (YAML 1.1) reads `1e-3` as a string; a recipe means a learning rate.
    r = write(tmp_path / "r.yaml", f"run: {{output_dir: {tmp_path}/o}}\ntarget: {{name: tiny}}\noptim: {{lr: 1e-3}}\n")
    assert load_recipe(r).optim.lr == pytest.approx(1e-3)
    assert load_recipe(r, ["optim.lr=3E-4"]).optim.lr == pytest.approx(3e-4)
    assert compose(r, overrides=["run.name=1e5x"]).run.name == "1e5x"


def test_base_of_a_base_is_rejected(tmp_path, recipes) -> None:
    deep = write(tmp_path / "r" / "deep.yaml", "base: exp.yaml\n")
    with pytest.raises(ConfigError, match="one level of composition"):
        compose(deep)


def test_missing_file_and_bad_yaml(tmp_path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        compose(tmp_path / "nope.yaml")
    bad = write(tmp_path / "bad.yaml", "run: {name: [\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        compose(bad)
    listy = write(tmp_path / "list.yaml", "- a\n- b\n")
    with pytest.raises(ConfigError, match="must be a mapping"):
        compose(listy)


# -- validation ------------------------------------------------------------------------------------
def test_all_problems_are_reported_at_once(tiny_recipe_dict) -> None:
    tiny_recipe_dict["loss"] = [{"name": "cee"}, {"name": "chain", "weight": "heavy"}]
    tiny_recipe_dict["optim"] = {"lrr": 1.0}
    with pytest.raises(ConfigError) as info:
        validate_recipe(tiny_recipe_dict)
    issues = info.value.issues
    assert len(issues) == 3, issues
    assert str(info.value).startswith("3 problems in the recipe:")
    text = "\n".join(issues)
    assert "loss[0].name: unknown loss term 'cee'. Did you mean 'ce'?" in text
    assert "loss[1].weight: must be a number, got 'heavy'" in text
    assert "optim.lrr: unknown option; did you mean 'lr'?" in text


def test_misspelt_loss_name_lists_valid_names_and_plugin_hint(tiny_recipe_dict) -> None:
    tiny_recipe_dict["loss"] = [{"name": "ce"}, {"name": "first_eror_focal", "weight": 0.3}]
    with pytest.raises(ConfigError) as info:
        validate_recipe(tiny_recipe_dict)
    msg = str(info.value)
    assert "loss[1].name" in msg and "Did you mean 'first_error_focal'?" in msg
    assert str(LOSS_TERMS.names()) in msg and "--plugin" in msg


@pytest.mark.parametrize("weight", ["heavy", True, None, [1.0]])
def test_bad_weight_type(tiny_recipe_dict, weight) -> None:
    tiny_recipe_dict["loss"] = [{"name": "ce", "weight": weight}]
    with pytest.raises(ConfigError, match=r"loss\[0\]\.weight: must be a number"):
        validate_recipe(tiny_recipe_dict)


def test_integer_weight_is_accepted(tiny_recipe_dict) -> None:
    tiny_recipe_dict["loss"] = [{"name": "chain", "weight": 40}]
    assert validate_recipe(tiny_recipe_dict).loss[0].weight == 40.0


def test_unknown_loss_option_and_bad_option_value(tiny_recipe_dict) -> None:
    tiny_recipe_dict["loss"] = [{"name": "positional", "gama": 5}, {"name": "first_error_focal", "phi": -1}]
    with pytest.raises(ConfigError) as info:
        validate_recipe(tiny_recipe_dict)
    assert len(info.value.issues) == 2
    assert "loss[0].gama: unknown option; did you mean 'gamma'?" in info.value.issues[0]
    assert "loss[1]" in info.value.issues[1] and "phi must be >= 0" in info.value.issues[1]


def test_duplicate_term_labels(tiny_recipe_dict) -> None:
    tiny_recipe_dict["loss"] = [{"name": "ce"}, {"name": "ce", "weight": 0.5}]
    with pytest.raises(ConfigError, match=r"term 'ce' appears twice; give each a distinct `label:`"):
        validate_recipe(tiny_recipe_dict)
    tiny_recipe_dict["loss"][1]["label"] = "ce_again"
    recipe = validate_recipe(tiny_recipe_dict)
    assert [t.label for t in recipe.loss] == ["ce", "ce_again"] and recipe.loss[1].weight == 0.5
    assert recipe.loss[1].options == {}  # name/weight/label are not passed to the term


def test_empty_loss_and_missing_name(tiny_recipe_dict) -> None:
    tiny_recipe_dict["loss"] = []
    tiny_recipe_dict["drafter"] = {"block_size": 8}
    with pytest.raises(ConfigError) as info:
        validate_recipe(tiny_recipe_dict)
    assert len(info.value.issues) == 2
    assert "drafter: expected a mapping with a 'name' key" in str(info.value)
    assert "loss: expected a non-empty list" in str(info.value)


def test_section_value_errors_have_paths(tiny_recipe_dict) -> None:
    tiny_recipe_dict["data"]["num_anchors"] = 0
    tiny_recipe_dict["drafter"]["block_size"] = 1
    with pytest.raises(ConfigError) as info:
        validate_recipe(tiny_recipe_dict)
    assert len(info.value.issues) == 2
    assert "data: num_anchors must be >= 1, got 0" in info.value.issues[0]
    assert "drafter: block_size must be in [2, 256], got 1" in info.value.issues[1]


def test_decode_strategy_in_training_alignment_is_rejected(tiny_recipe_dict) -> None:
    tiny_recipe_dict["alignment"] = [{"name": "single"}]
    with pytest.raises(ConfigError, match=r"alignment\[0\]: 'single' is a decode-time strategy"):
        validate_recipe(tiny_recipe_dict)


def test_default_output_dir_uses_the_run_name(tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    r = write(tmp_path / "r.yaml", "run: {name: my_run}\ntarget: {name: tiny}\n")
    assert load_recipe(r).output_dir == Path("runs/my_run")


def test_bad_interpolation_is_a_config_error(tmp_path) -> None:
    r = write(tmp_path / "r.yaml", 'run: {output_dir: "runs/${run.nme}"}\ntarget: {name: tiny}\n')
    with pytest.raises(ConfigError, match=r"run\.output_dir: .*run\.nme"):
        load_recipe(r)


def test_overlay_alone_interpolates_the_default_run_name(tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    r = write(tmp_path / "r.yaml", 'run: {output_dir: "runs/debug/${run.name}"}\ntarget: {name: tiny}\n')
    assert load_recipe(r).output_dir == Path("runs/debug/run")


def test_output_dir_below_a_file_is_not_writable(tiny_recipe_dict, tmp_path) -> None:
    (tmp_path / "a_file").write_text("x")
    tiny_recipe_dict["run"]["output_dir"] = str(tmp_path / "a_file" / "run")
    with pytest.raises(ConfigError, match=r"run\.output_dir: cannot create .*a_file.* is not a folder"):
        prepare_recipe(tiny_recipe_dict)
    # the same check is skipped where a run folder is not about to be created
    prepare_recipe(tiny_recipe_dict, output_dir=False)
    validate_recipe(tiny_recipe_dict)  # and validation alone reads no file


@pytest.mark.skipif(hasattr(os, "geteuid") and os.geteuid() == 0, reason="root can write anywhere")
def test_output_dir_in_read_only_folder(tiny_recipe_dict, tmp_path) -> None:
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    try:
        tiny_recipe_dict["run"]["output_dir"] = str(ro / "deep" / "run")
        with pytest.raises(ConfigError, match=r"run\.output_dir: cannot write to"):
            prepare_recipe(tiny_recipe_dict)
    finally:
        ro.chmod(0o700)


# -- plugins named by a recipe ---------------------------------------------------------------------
def test_plugin_import_failure_names_the_module_and_chains_the_error(tiny_recipe_dict) -> None:
    tiny_recipe_dict["plugins"] = ["specframe_no_such_plugin_xyz"]
    with pytest.raises(PluginImportError) as info:
        validate_recipe(tiny_recipe_dict)
    assert "specframe_no_such_plugin_xyz" in str(info.value)
    assert isinstance(info.value.__cause__, ModuleNotFoundError)
    assert info.value.__cause__.name == "specframe_no_such_plugin_xyz"


def test_plugin_that_raises_keeps_the_original_exception(tiny_recipe_dict, tmp_path) -> None:
    plugin = write(tmp_path / "broken_plugin.py", "x = 1 / 0\n")
    tiny_recipe_dict["plugins"] = [str(plugin)]
    with pytest.raises(PluginImportError, match="broken_plugin.py") as info:
        validate_recipe(tiny_recipe_dict)
    assert isinstance(info.value.__cause__, ZeroDivisionError)


def test_plugin_registers_a_term_that_the_recipe_uses(tiny_recipe_dict, tmp_path) -> None:
    plugin = write(tmp_path / "my_term_plugin.py", """
        from typing import ClassVar
        from specframe.losses import LOSS_TERMS
        from specframe.losses.ce import CrossEntropyLoss

        @LOSS_TERMS.register("my_plugin_term")
        class MyPluginTerm(CrossEntropyLoss):
            '''CE under another name (a test plugin).'''
        """)
    tiny_recipe_dict["plugins"] = [str(plugin)]
    tiny_recipe_dict["loss"] = [{"name": "my_plugin_term"}]
    with LOSS_TERMS.isolated():
        recipe = validate_recipe(tiny_recipe_dict)
        assert recipe.loss[0].name == "my_plugin_term" and recipe.plugins == [str(plugin)]


def test_plugins_must_be_a_list_of_strings(tiny_recipe_dict) -> None:
    tiny_recipe_dict["plugins"] = "plugins.x"
    with pytest.raises(ConfigError, match="plugins: expected a list"):
        validate_recipe(tiny_recipe_dict)


# -- provenance ------------------------------------------------------------------------------------
def test_save_resolved_writes_recipe_and_provenance(tiny_recipe_dict, tmp_path) -> None:
    recipe = validate_recipe(tiny_recipe_dict)
    out = save_resolved(recipe, tmp_path / "saved", ["plugins.example"])
    assert out == tmp_path / "saved" / "recipe.resolved.yaml"
    doc = yaml.safe_load(out.read_text())
    prov = doc.pop("_provenance")
    assert doc == tiny_recipe_dict
    from specframe import __version__

    assert prov["specframe_version"] == __version__
    assert prov["plugins_loaded"] == ["plugins.example"]
    assert "git_revision" in prov
    assert not list((tmp_path / "saved").glob("*.tmp"))
    # the saved file is itself a valid recipe (sections only, once provenance is set aside)
    validate_recipe(doc)


# -- `specframe validate` exit codes ---------------------------------------------------------------
@pytest.fixture
def cli_recipe(tmp_path) -> Path:
    return write(tmp_path / "cli.yaml", f"""
        run: {{name: cli, output_dir: "{tmp_path}/runs/cli"}}
        target: {{name: tiny}}
        drafter: {{name: block_diffusion, block_size: 8}}
        loss: [{{name: ce}}]
        """)


def test_cli_validate_ok(cli_recipe, capsys) -> None:
    assert main(["validate", str(cli_recipe), "optim.lr=0.01"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("OK ") and "target=tiny" in out and "loss=[1*ce]" in out


def test_cli_validate_config_error_exit_2(cli_recipe, capsys) -> None:
    assert main(["validate", str(cli_recipe), "optim.lrr=0.01", "loss.0.name=cee"]) == 2
    err = capsys.readouterr().err
    assert "did you mean 'optim.lr'?" in err


def test_cli_validate_config_error_from_validation_exit_2(cli_recipe, capsys) -> None:
    assert main(["validate", str(cli_recipe), "loss.0.name=cee"]) == 2
    assert "Did you mean 'ce'?" in capsys.readouterr().err


def test_cli_validate_plugin_error_exit_3(cli_recipe, capsys) -> None:
    assert main(["validate", str(cli_recipe), "--plugin", "specframe_no_such_plugin_xyz"]) == 3
    err = capsys.readouterr().err
    assert "specframe_no_such_plugin_xyz" in err and "ModuleNotFoundError" in err


def test_cli_validate_with_overlay(cli_recipe, recipes, capsys) -> None:
    assert main(["validate", str(cli_recipe), str(recipes["overlay"]), "trainer.max_steps=5"]) == 0


# -- the eval section: the same checks as `specframe eval` flags, at validate time ----------------------
def test_validate_rejects_bad_eval_values_before_training(capsys) -> None:
    quickstart = str(Path(__file__).resolve().parents[2] / "recipes" / "quickstart.yaml")
    assert main(["validate", quickstart, "eval.block_size=1"]) == 2
    assert "eval: block_size must be >= 2 (one anchor and at least one drafted token), got 1" in capsys.readouterr().err
    assert main(["validate", quickstart, "eval.block_size=1", "eval.num_prompts=0"]) == 2
    assert "num_prompts must be >= 1, got 0; block_size must be >= 2" in capsys.readouterr().err
    assert main(["validate", quickstart, "eval.benchmarks=[mt_bench,humaneavl]"]) == 2
    assert "eval.benchmarks[1]" in capsys.readouterr().err
    assert main(["validate", quickstart, "eval.strategy.name=self_selection", "eval.strategy.num_drafts=3"]) == 0
    assert main(["validate", quickstart, "eval.strategy.name=self_selection", "eval.strategy.num_drafts=0"]) == 2
    assert "eval.strategy: num_drafts must be >= 1" in capsys.readouterr().err
