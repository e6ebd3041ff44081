"""`specframe train` ends by telling the user the command that measures τ_real and the speedup."""
from __future__ import annotations

from pathlib import Path

from specframe.cli.train import eval_command
from specframe.config import load_recipe

RECIPES = Path(__file__).resolve().parents[3] / "recipes"


def test_eval_command_follows_the_recipes_eval_section(tmp_path):
    recipe = load_recipe(RECIPES / "quickstart.yaml", [f"run.output_dir={tmp_path}/qs"])
    cmd = eval_command(recipe)
    assert cmd.startswith(f"specframe eval {tmp_path}/qs --benchmarks mt_bench humaneval gsm8k")
    assert f"--num-prompts {recipe.eval.num_prompts} --max-new-tokens {recipe.eval.max_new_tokens}" in cmd


def test_eval_command_defaults_to_auto_block_and_float32(tmp_path):
    recipe = load_recipe(RECIPES / "debug" / "tiny.yaml", [f"run.output_dir={tmp_path}"])
    assert recipe.eval.block_size is None and recipe.eval.dtype is None
    assert eval_command(recipe).endswith("--block-size auto --dtype float32")
