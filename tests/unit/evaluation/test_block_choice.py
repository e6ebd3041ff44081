"""`block_size: auto`: the decode-time block is chosen by timing pilot prompts that are not evaluated."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from specframe.cli import main
from specframe.config import compose, validate_recipe
from specframe.errors import ConfigError
from specframe.evaluation.block_choice import PilotRow, best, candidate_block_sizes, pilot_prompts

RECIPES = Path(__file__).resolve().parents[3] / "recipes"


@pytest.mark.parametrize("max_block,sizes", [(16, [2, 4, 8, 16]), (8, [2, 4, 8]), (6, [2, 4, 6]), (2, [2])])
def test_candidates_are_powers_of_two_up_to_the_drafters_block(max_block, sizes):
    assert candidate_block_sizes(max_block) == sizes


def test_best_is_the_fastest_and_ties_go_to_the_larger_block():
    rows = [PilotRow(block_size=2, tokens=90, steps=60, seconds=3.0),   # 30 tok/s
            PilotRow(block_size=4, tokens=120, steps=60, seconds=3.0),  # 40 tok/s
            PilotRow(block_size=8, tokens=125, steps=60, seconds=5.0)]  # 25 tok/s
    assert best(rows) == 4
    assert best([PilotRow(block_size=2, tokens=10, steps=5, seconds=1.0),
                 PilotRow(block_size=4, tokens=10, steps=5, seconds=1.0)]) == 4
    with pytest.raises(ValueError):
        best([])


def test_bad_block_size_setting_is_a_config_error():
    with pytest.raises(ConfigError, match=r"eval\.block_size.*'big'"):
        validate_recipe(compose(RECIPES / "quickstart.yaml", [RECIPES / "debug" / "tiny.yaml"],
                                ["eval.block_size=big"]))


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory, make_untrained_run):
    run = tmp_path_factory.mktemp("run")
    module = make_untrained_run(run)
    return run, module.target


@pytest.fixture
def prompt_file(tmp_path):
    path = tmp_path / "p.jsonl"
    path.write_text('{"prompt": "Hello"}\n{"prompt": "Bye"}\n{"prompt": "Pilot one"}\n')
    return path


def test_pilot_prompts_are_the_ones_after_the_evaluated_ones(checkpoint, prompt_file):
    from specframe.data.chat import render_prompt

    _, target = checkpoint
    got = pilot_prompts(target, [str(prompt_file)], {}, skip=2)
    assert got == [render_prompt(target.tokenizer, [{"role": "user", "content": "Pilot one"}])]


def test_eval_block_size_auto(checkpoint, prompt_file, tmp_path, capsys):
    run, _ = checkpoint
    out = tmp_path / "out"
    rc = main(["eval", str(run), "--benchmarks", str(prompt_file), "--num-prompts", "2", "--max-new-tokens", "6",
               "--block-size", "auto", "--no-progress", "--out", str(out)])
    printed = capsys.readouterr().out
    assert rc == 0 and "block size auto ->" in printed
    [json_file] = out.glob("*.json")
    report = json.loads(json_file.read_text())
    choice = report["block_choice"]
    assert [r["block_size"] for r in choice["table"]] == [2, 4, 8]  # the tiny drafter's block is 8
    assert choice["pilot_prompts"] == 1 and all(r["seconds"] > 0 for r in choice["table"])
    assert report["settings"]["block_size"] == choice["chosen"] in (2, 4, 8)
    assert report["settings"]["block_size_requested"] == "auto"
    assert report["summary"][str(prompt_file)]["identical"] == "2/2"  # still lossless
    assert "## Block size: auto" in (out / json_file.name.replace(".json", ".md")).read_text()


def test_bad_block_size_flag_is_refused(checkpoint, capsys):
    run, _ = checkpoint
    with pytest.raises(SystemExit):
        main(["eval", str(run), "--block-size", "huge"])
    assert "integer >= 2 or auto" in capsys.readouterr().err
