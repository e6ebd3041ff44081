"""The `specframe` command.

    specframe train RECIPE [OVERLAY.yaml ...] [key=value ...] [--plugin MODULE]
    specframe validate RECIPE [OVERLAY.yaml ...] [key=value ...]
    specframe list [drafters|targets|losses|alignments]
    specframe eval RUN_OR_CHECKPOINT [--benchmarks ...]      (see `specframe eval -h`)
"""
from __future__ import annotations

import argparse
import importlib
import json
import logging
import sys
from pathlib import Path

from specframe.errors import ConfigError, PluginImportError

KINDS = {"drafters": "drafter", "targets": "target", "losses": "loss", "alignments": "alignment"}
# Subcommands that live in their own modules: name -> "module" exposing add_arguments(parser) and run(args).
EXTRA_COMMANDS: dict[str, tuple[str, str]] = {
    "eval": ("specframe.evaluation.cli", "decode for real on benchmarks: τ_real, speedup, parity with τ_sim"),
    "regenerate": ("specframe.data.regenerate", "rewrite assistant turns with the target's own responses"),
    "cache-features": ("specframe.data.feature_cache", "run the target once and store its features on disk"),
}


def _recipe_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("recipe", help="recipe YAML")
    p.add_argument("rest", nargs="*", help="overlay YAML files, then key=value overrides (+key=value adds a key)")
    p.add_argument("--plugin", action="append", default=[], help="import this module or .py file first (repeatable)")


def _split_rest(rest: list[str]) -> tuple[list[str], list[str]]:
    overlays = [r for r in rest if r.endswith((".yaml", ".yml")) and "=" not in r]
    overrides = [r for r in rest if r not in overlays]
    return overlays, overrides


def load_from_args(args: argparse.Namespace, check_output_dir: bool = True):
    from omegaconf import OmegaConf

    from specframe.config import compose, validate_recipe
    from specframe.plugins import import_plugins

    import_plugins(args.plugin)  # before composing, so that overrides may name plugin options
    overlays, overrides = _split_rest(args.rest)
    cfg = compose(args.recipe, overlays, overrides)
    if args.plugin:
        cfg.plugins = list(OmegaConf.to_container(cfg.plugins) or []) + [p for p in args.plugin if p not in cfg.plugins]
    return validate_recipe(cfg, check_output_dir=check_output_dir)


def cmd_validate(args: argparse.Namespace) -> int:
    recipe = load_from_args(args)
    terms = ", ".join(f"{t.weight:g}*{t.label}" for t in recipe.loss)
    aligns = ", ".join(a.name for a in recipe.alignment) or "none"
    print(f"OK {args.recipe}: target={recipe.target.name}({recipe.target.options.get('model', '')}) "
          f"drafter={recipe.drafter.name} loss=[{terms}] alignment=[{aligns}] -> {recipe.output_dir}")
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    from specframe.training import train

    recipe = load_from_args(args)
    summary = train(recipe)
    print()
    print(f"held-out τ_sim before training: {summary['tau_sim_before']:.3f}")
    print(f"held-out τ_sim after  training: {summary['tau_sim_after']:.3f}   "
          f"({summary['held_out_blocks']} blocks, {summary['steps']} steps)")
    print(f"run folder: {summary['output_dir']}  (summary.json, checkpoints/, logs/)")
    return 0


def cmd_list(args: argparse.Namespace) -> int:
    from specframe.config import registries
    from specframe.plugins import import_plugins

    import_plugins(args.plugin)
    regs = registries()
    kinds = [args.kind] if args.kind else list(KINDS)
    for kind in kinds:
        reg = regs[KINDS[kind]]
        print(f"{kind}:")
        for e in reg.entries():
            stage = f" [{e.meta['stage']}]" if "stage" in e.meta else ""
            print(f"  {e.name:<24}{e.summary}{stage}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="specframe", description=__doc__.split("\n")[0])
    parser.add_argument("-v", "--verbose", action="store_true")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("train", help="train a drafter from a recipe")
    _recipe_args(p)
    p.set_defaults(func=cmd_train)
    p = sub.add_parser("validate", help="check a recipe without loading any model")
    _recipe_args(p)
    p.set_defaults(func=cmd_validate)
    p = sub.add_parser("list", help="list registered components")
    p.add_argument("kind", nargs="?", choices=sorted(KINDS))
    p.add_argument("--plugin", action="append", default=[])
    p.set_defaults(func=cmd_list)
    for name, (module, help_text) in EXTRA_COMMANDS.items():
        try:
            mod = importlib.import_module(module)
        except ModuleNotFoundError as e:
            if e.name == module:
                continue  # not built yet
            raise
        p = sub.add_parser(name, help=help_text)
        mod.add_arguments(p)
        p.set_defaults(func=mod.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.verbose:
        logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        return int(args.func(args) or 0)
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except PluginImportError as e:
        import traceback

        traceback.print_exception(e.__cause__ or e, file=sys.stderr)
        print(f"\nerror: {e}", file=sys.stderr)
        return 3


if __name__ == "__main__":
    sys.exit(main())
