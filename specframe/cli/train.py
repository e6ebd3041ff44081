"""`specframe train`, `specframe validate` and `specframe list`: recipes and the components they name."""
from __future__ import annotations

import argparse
from typing import Any

from specframe.cli.recipe_args import add_recipe_arguments, recipe_from_args

KINDS = ("drafters", "targets", "losses", "alignments", "strategies", "benchmarks")
"""`specframe list KIND`; `component_registries` maps each to its registry (a test checks the two agree)."""


def cmd_validate(args: argparse.Namespace) -> int:
    recipe = recipe_from_args(args)
    terms = ", ".join(f"{t.weight:g}*{t.label}" for t in recipe.loss)
    aligns = ", ".join(a.name for a in recipe.alignment) or "none"
    print(f"OK {args.recipe}: target={recipe.target.name}({recipe.target.options.get('model', '')}) "
          f"drafter={recipe.drafter.name} loss=[{terms}] alignment=[{aligns}] -> {recipe.output_dir}")
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    from specframe.training import train

    recipe = recipe_from_args(args)
    summary = train(recipe)
    print()
    print(f"held-out τ_sim before training: {summary['tau_sim_before']:.3f}")
    print(f"held-out τ_sim after  training: {summary['tau_sim_after']:.3f}   "
          f"({summary['held_out_blocks']} blocks, {summary['steps']} steps)")
    print(f"run folder: {summary['output_dir']}  (summary.json, checkpoints/, logs/)")
    print(f"measure τ_real and the speedup by decoding for real:\n  {eval_command(recipe)}")
    return 0


def eval_command(recipe: Any) -> str:
    """The `specframe eval` command that measures this run (benchmarks, prompts and tokens from its eval: section)."""
    e = recipe.eval
    parts = ["specframe eval", str(recipe.output_dir), "--benchmarks", *e.benchmarks,
             "--num-prompts", str(e.num_prompts), "--max-new-tokens", str(e.max_new_tokens)]
    if e.block_size is None:  # the recipe's block size and dtype apply by default; say the usual choices
        parts += ["--block-size", "auto"]
    if e.dtype is None:
        parts += ["--dtype", "float32"]  # bit-exact greedy on CPU
    return " ".join(parts)


def component_registries() -> dict[str, Any]:
    """What `specframe list` shows, by the word that selects it: the recipe's registries, strategies, benchmarks."""
    from specframe.config import registries
    from specframe.evaluation.benchmarks import BENCHMARKS

    regs = registries()
    return {"drafters": regs["drafter"], "targets": regs["target"], "losses": regs["loss"],
            "alignments": regs["alignment"], "strategies": regs["strategy"], "benchmarks": BENCHMARKS}


def cmd_list(args: argparse.Namespace) -> int:
    from specframe.plugins import import_plugins

    import_plugins(args.plugin)
    regs = component_registries()
    for kind in [args.kind] if args.kind else KINDS:
        print(f"{kind}:")
        for e in regs[kind].entries():
            tags = [f"[{e.meta[k]}]" for k in ("stage", "domain") if k in e.meta]
            print(f"  {e.name:<24}{e.summary}{' ' + ' '.join(tags) if tags else ''}")
    return 0


def add_list_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("kind", nargs="?", choices=KINDS)
    p.add_argument("--plugin", action="append", default=[], help="import this module or .py file first (repeatable)")


COMMANDS = [
    ("train", "train a drafter from a recipe", add_recipe_arguments, cmd_train),
    ("validate", "check a recipe without loading any model", add_recipe_arguments, cmd_validate),
    ("list", "list registered components", add_list_arguments, cmd_list),
]
"""(name, help, add_arguments, run) of each command of this family; cli/__init__.py registers them."""
