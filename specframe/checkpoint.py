"""Loading a trained drafter back: from a run folder or a Lightning .ckpt, with its target rebuilt from the recipe.

    from specframe.checkpoint import load_trained
    recipe, target, drafter, vocab = load_trained("runs/quickstart")

A checkpoint keeps the resolved recipe (`hyper_parameters["config"]`) and the drafter's and the draft
vocabulary's weights (`drafter.*`, `vocab.*`); the frozen target is recorded by name only and is rebuilt from the
recipe's `target` section (a hub id reaches the network only if the recipe names one).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, NamedTuple

import torch
from torch import nn

from specframe.errors import ConfigError


class Trained(NamedTuple):
    recipe: dict[str, Any]  # the resolved recipe the drafter was trained with
    target: Any  # the frozen target, rebuilt from recipe["target"]
    drafter: nn.Module  # in eval mode, on the CPU, float32
    vocab: Any  # the DraftVocab (identity maps when the drafter uses the full vocabulary)


def resolve_checkpoint(path: str | Path) -> Path:
    """A .ckpt file as is; a run folder -> checkpoints/best*.ckpt (the newest) if any, else checkpoints/last.ckpt."""
    path = Path(path).expanduser()
    if path.is_file():
        return path
    if not path.is_dir():
        raise FileNotFoundError(f"{path} is neither a checkpoint file nor a run folder")
    folder = path / "checkpoints" if (path / "checkpoints").is_dir() else path
    best = sorted(folder.glob("best*.ckpt"), key=lambda p: p.stat().st_mtime)
    if best:
        return best[-1]
    last = folder / "last.ckpt"
    if last.is_file():
        return last
    raise FileNotFoundError(f"no checkpoint in {folder}: expected best*.ckpt or last.ckpt (train with "
                            f"`specframe train RECIPE` first, or pass a .ckpt path)")


def load_checkpoint(path: str | Path, *, mmap: bool = False) -> dict[str, Any]:
    """Read a Lightning checkpoint without running any code from it (`weights_only=True`: tensors, numbers,
    strings and containers only; a pickle that asks for anything else is refused).

    Raises:
        ConfigError: the file is not a checkpoint we can read safely (truncated, random bytes, or a pickle
            that wants to import or call something).
    """
    try:
        return torch.load(path, weights_only=True, map_location="cpu", mmap=mmap)
    except Exception as e:  # UnpicklingError, RuntimeError (truncated zip), EOFError, ...
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ConfigError(f"{path}: not a checkpoint that can be loaded safely (weights_only): {first}") from e


def run_folder_of(checkpoint: Path) -> Path:
    """The run folder a checkpoint belongs to (the parent of checkpoints/), else the checkpoint's folder."""
    return checkpoint.parent.parent if checkpoint.parent.name == "checkpoints" else checkpoint.parent


def load_trained(path: str | Path, checkpoint: dict[str, Any] | None = None) -> Trained:
    """Recipe, target, drafter and draft vocabulary of a trained run.

    Args:
        path: a run folder (uses checkpoints/best*.ckpt, else last.ckpt) or a .ckpt file.
        checkpoint: the checkpoint dict when the caller already read it (with `load_checkpoint`).

    Raises:
        FileNotFoundError: no checkpoint at `path`.
        ConfigError: the checkpoint has no recipe, or the recipe no longer validates (e.g. a plugin is missing).
    """
    from specframe.config import validate_recipe
    from specframe.components import build_components
    from specframe.drafters.legacy_names import upgrade_options

    ckpt_path = resolve_checkpoint(path)
    ckpt = checkpoint if checkpoint is not None else load_checkpoint(ckpt_path)
    config = (ckpt.get("hyper_parameters") or {}).get("config")
    if not isinstance(config, dict):
        raise ConfigError(f"{ckpt_path}: no recipe in hyper_parameters['config']; is this a specframe checkpoint?")
    state = ckpt["state_dict"]
    if config.get("drafter", {}).get("name") == "block_diffusion":  # written before the DFlash names?
        config = {**config, "drafter": upgrade_options(config["drafter"], state, "drafter.")}
    recipe = validate_recipe(config)  # imports the recipe's plugins too
    parts = build_components(recipe, with_objective=False)  # the module's build order, without losses
    target, drafter, vocab = parts.target, parts.drafter, parts.vocab
    for prefix, module in (("drafter.", drafter), ("vocab.", vocab)):
        part = {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}
        try:
            missing, unexpected = module.load_state_dict(part, strict=False)
        except RuntimeError as e:  # the drafter's own check (legacy_names.mismatch_hint) names the recipe fix
            raise ConfigError(f"{ckpt_path}: the {prefix[:-1]} weights do not fit the recipe's {prefix[:-1]}: "
                              f"{e}") from None
        if missing or unexpected:
            raise ConfigError(f"{ckpt_path}: the {prefix[:-1]} weights do not fit the recipe's {prefix[:-1]} "
                              f"(missing {sorted(missing)[:5]}, unexpected {sorted(unexpected)[:5]})")
    return Trained(recipe.resolved, target, drafter.eval().requires_grad_(False), vocab)
