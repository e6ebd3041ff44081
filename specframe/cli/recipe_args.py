"""The arguments every recipe-taking command shares, and the one way a command turns them into a Recipe."""
from __future__ import annotations

import argparse

from specframe.config import Recipe


def add_recipe_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("recipe", help="recipe YAML")
    p.add_argument("rest", nargs="*", help="overlay YAML files, then key=value overrides (+key=value adds a key)")
    p.add_argument("--plugin", action="append", default=[], help="import this module or .py file first (repeatable)")


def split_rest(rest: list[str]) -> tuple[list[str], list[str]]:
    """Positional words after the recipe -> (overlay files, key=value overrides)."""
    overlays = [r for r in rest if r.endswith((".yaml", ".yml")) and "=" not in r]
    overrides = [r for r in rest if r not in overlays]
    return overlays, overrides


def recipe_from_args(args: argparse.Namespace, *, output_dir: bool = True, features_cache: bool = True) -> Recipe:
    """Plugins, compose, validate and resource checks: once per command (`resources.recipe_from_files`)."""
    from specframe.resources import recipe_from_files

    overlays, overrides = split_rest(args.rest)
    return recipe_from_files(args.recipe, overlays, overrides, args.plugin, output_dir=output_dir,
                             features_cache=features_cache)
