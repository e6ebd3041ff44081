"""What a recipe needs from the machine, checked once per command: plugins, the features cache, the output folder,
the training data.

`config.validate_recipe` checks the recipe itself (schema, names, options, cross-field rules) and reads no file;
this module checks the resources a command is about to use, and `prepare_recipe` does both, in that order:

    recipe = prepare_recipe(compose(path, overlays, overrides))               # specframe train / validate
    recipe = prepare_recipe(cfg, output_dir=False, features_cache=False)       # a command that writes elsewhere

Rebuilding a trained run (`checkpoint.load_trained`, `DraftTrainingModule`) only validates: a run evaluates
without the features cache it was trained from.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from specframe.config import Recipe, requirement_issues, validate_recipe
from specframe.errors import ConfigError


def check_resources(recipe: Recipe, *, output_dir: bool = True, features_cache: bool = True,
                    data: bool = True) -> None:
    """Raise one ConfigError listing every resource problem of `recipe`.

    Args:
        recipe: a validated recipe.
        output_dir: check that `run.output_dir` can be created and written (commands that write a run folder).
        features_cache: check that `data.features_cache` (when set) is a complete cache made for this recipe's
            target and data, and provides what its alignment strategies and loss terms need.
        data: read the local training data without a model (exists, UTF-8, parses, enough usable
            conversations; see data/check.py). Skipped when a features cache replaces the data.
    """
    issues: list[str] = []
    if features_cache and recipe.data.features_cache and recipe.data.features_cache != "auto":
        from specframe.data.feature_cache import check_cache

        # A cache made for another target, tokenizer or data is refused, every mismatch listed.
        provided, cache_issues = check_cache(recipe.data.features_cache, target=recipe.target, data=recipe.data,
                                             seed=recipe.data.split_seed_for(recipe.run.seed))
        issues.extend(cache_issues)
        if not cache_issues:
            issues.extend(requirement_issues(recipe.alignment, recipe.loss, frozenset({"labels"} | provided)))
    if output_dir:
        issues.extend(writable_issues(recipe.output_dir))
        # drafter.init_from: does the published drafter fit the target (config files only, no weights, no network)
        from specframe.export.importing import validate_issues

        issues.extend(validate_issues(recipe.target, recipe.drafter))
    if data and recipe.data.features_cache in (None, "auto"):  # `auto` reads the data to build its cache
        from specframe.data.check import check_data

        issues.extend(check_data(recipe.data))
    issues.extend(strategy_issues(recipe.trainer.strategy, recipe.trainer.accelerator))
    if data and recipe.data.answers:
        from specframe.data.answers import resolve_answers

        try:
            resolve_answers(recipe.data.answers)
        except FileNotFoundError as e:
            issues.append(f"data.answers: {e}")
    if issues:
        raise ConfigError(issues)


def prepare_recipe(cfg: DictConfig | dict[str, Any], *, output_dir: bool = True, features_cache: bool = True
                   ) -> Recipe:
    """Import the recipe's plugins, validate it, then check its resources: the start of every command."""
    recipe = validate_recipe(cfg)
    check_resources(recipe, output_dir=output_dir, features_cache=features_cache)
    return recipe


def recipe_from_files(recipe: str | Path, overlays: list[str] = (), overrides: list[str] = (),
                      plugins: list[str] = (), *, output_dir: bool = True, features_cache: bool = True) -> Recipe:
    """What a recipe-taking command does first: import `plugins`, compose, add them to `plugins:`, prepare.

    The one path shared by `specframe train/validate/cache-features` and every point of a sweep.
    """
    from omegaconf import OmegaConf

    from specframe.config import compose
    from specframe.plugins import import_plugins, resolve_spec

    import_plugins(list(plugins))  # before composing, so that overrides may name plugin options
    cfg = compose(recipe, list(overlays), list(overrides))
    if plugins:  # one entry per plugin, however it is spelt (paths are resolved, like the recipe's)
        listed = list(OmegaConf.to_container(cfg.plugins) or [])
        cfg.plugins = listed + [p for p in dict.fromkeys(map(resolve_spec, plugins)) if p not in listed]
    return prepare_recipe(cfg, output_dir=output_dir, features_cache=features_cache)


def writable_issues(path: Path, where: str = "run.output_dir") -> list[str]:
    """[] when `path` can be created and written, else why not (the nearest existing folder decides)."""
    probe = path
    while not probe.exists():
        if probe.parent == probe:
            break
        probe = probe.parent
    if not probe.is_dir():  # a file in the way: no folder can be made below it, even as root
        return [f"{where}: cannot create {path}: {probe} exists and is not a folder"]
    if not os.access(probe, os.W_OK | os.X_OK):
        return [f"{where}: cannot write to {path} (nearest existing folder {probe} is not writable)"]
    return []


def strategy_issues(strategy: str, accelerator: str) -> list[str]:
    """A Lightning strategy that cannot run on this machine's accelerator, said before anything loads (Lightning
    itself says it only when the Trainer is built, after the target and data)."""
    import torch

    on_cpu = accelerator == "cpu" or (accelerator == "auto" and not torch.cuda.is_available())
    if on_cpu and str(strategy).lower().startswith("fsdp"):
        return [f"trainer.strategy: {strategy!r} needs CUDA GPUs (Lightning's FSDP does not run on CPU); on CPU use "
                "'ddp' (processes with gloo) or 'auto'"]
    return []
