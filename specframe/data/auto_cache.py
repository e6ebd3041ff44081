"""`data.features_cache: auto`: the run builds the target-feature cache itself, once, and every later run of the
same target and data (and `specframe cache-features`, pointed there) reuses it.

A step that reads cached features skips the target's forward pass, so a drafter trained for several epochs over
a fixed set of conversations takes several times more optimizer steps in the same wall time (on a 2-core AVX2
CPU with SmolLM2-135M: a quickstart step drops from about 4.5 s to about 1 s). The first epoch pays one target
pass per row, as an online run would.

The folder is `<cache root>/features/<key>`, the cache root being `$SPECFRAME_CACHE` or `~/.cache/specframe`,
and the key a hash of what decides the features (the target with its options resolved, the data settings and
the held-out split's seed). It is built by `feature_cache.build_cache`: resumable shard by shard, with a progress
bar, and complete only once its manifest.json exists. Only the target's argmax is stored when an alignment needs
target logits (`target_greedy_labels`); a loss term that needs the target's whole distribution cannot train
from this cache (`specframe cache-features --logits-topk K` makes one that keeps K logits).
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
from pathlib import Path
from typing import Any

from specframe.config import Recipe
from specframe.data.feature_cache import FORMAT, build_cache, data_fingerprint, target_fingerprint
from specframe.errors import ConfigError

AUTO = "auto"


def auto_cache_folder(recipe: Recipe) -> Path:
    """Where `data.features_cache: auto` keeps the cache of this recipe's target and data."""
    from specframe.targets.smollm2 import default_cache_root

    seed = recipe.data.split_seed_for(recipe.run.seed)
    what = {"format": FORMAT, "target": target_fingerprint(recipe.target), "data": data_fingerprint(recipe.data, seed)}
    key = hashlib.sha256(json.dumps(what, sort_keys=True, default=str).encode()).hexdigest()[:16]
    return default_cache_root() / "features" / key


def ensure_auto_cache(recipe: Recipe, target: Any, *, needs_logits: bool, loss_needs_logits: bool,
                      conversations: list[Any] | None = None) -> Path:
    """Build (or finish, or reuse) the automatic cache of `recipe` with the already loaded `target`; its folder."""
    if loss_needs_logits:
        raise ConfigError("data.features_cache: auto keeps only the target's argmax, and a loss term of this recipe "
                          "needs the target's distribution; cache it with `specframe cache-features RECIPE --out DIR "
                          "--logits-topk K` and set data.features_cache: DIR, or train online (features_cache: null)")
    folder = auto_cache_folder(recipe)
    plain = dataclasses.replace(recipe, data=dataclasses.replace(recipe.data, features_cache=None))
    manifest = build_cache(plain, folder, logits_topk=1 if needs_logits else 0, target=target,
                           conversations=conversations)
    if manifest["tokens_computed"]:
        print(f"features cache built: {folder} ({manifest['rows']['total']} rows, {manifest['tokens']:,} tokens, "
              f"{manifest['bytes'] / 2**20:,.0f} MiB, {manifest['seconds']:.0f} s); later runs reuse it")
    else:
        print(f"features cache reused: {folder}")
    return folder
