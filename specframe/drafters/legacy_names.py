"""The one place where block_diffusion checkpoints written before the DFlash parameter names are upgraded.

Until the rename, the drafter called its parameters `fuse`, `fuse_norm`, `layers.N.input_norm`,
`layers.N.{q,k,v,o}_proj` and `layers.N.post_norm`; it had no per-head q/k norm, and on a target without a
spare embedding row `mask_token: auto` meant a learned mask vector. Such a checkpoint loads as what it was:
its names are mapped here, and the recipe it carries gets `qk_norm: false` and `mask_token: learned` where
it did not say otherwise. Anything that still does not fit is refused by the caller, never half-loaded.
"""
from __future__ import annotations

import re
from typing import Any

# old name (regex, anchored at the drafter's root) -> DFlash name
RENAMES: tuple[tuple[str, str], ...] = (
    (r"fuse\.", "fc."),
    (r"fuse_norm\.", "hidden_norm."),
    (r"layers\.(\d+)\.input_norm\.", r"layers.\1.input_layernorm."),
    (r"layers\.(\d+)\.post_norm\.", r"layers.\1.post_attention_layernorm."),
    (r"layers\.(\d+)\.([qkvo])_proj\.", r"layers.\1.self_attn.\2_proj."),
)
_PATTERNS = [(re.compile(old), new) for old, new in RENAMES]


def new_name(key: str) -> str:
    """The DFlash name of a drafter parameter `key` (relative to the drafter); unchanged if already new."""
    for pattern, new in _PATTERNS:
        if pattern.match(key):
            return pattern.sub(new, key, count=1)
    return key


def is_legacy(keys: Any, prefix: str = "") -> bool:
    """True if any key (under `prefix`) carries a pre-rename name."""
    return any(k.startswith(prefix) and new_name(k[len(prefix):]) != k[len(prefix):] for k in keys)


def upgrade_state_dict(state: dict[str, Any], prefix: str = "") -> bool:
    """Rename, in place, the pre-rename keys under `prefix`; returns whether anything was renamed."""
    old = [k for k in state if k.startswith(prefix) and new_name(k[len(prefix):]) != k[len(prefix):]]
    for k in old:
        state[prefix + new_name(k[len(prefix):])] = state.pop(k)
    return bool(old)


def upgrade_options(options: dict[str, Any], state: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Drafter options that rebuild a pre-rename checkpoint as it was trained (the caller's dict is not changed)."""
    if not is_legacy(state, prefix):
        return options
    options = dict(options)
    options.setdefault("qk_norm", False)
    if prefix + "mask_embedding" in state and options.get("mask_token", "auto") == "auto":
        options["mask_token"] = "learned"
    return options


def mismatch_hint(missing: list[str], unexpected: list[str]) -> str:
    """What to change in the recipe when a drafter state dict does not fit the drafter (empty if nothing known)."""
    hints = []
    if any(k.endswith(("q_norm.weight", "k_norm.weight")) for k in missing):
        hints.append("the checkpoint has no per-head q/k norm: set drafter.qk_norm: false to load it")
    if any(k.endswith(("q_norm.weight", "k_norm.weight")) for k in unexpected):
        hints.append("the checkpoint has a per-head q/k norm: set drafter.qk_norm: true")
    if "mask_embedding" in unexpected:
        hints.append("the checkpoint holds a learned mask vector: set drafter.mask_token: learned")
    if "mask_embedding" in missing:
        hints.append("the checkpoint uses a frozen embedding row as mask: set drafter.mask_token: frozen_row "
                     "(or spare_row)")
    return "; ".join(hints)
