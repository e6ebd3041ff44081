"""Target-feature cache: run the frozen target once over a recipe's data and keep its features on disk.

    specframe cache-features RECIPE [OVERLAY.yaml ...] [key=value ...] --out DIR
        [--logits-topk K] [--shard-size N] [--dtype bfloat16|float32] [--batch-size N] [--device cpu|cuda]
    specframe train RECIPE ... data.features_cache=DIR

Every run of a sweep then skips the target's forward pass (the drafter still uses the target's embedding and
LM head, so the target is still loaded). The rows are the ones `ChatDataModule` trains on, made by the same
function (`rows.load_rows`): same recipe data settings and seed, same train and held-out rows.

Layout of DIR:

- `plan.json`: what is being cached. Written first; a re-run with other settings is refused, the same
  settings resume.
- `shard-00000.safetensors`, ...: `shard_size` consecutive rows each (train rows, then held-out rows). Tensors:
  `hidden` [T, F] (tapped hidden states `target(ids, mask).hidden`, concatenated over the shard's rows, in
  the chosen dtype), `input_ids` [T] int32 (to check that a recipe renders the same tokens), `offsets` [n+1]
  (row r is `offsets[r]:offsets[r+1]`), `index` [n] (the row's `index` in the data module) and, with
  `--logits-topk K`, `topk_ids` [T, K] int32, `topk_values` [T, K] float32 (the target's K largest logits at
  each position, i.e. for the NEXT token) and `topk_mass` [T] float32 (the probability they hold).
  A shard is written under a temporary name and renamed when whole, so a re-run skips finished shards.
- `manifest.json`: written last, after every shard. Without it the folder is not a cache (`cache_provides`
  and training refuse it), so a half-written cache is never used.

Top-k caveat: a loss term that needs target logits gets, from a cache, dense logits that are the stored top-k
values and -inf elsewhere (`topk_to_dense`), so its target distribution is renormalised over the top-k. The
mass that drops out is recorded (`manifest.json: mean_topk_mass`); distillation terms with `top_k <= K` see
exactly what they would see online, other terms see a truncated distribution.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import time
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from specframe.atomic_files import atomic_path, write_json
from specframe.config import ComponentSpec, DataConfig, Recipe
from specframe.errors import ConfigError

MANIFEST = "manifest.json"
PLAN = "plan.json"
FORMAT = 1
DTYPES = {"bfloat16": torch.bfloat16, "float32": torch.float32}
# Target options that do not change the stored features, so a cache made with another value still fits.
IGNORED_TARGET_OPTIONS = frozenset({"attn_implementation", "spare_token_id"})
# Data settings that change which rows exist and what tokens they hold (batch size, anchors... do not).
DATA_KEYS = ("train", "limit", "val_conversations", "max_length", "min_supervised", "exclude_benchmarks", "answers")


def shard_name(i: int) -> str:
    return f"shard-{i:05d}.safetensors"


# --------------------------------------------------------------------------------------------------
# Fingerprints: what a cache was made from
# --------------------------------------------------------------------------------------------------
def _plain(x: Any) -> Any:
    """JSON round trip, so that tuples and lists (and other JSON-equivalent values) compare equal."""
    return json.loads(json.dumps(x, default=str))


def target_fingerprint(spec: ComponentSpec) -> dict[str, Any]:
    """The recipe's target with every option resolved to its default: name + options that change features."""
    from specframe.targets import TARGETS

    cfg = TARGETS.get(spec.name, where="target.name").make_config(dict(spec.options), "target")
    options = dataclasses.asdict(cfg) if cfg is not None else {}
    if options.get("dtype") == "auto":  # the features depend on the dtype that ran, not on the word 'auto'
        from specframe.precision import default_device, resolve_dtype

        options["dtype"] = resolve_dtype("auto", default_device(), what="target.dtype")
    return _plain({"name": spec.name, **{k: v for k, v in options.items() if k not in IGNORED_TARGET_OPTIONS}})


def data_fingerprint(data: DataConfig, seed: int) -> dict[str, Any]:
    """The data settings that decide the rows (and the seed of the held-out split)."""
    train = data.train
    if os.path.exists(os.path.expanduser(train)):  # a local file or folder: compare it by absolute path
        train = os.path.abspath(os.path.expanduser(train))
    fingerprint = {"train": train, **{k: getattr(data, k) for k in DATA_KEYS if k != "train"}, "seed": seed}
    if data.answers and os.path.isfile(os.path.expanduser(data.answers)):
        # An answers file is compared by content: the same file in another clone matches, a rewritten one does not.
        fingerprint["answers"] = "sha256:" + file_sha256(os.path.expanduser(data.answers))
    return _plain(fingerprint)


def file_sha256(path: str | Path) -> str:
    """sha256 of a file's bytes, read in 1 MiB pieces."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for piece in iter(lambda: f.read(1 << 20), b""):
            digest.update(piece)
    return digest.hexdigest()


def tokenizer_sha256(tokenizer: Any) -> str:
    """sha256 of the tokenizer's JSON (fast tokenizers) or sorted vocabulary, plus its chat template."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    text = backend.to_str() if backend is not None else json.dumps(sorted(tokenizer.get_vocab().items()))
    text += "\0" + str(getattr(tokenizer, "chat_template", None) or "")  # rendering depends on it too
    return hashlib.sha256(text.encode()).hexdigest()


# --------------------------------------------------------------------------------------------------
# Reading a cache
# --------------------------------------------------------------------------------------------------
def read_manifest(path: str | Path) -> dict[str, Any]:
    """The manifest of a complete cache; a ConfigError for a folder without one (missing or half-written)."""
    folder = Path(path)
    manifest = folder / MANIFEST
    if not manifest.is_file():
        state = ("it holds an unfinished cache (plan.json but no manifest.json): run the same "
                 "`specframe cache-features` command again to finish it") if (folder / PLAN).is_file() else (
            "it does not exist" if not folder.exists() else "it is not a features cache")
        raise ConfigError(f"data.features_cache: {folder} has no {MANIFEST}: {state}. "
                          f"Make one with `specframe cache-features RECIPE --out {folder}`, or unset data.features_cache.")
    try:
        data = json.loads(manifest.read_text())
    except json.JSONDecodeError as e:
        raise ConfigError(f"data.features_cache: {manifest} is not valid JSON ({e})") from None
    if data.get("format") != FORMAT:
        raise ConfigError(f"data.features_cache: {manifest} has format {data.get('format')!r}; this specframe "
                          f"reads format {FORMAT}. Re-run `specframe cache-features` into a new folder.")
    return data


def cache_provides(path: str | Path) -> set[str]:
    """What a cache gives a training step: {"target_hidden"}, plus "target_logits" and "target_greedy" (the top-1)
    when top-k logits are stored."""
    return _provides(read_manifest(path))


def _provides(manifest: dict[str, Any]) -> set[str]:
    return {"target_hidden"} | ({"target_logits", "target_greedy"} if manifest.get("logits_topk") else set())


def check_cache(path: str | Path, *, target: ComponentSpec | None, data: DataConfig, seed: int
                ) -> tuple[set[str], list[str]]:
    """(what the cache provides, every way it does not match the recipe), without loading any model.

    The tokenizer hash and the tokens themselves are checked later, once the tokenizer exists
    (`FeatureCache.check_rows`).
    """
    try:
        manifest = read_manifest(path)
    except ConfigError as e:
        return set(), e.issues
    provides = _provides(manifest)
    where = f"data.features_cache ({path})"
    issues = []
    if target is not None:
        want, have = target_fingerprint(target), dict(manifest["target"])
        # Explicit tap layers equal to the cache's taps match however the cache chose them.
        if want.get("tap_layers") is not None and want["tap_layers"] == manifest.get("tap_layers"):
            for key in ("tap_layers", "num_taps"):
                want.pop(key, None)
                have.pop(key, None)
        for key in sorted(set(want) | set(have)):
            if want.get(key, "<unset>") != have.get(key, "<unset>"):
                issues.append(f"{where}: made with target.{key}={have.get(key, '<unset>')!r}, this recipe has "
                              f"target.{key}={want.get(key, '<unset>')!r}")
    for key, value in data_fingerprint(data, seed).items():
        cached = manifest["data"].get(key, None if key == "answers" else "<unset>")  # older caches: no answers
        if cached != value:
            name = ("run.seed" if data.split_seed is None else "data.split_seed") if key == "seed" else f"data.{key}"
            issues.append(f"{where}: made with {name}={cached!r}, this recipe has {name}={value!r}")
    if issues:
        issues.append(f"{where}: re-cache for this recipe (`specframe cache-features RECIPE ... --out NEW_DIR`) "
                      "or make the recipe match the cache")
    return provides, issues


def topk_to_dense(ids: Tensor, values: Tensor, vocab_size: int) -> Tensor:
    """[B, S, k] top-k ids and logits -> [B, S, V] float32 logits, -inf outside the top-k."""
    dense = torch.full((*ids.shape[:-1], vocab_size), float("-inf"), dtype=torch.float32, device=values.device)
    return dense.scatter_(-1, ids.long(), values.float())


class FeatureCache:
    """Read access to a complete cache: a row's features by its data-module `index`, read lazily from disk."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.manifest = read_manifest(self.path)
        self.topk = int(self.manifest.get("logits_topk") or 0)
        self._where: dict[int, tuple[int, int, int]] = {}  # row index -> (shard, start token, end token)
        self._handles: dict[int, Any] = {}
        for s, shard in enumerate(self.manifest["shards"]):
            f = self._open(s)
            offsets = f.get_tensor("offsets").tolist()
            for r, index in enumerate(f.get_tensor("index").tolist()):
                self._where[int(index)] = (s, offsets[r], offsets[r + 1])

    def _open(self, s: int) -> Any:
        if s not in self._handles:
            from safetensors import safe_open

            self._handles[s] = safe_open(str(self.path / self.manifest["shards"][s]["file"]), framework="pt")
        return self._handles[s]

    def __getstate__(self) -> dict[str, Any]:  # DataLoader workers reopen the files themselves
        return {**self.__dict__, "_handles": {}}

    def __len__(self) -> int:
        return len(self._where)

    def row(self, index: int) -> dict[str, Tensor]:
        """`features` [S, F] (and `topk_ids`, `topk_values` [S, k] with top-k logits) of the row `index`."""
        s, a, b = self._where[index]
        f = self._open(s)
        out = {"features": f.get_slice("hidden")[a:b]}
        if self.topk:
            out["topk_ids"] = f.get_slice("topk_ids")[a:b]
            out["topk_values"] = f.get_slice("topk_values")[a:b]
        return out

    def check_rows(self, rows: list[dict[str, Any]], tokenizer: Any) -> None:
        """Refuse the cache unless it holds exactly these rows with these tokens, from this tokenizer."""
        where = f"data.features_cache ({self.path})"
        issues = []
        sha = tokenizer_sha256(tokenizer)
        if sha != self.manifest["tokenizer_sha256"]:
            issues.append(f"{where}: made with another tokenizer (sha256 {self.manifest['tokenizer_sha256'][:12]}..., "
                          f"this target's is {sha[:12]}...)")
        if len(rows) != len(self._where):
            issues.append(f"{where}: holds {len(self._where)} rows, the recipe's data gives {len(rows)}")
        ids_by_shard: dict[int, Tensor] = {}
        differ = []
        for r in rows:
            if r["index"] not in self._where:
                differ.append(r["index"])
                continue
            s, a, b = self._where[r["index"]]
            if s not in ids_by_shard:
                ids_by_shard[s] = self._open(s).get_tensor("input_ids")
            if ids_by_shard[s][a:b].tolist() != list(r["input_ids"]):
                differ.append(r["index"])
        if differ:
            issues.append(f"{where}: {len(differ)} rows hold other tokens than the recipe renders (first: row "
                          f"{differ[0]}); the data or chat template changed since caching")
        if issues:
            issues.append(f"{where}: re-cache for this recipe (`specframe cache-features RECIPE ... --out NEW_DIR`)")
            raise ConfigError(issues)


# --------------------------------------------------------------------------------------------------
# Writing a cache
# --------------------------------------------------------------------------------------------------
def _diff(a: dict[str, Any], b: dict[str, Any], prefix: str = "") -> list[str]:
    out = []
    for key in sorted(set(a) | set(b)):
        x, y = a.get(key, "<unset>"), b.get(key, "<unset>")
        if isinstance(x, dict) and isinstance(y, dict):
            out += _diff(x, y, f"{prefix}{key}.")
        elif x != y:
            out.append(f"{prefix}{key}: {x!r} there, {y!r} now")
    return out


@torch.no_grad()
def _shard_tensors(target: Any, rows: list[dict[str, Any]], pad_id: int, dtype: torch.dtype, topk: int,
                   batch_size: int, device: torch.device, progress: Any) -> dict[str, Tensor]:
    """Run the target over one shard's rows (batched by length) and pack the results in row order."""
    hidden: list[Tensor | None] = [None] * len(rows)
    tk_ids: list[Tensor | None] = [None] * len(rows)
    tk_vals: list[Tensor | None] = [None] * len(rows)
    tk_mass: list[Tensor | None] = [None] * len(rows)
    order = sorted(range(len(rows)), key=lambda i: len(rows[i]["input_ids"]))  # similar lengths, less padding
    for start in range(0, len(order), batch_size):
        chunk = order[start: start + batch_size]
        S = max(len(rows[i]["input_ids"]) for i in chunk)
        ids = torch.full((len(chunk), S), pad_id, dtype=torch.long)
        mask = torch.zeros(len(chunk), S, dtype=torch.bool)
        for j, i in enumerate(chunk):
            n = len(rows[i]["input_ids"])
            ids[j, :n] = torch.as_tensor(rows[i]["input_ids"])
            mask[j, :n] = True
        out = target(ids.to(device), mask.to(device), with_logits=topk > 0)
        for j, i in enumerate(chunk):
            n = len(rows[i]["input_ids"])
            hidden[i] = out.hidden[j, :n].to(dtype).cpu()
            if topk:
                logits = out.logits[j, :n].float()
                values, top = logits.topk(topk, dim=-1)
                tk_ids[i], tk_vals[i] = top.to(torch.int32).cpu(), values.cpu()
                tk_mass[i] = (values - logits.logsumexp(-1, keepdim=True)).exp().sum(-1).cpu()
        del out
        progress.update(len(chunk))
    lengths = [len(r["input_ids"]) for r in rows]
    tensors = {
        "hidden": torch.cat(hidden).contiguous(),  # type: ignore[arg-type]
        "input_ids": torch.tensor([t for r in rows for t in r["input_ids"]], dtype=torch.int32),
        "offsets": torch.tensor([0, *torch.tensor(lengths).cumsum(0).tolist()], dtype=torch.int64),
        "index": torch.tensor([r["index"] for r in rows], dtype=torch.int64),
    }
    if topk:
        tensors["topk_ids"] = torch.cat(tk_ids).contiguous()  # type: ignore[arg-type]
        tensors["topk_values"] = torch.cat(tk_vals).contiguous()  # type: ignore[arg-type]
        tensors["topk_mass"] = torch.cat(tk_mass).contiguous()  # type: ignore[arg-type]
    return tensors


def build_cache(recipe: Recipe, out: str | Path, *, logits_topk: int = 0, shard_size: int = 256,
                dtype: str = "bfloat16", batch_size: int | None = None, device: str | None = None,
                target: Any = None, conversations: list[Any] | None = None) -> dict[str, Any]:
    """Cache the recipe's target features over its train and held-out rows; resumes an interrupted run.

    Args:
        recipe: a validated recipe (its target, data settings and seed decide the rows).
        out: the cache folder.
        logits_topk: also store the target's top-k next-token logits per position (0: none).
        shard_size: rows per shard file (the unit of resumption).
        dtype: storage dtype of the hidden states.
        batch_size: rows per target forward (default: data.batch_size).
        device: where the target runs (default: cuda when available, else cpu).
        target: an already built target (default: built from the recipe).
        conversations: in-memory conversations instead of `data.train` (tests), as `ChatDataModule` takes.

    Returns:
        The manifest (also written to `out/manifest.json`), with `seconds` and `tokens_computed` of this call.
    """
    from safetensors import safe_open
    from safetensors.torch import save_file
    from tqdm.auto import tqdm

    from specframe.data.rows import load_rows
    from specframe.targets import TARGETS

    if dtype not in DTYPES:
        raise ConfigError(f"--dtype: {dtype!r} is not one of {sorted(DTYPES)}")
    if shard_size < 1 or logits_topk < 0:
        raise ConfigError(f"--shard-size must be >= 1 and --logits-topk >= 0, got {shard_size} and {logits_topk}")
    folder = Path(out)
    if target is None:
        target = TARGETS.build(recipe.target.name, recipe.target.options, where="target")
    dev = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    target = target.to(dev)
    if logits_topk > target.vocab_size:
        raise ConfigError(f"--logits-topk {logits_topk} exceeds the target's vocabulary ({target.vocab_size})")
    train_rows, val_rows, _ = load_rows(recipe.data, target.tokenizer, recipe.data.split_seed_for(recipe.run.seed),
                                           conversations)
    rows = train_rows + val_rows
    plan = _plain({
        "format": FORMAT,
        "target": target_fingerprint(recipe.target),
        "target_name": target.name, "revision": getattr(target, "revision", None),
        "tap_layers": list(target.tap_layers), "hidden_size": target.hidden_size,
        "feature_dim": target.hidden_size * len(target.tap_layers), "vocab_size": target.vocab_size,
        "dtype": dtype, "tokenizer_sha256": tokenizer_sha256(target.tokenizer),
        "data": data_fingerprint(recipe.data, recipe.data.split_seed_for(recipe.run.seed)),
        "logits_topk": logits_topk, "shard_size": shard_size,
        "rows": {"train": len(train_rows), "val": len(val_rows), "total": len(rows)},
    })
    folder.mkdir(parents=True, exist_ok=True)
    for existing in (MANIFEST, PLAN):
        if (folder / existing).is_file():
            old = json.loads((folder / existing).read_text())
            # Shard boundaries matter while resuming, not once the cache is complete.
            keys = [k for k in plan if existing == PLAN or k != "shard_size"]
            diff = _diff({k: old.get(k) for k in keys}, {k: plan[k] for k in keys})
            if diff:
                raise ConfigError([f"--out {folder}: its {existing} was made with other settings; use another "
                                   f"folder or delete this one"] + [f"--out {folder}: {d}" for d in diff])
            if existing == MANIFEST:
                return {**old, "seconds": 0.0, "tokens_computed": 0}
    write_json(folder / PLAN, plan)

    pad = target.tokenizer.pad_token_id
    pad_id = int(pad if pad is not None else target.tokenizer.eos_token_id)
    bounds = [(a, min(a + shard_size, len(rows))) for a in range(0, len(rows), shard_size)]
    done = {i for i, _ in enumerate(bounds) if (folder / shard_name(i)).is_file()}
    t0, computed = time.perf_counter(), 0
    progress = tqdm(total=len(rows), initial=sum(b - a for i, (a, b) in enumerate(bounds) if i in done),
                    desc="target features", unit="row")
    shards = []
    for i, (a, b) in enumerate(bounds):
        path = folder / shard_name(i)
        if i not in done:
            tensors = _shard_tensors(target, rows[a:b], pad_id, DTYPES[dtype], logits_topk,
                                     batch_size or recipe.data.batch_size, dev, progress)
            mass = float(tensors["topk_mass"].double().sum()) if logits_topk else 0.0
            meta = {"first_row": str(a), "num_rows": str(b - a), "topk_mass_sum": repr(mass)}
            with atomic_path(path) as tmp:  # a shard is either whole under its final name or absent
                save_file(tensors, str(tmp), metadata=meta)
            computed += int(tensors["input_ids"].numel())
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata()
        if (int(meta["first_row"]), int(meta["num_rows"])) != (a, b - a):
            raise ConfigError(f"--out {folder}: {path.name} holds rows from {meta['first_row']} ({meta['num_rows']} "
                              f"rows), the plan expects {a} ({b - a}); delete the folder and cache again")
        tokens = sum(len(r["input_ids"]) for r in rows[a:b])
        shards.append({"file": path.name, "first_row": a, "num_rows": b - a, "tokens": tokens,
                       "supervised_tokens": sum(int(sum(r["loss_mask"])) for r in rows[a:b]),
                       "bytes": path.stat().st_size, "topk_mass_sum": float(meta["topk_mass_sum"])})
    progress.close()
    seconds = time.perf_counter() - t0
    tokens = sum(s["tokens"] for s in shards)
    supervised = sum(s["supervised_tokens"] for s in shards)
    size = sum(s["bytes"] for s in shards)
    manifest = {
        **plan, "shards": [{k: v for k, v in s.items() if k != "topk_mass_sum"} for s in shards],
        "tokens": tokens, "supervised_tokens": supervised, "bytes": size,
        "bytes_per_token": size / max(1, tokens), "bytes_per_supervised_token": size / max(1, supervised),
        "mean_topk_mass": (sum(s["topk_mass_sum"] for s in shards) / max(1, tokens)) if logits_topk else None,
    }
    write_json(folder / MANIFEST, manifest)  # last: its presence marks the cache complete
    return {**manifest, "seconds": seconds, "tokens_computed": computed}
