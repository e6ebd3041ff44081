"""A sweep's points: a grid file and `key=v1,v2` axes expanded into named points, each validated as `specframe train`
validates a recipe (one code path: `resources.recipe_from_files`)."""
from __future__ import annotations

import hashlib
import itertools
import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from specframe.errors import ConfigError, did_you_mean

GRID_KEYS = {"name", "variants", "baseline", "seeds", "common", "include", "launcher", "search"}
NAME_OK = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
MAX_NAME = 100


# --------------------------------------------------------------------------------------------------
# Expanding the grid
# --------------------------------------------------------------------------------------------------
@dataclass(frozen=True, kw_only=True)
class Point:
    """One run of the sweep."""

    name: str
    """Folder name under the sweep folder, unique and deterministic."""
    group: str
    """The name without its seed: points of one group are averaged in the results."""
    seed: int | None
    overrides: tuple[str, ...]
    """The user's overrides (common, variant, grid axes, seed), in the order they are applied."""
    output_dir: Path
    variant: str = ""
    """The grid variant it comes from ('' without a grid file)."""


@dataclass(kw_only=True)
class Sweep:
    name: str
    recipe: Path
    overlays: list[str]
    plugins: list[str]
    directory: Path
    points: list[Point]
    baseline: str | None = None
    """Group that the % columns compare against."""
    wandb: bool = False
    recipes: dict[str, Any] = field(default_factory=dict)
    """Point name -> its validated Recipe (filled by `validate_points`)."""
    trained_by: dict[str, str] = field(default_factory=dict)
    """Point name -> the earlier point whose training it shares (it differs from it only in `eval`)."""
    grid: Grid | None = None
    """The grid file it came from (its `launcher:` and `search:` sections)."""

    def train_dir(self, point: Point) -> Path:
        """Where the point's checkpoint and summary.json live: its own folder or that of the point it shares."""
        owner = self.trained_by.get(point.name)
        return next(q.output_dir for q in self.points if q.name == owner) if owner else point.output_dir

    def run_overrides(self, point: Point) -> list[str]:
        """The point's overrides plus what the sweep imposes: run name, folder, resume (and W&B group)."""
        imposed = [f"run.name={point.name}", f"run.output_dir={json.dumps(str(point.output_dir))}", "run.resume=true"]
        if self.wandb:
            imposed += ["run.wandb=true", f"run.wandb_group={self.name}"]
        return [*point.overrides, *imposed]


def split_values(text: str) -> list[str]:
    """'1e-3,2e-3' -> ['1e-3', '2e-3'], splitting only on commas outside brackets, braces and quotes.

    >>> split_values("[{name: ce, weight: 1.0}],[{name: chain, weight: 40}]")
    ['[{name: ce, weight: 1.0}]', '[{name: chain, weight: 40}]']
    """
    out, depth, quote, cur = [], 0, "", []
    for ch in text:
        if quote:
            quote = "" if ch == quote else quote
        elif ch in "'\"":
            quote = ch
        elif ch in "[{(":
            depth += 1
        elif ch in "]})":
            depth -= 1
        elif ch == "," and depth == 0:
            out.append("".join(cur).strip())
            cur = []
            continue
        cur.append(ch)
    out.append("".join(cur).strip())
    return out


def parse_axes(items: list[str]) -> list[tuple[str, list[str]]]:
    """['optim.lr=1e-3,2e-3', ...] -> [('optim.lr', ['1e-3', '2e-3']), ...]."""
    axes, issues = [], []
    for item in items:
        key, sep, values = item.partition("=")
        if not sep or not key:
            issues.append(f"grid argument {item!r}: expected key=v1,v2,...")
            continue
        vals = split_values(values)
        if any(v == "" for v in vals) and values != "":
            issues.append(f"grid argument {item!r}: an empty value between commas")
        axes.append((key, vals))
    if issues:
        raise ConfigError(issues)
    return axes


def sanitize(text: str) -> str:
    """A folder-safe name: letters, digits, '.', '_' and '-' only; long names end in a short hash.

    >>> sanitize("optim.lr-1e-3_loss.0.gamma-7")
    'optim.lr-1e-3_loss.0.gamma-7'
    >>> sanitize("loss-[{name: ce, weight: 1.0}]")
    'loss-name-ce-weight-1.0'
    """
    name = re.sub(r"[^A-Za-z0-9._-]+", "-", text)
    name = re.sub(r"-{2,}", "-", name).strip("-.") or "point"
    if len(name) > MAX_NAME:
        name = name[: MAX_NAME - 9].rstrip("-.") + "-" + hashlib.sha1(text.encode()).hexdigest()[:8]
    return name


def _as_override(item: Any, where: str, issues: list[str]) -> str | None:
    """A grid-file override: 'key=value' as is, or a one-key mapping {key: value} dumped as flow YAML."""
    if isinstance(item, str) and "=" in item:
        return item
    if isinstance(item, dict) and len(item) == 1:
        key, value = next(iter(item.items()))
        text = value if isinstance(value, str) else yaml.safe_dump(value, default_flow_style=True, width=10**6).strip()
        if text.endswith("\n...") or text.endswith(" ..."):  # PyYAML's end-of-document marker after scalars
            text = text.rsplit("...", 1)[0].strip()
        return f"{key}={text}"
    issues.append(f"{where}: expected 'key=value' or {{key: value}}, got {item!r}")
    return None


def _seed_list(seeds: Any, where: str, issues: list[str]) -> list[int] | None:
    if not isinstance(seeds, list) or not seeds or not all(isinstance(s, int) and not isinstance(s, bool)
                                                           for s in seeds):
        issues.append(f"{where}: expected a non-empty list of integers, got {seeds!r}")
        return None
    return seeds


@dataclass(kw_only=True)
class Grid:
    """A parsed grid file."""

    name: str | None = None
    variants: dict[str, list[str]] = field(default_factory=dict)
    baseline: str | None = None
    seeds: list[int] | None = None
    common: list[str] = field(default_factory=list)
    variant_seeds: dict[str, list[int]] = field(default_factory=dict)
    """Seeds of one variant (`{overrides: [...], seeds: [...]}`), in place of the grid's `seeds:`."""
    launcher: dict[str, Any] = field(default_factory=dict)
    """The `launcher:` section: submitit settings (specframe/launchers.py checks it)."""
    search: dict[str, Any] = field(default_factory=dict)
    """The `search:` section: parameter ranges of --search optuna (specframe/search.py checks it)."""


def load_grid(path: str | Path, _included: bool = False) -> Grid:
    """Read a grid file (see docs/sweeps.md); every problem is reported at once."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"--grid {path}: no such file")
    try:
        doc = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as e:
        raise ConfigError(f"--grid {path}: not valid YAML: {e}") from None
    if not isinstance(doc, dict):
        raise ConfigError(f"--grid {path}: expected a mapping with 'variants:', got {type(doc).__name__}")
    issues = [f"{path}: unknown key '{k}'. Allowed: {sorted(GRID_KEYS)}" for k in doc if k not in GRID_KEYS]
    grid = Grid(name=doc.get("name"), baseline=doc.get("baseline"))
    includes = doc.get("include") or []
    for inc in [includes] if isinstance(includes, str) else includes:
        if _included:
            issues.append(f"{path}: include: an included grid cannot include another (one level only)")
            continue
        try:
            sub = load_grid(path.parent / inc, _included=True)
        except ConfigError as e:
            issues.extend(e.issues)
            continue
        grid.variants.update(sub.variants)
        grid.variant_seeds.update(sub.variant_seeds)
        grid.common += sub.common
        grid.seeds = sub.seeds if sub.seeds is not None else grid.seeds
        grid.baseline = grid.baseline or sub.baseline
        grid.name = grid.name or sub.name
    for i, item in enumerate(doc.get("common") or []):
        ov = _as_override(item, f"{path}: common[{i}]", issues)
        if ov:
            grid.common.append(ov)
    variants = doc.get("variants") or {}
    if not isinstance(variants, dict):
        issues.append(f"{path}: variants: expected a mapping name -> overrides, got {type(variants).__name__}")
        variants = {}
    for vname, spec in variants.items():
        vname = str(vname)
        if not NAME_OK.match(vname) or len(vname) > MAX_NAME:
            issues.append(f"{path}: variant name {vname!r}: use letters, digits, '.', '_' and '-' (it names a folder)")
        items = spec.get("overrides") if isinstance(spec, dict) else spec
        if isinstance(spec, dict) and set(spec) - {"overrides", "seeds"}:
            issues.append(f"{path}: variants.{vname}: unknown keys {sorted(set(spec) - {'overrides', 'seeds'})}; "
                          "expected {overrides: [...], seeds: [...]} or a list")
        if isinstance(spec, dict) and "seeds" in spec:
            vseeds = _seed_list(spec["seeds"], f"{path}: variants.{vname}.seeds", issues)
            if vseeds:
                grid.variant_seeds[vname] = vseeds
        if items is None:
            items = []
        if not isinstance(items, list):
            issues.append(f"{path}: variants.{vname}: expected a list of overrides, got {items!r}")
            continue
        ovs = [_as_override(it, f"{path}: variants.{vname}[{j}]", issues) for j, it in enumerate(items)]
        grid.variants[vname] = [o for o in ovs if o]
    if doc.get("seeds") is not None:
        grid.seeds = _seed_list(doc["seeds"], f"{path}: seeds", issues) or grid.seeds
    for section in ("launcher", "search"):
        value = doc.get(section) or {}
        if not isinstance(value, dict):
            issues.append(f"{path}: {section}: expected a mapping, got {type(value).__name__}")
        else:
            setattr(grid, section, {**getattr(grid, section), **value})
    if issues:
        raise ConfigError(issues)
    return grid


def expand(grid: Grid | None, axes: list[tuple[str, list[str]]], sweep_dir: Path,
           seeds: list[int] | None = None) -> list[Point]:
    """Variants x cartesian product of the axes x seeds, each with a deterministic name."""
    variants = list((grid.variants if grid and grid.variants else {"": []}).items())
    common = grid.common if grid else []
    cli_seeds = seeds
    combos = list(itertools.product(*[[(k, v) for v in vals] for k, vals in axes])) or [()]
    points, seen, issues = [], {}, []

    def seeds_of(vname: str) -> list[int | None]:
        """--seeds, else the variant's own `seeds:`, else the grid's; None: one run at the recipe's seed."""
        chosen = cli_seeds if cli_seeds is not None else \
            (grid.variant_seeds.get(vname) or grid.seeds) if grid else None
        return list(chosen) if chosen else [None]

    for (vname, vover), combo, seed in ((v, c, s) for v in variants for c in combos for s in seeds_of(v[0])):
        parts = ([vname] if vname else []) + [sanitize(f"{k}-{v}") for k, v in combo]
        group = "_".join(parts) or "base"
        name = sanitize(group if seed is None else f"{group}_seed-{seed}")
        overrides = [*common, *vover, *(f"{k}={v}" for k, v in combo)]
        if seed is not None:
            overrides.append(f"run.seed={seed}")
        if name in seen:
            issues.append(f"points {seen[name]!r} and {overrides!r} get the same name {name!r}; "
                          "name them as variants in a grid file")
        seen[name] = overrides
        points.append(Point(name=name, group=sanitize(group), seed=seed, overrides=tuple(overrides), variant=vname,
                            output_dir=(sweep_dir / name).resolve()))
    if issues:
        raise ConfigError(issues)
    return points


def select(points: list[Point], only: str) -> list[Point]:
    """Keep the points whose variant, group or name is in the comma-separated `only`; unknown names are errors."""
    wanted = [w.strip() for w in only.split(",") if w.strip()]
    known = sorted({x for p in points for x in (p.variant, p.group, p.name) if x})
    unknown = [w for w in wanted if w not in known]
    if unknown:
        hints = [f"--only {w!r} matches no point{did_you_mean(w, known)}" for w in unknown]
        raise ConfigError([*hints, f"variants, groups and points: {known}"])
    return [p for p in points if {p.variant, p.group, p.name} & set(wanted)]


# --------------------------------------------------------------------------------------------------
# Validation: the same code path as `specframe train`
# --------------------------------------------------------------------------------------------------
def _missing_local_data(train: str) -> str | None:
    """A data.train that names a local file or folder (not 'sharegpt', not a hub 'owner/name') must exist.

    `validate` does not read data; a sweep checks this much so that a point never fails an hour in.
    """
    looks_local = (train.startswith(("/", "./", "../", "~")) or train.lower().endswith((".json", ".jsonl"))
                   or train.count("/") >= 2)
    if looks_local and not os.path.exists(os.path.expanduser(train)):
        return (f"data.train: {train} does not exist (make it first, e.g. `specframe regenerate ... --out {train}`, "
                "or leave this point out)")
    return None


def validate_points(sweep: Sweep) -> None:
    """Compose and validate every point exactly as `specframe train` does; one ConfigError lists every problem."""
    from specframe.resources import recipe_from_files

    issues = []
    for p in sweep.points:
        try:
            recipe = recipe_from_files(sweep.recipe, sweep.overlays, sweep.run_overrides(p), sweep.plugins)
        except ConfigError as e:
            issues += [f"point '{p.name}': {i}" for i in e.issues]
            continue
        missing = _missing_local_data(recipe.data.train)
        if missing:
            issues.append(f"point '{p.name}': {missing}")
            continue
        sweep.recipes[p.name] = recipe
    share_training(sweep)
    groups = {p.group for p in sweep.points}
    if sweep.baseline is not None and sweep.baseline not in groups:
        # a grid's baseline names a variant: with command-line axes its group carries the axis values
        of_variant = sorted({p.group for p in sweep.points if p.variant == sweep.baseline})
        if len(of_variant) == 1:
            sweep.baseline = of_variant[0]
        else:
            issues.append(f"baseline {sweep.baseline!r} is not a point of this sweep"
                          + (f" (it is a variant of {len(of_variant)} points: pass --baseline POINT)" if of_variant else "")
                          + f". Points: {sorted(groups)}")
    if issues:
        raise ConfigError(issues)


def training_key(recipe: Any) -> str:
    """What decides a point's training: the resolved recipe without `eval` and without the run's name/folder."""
    resolved = {k: v for k, v in recipe.resolved.items() if k != "eval"}
    resolved["run"] = {k: v for k, v in resolved.get("run", {}).items()
                       if k not in ("name", "output_dir", "wandb", "wandb_group")}
    return json.dumps(resolved, sort_keys=True, default=str)


def share_training(sweep: Sweep) -> None:
    """A point that differs from an earlier one only in `eval` (a test-time strategy, say) trains nothing: it
    evaluates the earlier point's checkpoint into its own folder."""
    owners: dict[str, str] = {}
    for p in sweep.points:
        recipe = sweep.recipes.get(p.name)
        if recipe is None:
            continue
        key = training_key(recipe)
        if key in owners:
            sweep.trained_by[p.name] = owners[key]
        else:
            owners[key] = p.name
