"""Sweeps: one base recipe crossed with a grid of overrides; every point validated before anything runs, then
trained (resumably), evaluated and aggregated into one table and one chart.

    python tools/sweep.py RECIPE [--overlay FILE.yaml ...] [key=v1,v2 ...] [--grid GRID.yaml]
        [--sweep-dir DIR] [--name NAME] [--baseline POINT] [--dry-run] [--jobs N] [--no-eval] [--wandb]
        [--max-points N] [--only NAME,...] [--plugin MODULE] [--aggregate-only]

    # the paper's ablation, plan only:
    python tools/sweep.py recipes/block_diffusion/smollm2_baseline.yaml --grid recipes/sweeps/paper_ablation.yaml --dry-run
    # a 2 x 2 grid on the tiny debug target:
    python tools/sweep.py recipes/block_diffusion/smollm2_baseline.yaml --overlay recipes/debug/tiny.yaml \
        optim.lr=1e-3,3e-3 loss.0.weight=1.0,0.5

Each point is `specframe train` in a subprocess (a crash in one point does not stop the sweep) with its log in
`<sweep_dir>/<point>/train.log`, then `specframe eval` on it. A point whose `summary.json` (and, with eval on,
eval JSON) exists is skipped; an interrupted one resumes from its last.ckpt. The sweep then writes
`<sweep_dir>/results.md`, `results.csv` and `results.png`. The grid file format, resuming, parallel jobs and
reading the results: docs/sweeps.md.
"""
from __future__ import annotations

import argparse
import csv
import hashlib
import importlib.util
import itertools
import json
import math
import os
import re
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from specframe.errors import ConfigError, did_you_mean

GRID_KEYS = {"name", "variants", "baseline", "seeds", "common", "include"}
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
    from specframe.cli import load_from_args

    issues = []
    for p in sweep.points:
        args = argparse.Namespace(recipe=str(sweep.recipe), rest=[*sweep.overlays, *sweep.run_overrides(p)],
                                  plugin=list(sweep.plugins))
        try:
            recipe = load_from_args(args)
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


# --------------------------------------------------------------------------------------------------
# Running
# --------------------------------------------------------------------------------------------------
def eval_available() -> bool:
    return importlib.util.find_spec("specframe.evaluation.cli") is not None


def _eval_matches(report: dict[str, Any], eval_cfg: Any) -> bool:
    """Whether an eval JSON was made with the recipe's eval settings (a JSON without settings is accepted)."""
    s = report.get("settings")
    if not isinstance(s, dict) or eval_cfg is None:
        return True
    want = {"benchmarks": list(eval_cfg.benchmarks), "num_prompts": eval_cfg.num_prompts,
            "max_new_tokens": eval_cfg.max_new_tokens, "temperature": eval_cfg.temperature,
            "strategy": dict(eval_cfg.strategy)}
    if eval_cfg.block_size is not None:
        want["block_size"] = eval_cfg.block_size
    have_strategy = dict(s.get("strategy") or {})
    for key, value in want.items():
        if key not in s:
            continue
        if key == "strategy":  # the eval fills in the strategy's defaults; compare the keys the recipe set
            if any(have_strategy.get(k) != v for k, v in value.items()):
                return False
        elif s[key] != value:
            return False
    return True


def find_eval_json(point_dir: Path, eval_cfg: Any = None) -> Path | None:
    """The newest eval JSON in <point>/eval/ made with the recipe's eval settings.

    Two shapes are read: `specframe eval`'s (`{"settings": ..., "summary": {benchmark: {"tau", "tau_pooled",
    "speedup", ...}}, "overall": ...}`) and the plain `{"benchmarks": {benchmark: {"tau", ...}}}`.
    """
    folder = point_dir / "eval"
    if not folder.is_dir():
        return None
    for path in sorted(folder.glob("*.json"), key=lambda q: q.stat().st_mtime, reverse=True):
        try:
            report = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError):
            continue
        if isinstance(report, dict) and isinstance(report.get("summary") or report.get("benchmarks"), dict) \
                and _eval_matches(report, eval_cfg):
            return path
    return None


def point_status(sweep: Sweep, p: Point, with_eval: bool) -> str:
    """done | pending | resumes (a last.ckpt exists) | trained (eval pending)."""
    train_dir = sweep.train_dir(p)
    if (train_dir / "summary.json").is_file():
        recipe = sweep.recipes.get(p.name)
        if not with_eval or find_eval_json(p.output_dir, recipe.eval if recipe else None):
            return "done"
        return "trained"
    return "resumes" if (train_dir / "checkpoints" / "last.ckpt").is_file() else "pending"


def print_plan(sweep: Sweep, with_eval: bool, file: Any = None) -> None:
    file = file or sys.stdout
    rows = [(p.name, " ".join(p.overrides) or "(recipe as is)", str(p.output_dir),
             point_status(sweep, p, with_eval)
             + (f" (evaluates {sweep.trained_by[p.name]}'s checkpoint)" if p.name in sweep.trained_by else ""))
            for p in sweep.points]
    heads = ("point", "overrides", "output dir", "status")
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(heads)]
    print(f"sweep '{sweep.name}': {len(rows)} points, recipe {sweep.recipe}"
          + (f" + {' + '.join(sweep.overlays)}" if sweep.overlays else "")
          + (f", baseline '{sweep.baseline}'" if sweep.baseline else ""), file=file)
    print("  ".join(h.ljust(w) for h, w in zip(heads, widths)), file=file)
    print("  ".join("-" * w for w in widths), file=file)
    for r in rows:
        print("  ".join(c.ljust(w) for c, w in zip(r, widths)), file=file)


Runner = Callable[[list[str], Path, dict[str, str]], int]


def subprocess_runner(argv: list[str], log: Path, env: dict[str, str]) -> int:
    """Run one command with its output appended to `log`; returns the exit code."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "a") as f:
        f.write(f"\n$ {' '.join(argv)}\n")
        f.flush()
        return subprocess.run(argv, stdout=f, stderr=subprocess.STDOUT, env=env).returncode


def train_command(sweep: Sweep, p: Point) -> list[str]:
    plugins = [x for plugin in sweep.plugins for x in ("--plugin", plugin)]
    return [sys.executable, "-m", "specframe.cli", "train", str(sweep.recipe), *sweep.overlays,
            *sweep.run_overrides(p), *plugins]


def eval_command(sweep: Sweep, p: Point) -> list[str]:
    """`specframe eval` with the point's own `eval` settings (its checkpoint may be another point's)."""
    e = sweep.recipes[p.name].eval
    strategy = dict(e.strategy)
    argv = [sys.executable, "-m", "specframe.cli", "eval", str(sweep.train_dir(p)), "--benchmarks", *e.benchmarks,
            "--num-prompts", str(e.num_prompts), "--max-new-tokens", str(e.max_new_tokens),
            "--temperature", str(e.temperature), "--strategy", str(strategy.pop("name", "single")),
            "--out", str(p.output_dir / "eval"), "--no-progress"]
    argv += [x for k, v in strategy.items() for x in ("--strategy-opt", f"{k}={json.dumps(v)}")]
    if e.block_size is not None:
        argv += ["--block-size", str(e.block_size)]
    if e.dtype:
        argv += ["--dtype", e.dtype]
    if not e.speedup:
        argv.append("--no-baseline")
    return argv


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None


def _write_json(path: Path, data: Any) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=2))
    tmp.replace(path)


def run_point(sweep: Sweep, p: Point, with_eval: bool, env: dict[str, str], runner: Runner) -> bool:
    """Train (or resume) and evaluate one point; record wall times in <point>/timing.json. True on success."""
    p.output_dir.mkdir(parents=True, exist_ok=True)
    timing_path = p.output_dir / "timing.json"
    timing = _read_json(timing_path) or {"train_attempts": [], "eval_attempts": []}
    ok = True
    if p.name in sweep.trained_by:  # shares another point's training: only its eval runs here
        ok = (sweep.train_dir(p) / "summary.json").is_file()
    elif not (p.output_dir / "summary.json").is_file():
        t0 = time.time()
        rc = runner(train_command(sweep, p), p.output_dir / "train.log", env)
        timing["train_attempts"].append({"seconds": round(time.time() - t0, 3), "returncode": rc,
                                         "finished_at": time.strftime("%Y-%m-%dT%H:%M:%S")})
        ok = rc == 0 and (p.output_dir / "summary.json").is_file()
    if ok and with_eval and not find_eval_json(p.output_dir, sweep.recipes[p.name].eval):
        t0 = time.time()
        rc = runner(eval_command(sweep, p), p.output_dir / "eval.log", env)
        timing["eval_attempts"].append({"seconds": round(time.time() - t0, 3), "returncode": rc,
                                        "finished_at": time.strftime("%Y-%m-%dT%H:%M:%S")})
        ok = rc == 0 and find_eval_json(p.output_dir, sweep.recipes[p.name].eval) is not None
    # Wall time of the attempts this sweep saw (a killed attempt leaves no record).
    timing["train_wall_s"] = round(sum(a["seconds"] for a in timing["train_attempts"]), 3)
    timing["eval_wall_s"] = round(sum(a["seconds"] for a in timing["eval_attempts"]), 3)
    _write_json(timing_path, timing)
    return ok


def run_sweep(sweep: Sweep, *, with_eval: bool, jobs: int = 1, max_points: int | None = None,
              runner: Runner = subprocess_runner, log: Callable[[str], None] = print) -> list[str]:
    """Run every point that is not done (at most `max_points`); returns the names of failed points."""
    todo = [p for p in sweep.points if point_status(sweep, p, with_eval) != "done"]
    # Points that evaluate another point's checkpoint go last, after the training they need.
    todo.sort(key=lambda p: p.name in sweep.trained_by)
    skipped = len(sweep.points) - len(todo)
    if skipped:
        log(f"{skipped} point(s) already done, skipped")
    if max_points is not None:
        todo = todo[:max_points]
    env = dict(os.environ)
    if jobs > 1:  # share the cores: each job's torch uses cores / jobs threads
        threads = str(max(1, (os.cpu_count() or 1) // jobs))
        env.update(OMP_NUM_THREADS=threads, MKL_NUM_THREADS=threads)
    failed: list[str] = []

    def one(i: int, p: Point) -> None:
        log(f"[{i}/{len(todo)}] {p.name}: {point_status(sweep, p, with_eval)} -> running (log: {p.output_dir}/train.log)")
        t0 = time.time()
        ok = run_point(sweep, p, with_eval, env, runner)
        if not ok:
            failed.append(p.name)
        log(f"[{i}/{len(todo)}] {p.name}: {'done' if ok else 'FAILED, see its train.log / eval.log'} "
            f"({time.time() - t0:.0f} s)")

    if jobs > 1:
        with ThreadPoolExecutor(max_workers=jobs) as pool:
            list(pool.map(lambda a: one(*a), enumerate(todo, start=1)))
    else:
        for i, p in enumerate(todo, start=1):
            one(i, p)
    return failed


# --------------------------------------------------------------------------------------------------
# Aggregation
# --------------------------------------------------------------------------------------------------
def collect(sweep: Sweep, p: Point) -> dict[str, Any] | None:
    """One point's figures: τ_sim before/after, τ_real and speedup per benchmark, training wall time."""
    summary = _read_json(sweep.train_dir(p) / "summary.json")
    if not isinstance(summary, dict):
        return None
    recipe = sweep.recipes.get(p.name)
    eval_path = find_eval_json(p.output_dir, recipe.eval if recipe else None)
    report = _read_json(eval_path) if eval_path else None
    benches = (report.get("summary") or report.get("benchmarks") or {}) if isinstance(report, dict) else {}
    timing = _read_json(sweep.train_dir(p) / "timing.json") or {}
    per_bench = {b: {"tau": v.get("tau"), "speedup": v.get("speedup"), "verify_width": v.get("verify_width")}
                 for b, v in benches.items() if isinstance(v, dict)}
    taus, widths = ([v[k] for v in per_bench.values() if isinstance(v[k], (int, float))]
                    for k in ("tau", "verify_width"))
    return {
        "tau_sim_before": summary.get("tau_sim_before"), "tau_sim_after": summary.get("tau_sim_after"),
        "train_wall_s": timing.get("train_wall_s"),
        # the paper's summary number: the mean over benchmarks of each benchmark's τ
        "tau_real_mean": statistics.fmean(taus) if taus else None,
        "verify_width": statistics.fmean(widths) if widths else None,
        "benchmarks": per_bench,
    }


def _stat(values: list[Any]) -> tuple[float | None, float | None, int]:
    xs = [float(v) for v in values if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)]
    if not xs:
        return None, None, 0
    return statistics.fmean(xs), (statistics.stdev(xs) if len(xs) > 1 else None), len(xs)


def aggregate(sweep: Sweep) -> list[dict[str, Any]]:
    """One row per group (mean and std over its seeds); also writes results.md, results.csv and results.png."""
    groups: dict[str, list[Point]] = {}
    for p in sweep.points:
        groups.setdefault(p.group, []).append(p)
    benchmarks: list[str] = []
    per_group: dict[str, list[dict[str, Any]]] = {}
    for g, pts in groups.items():
        per_group[g] = [c for c in (collect(sweep, p) for p in pts) if c]
        for c in per_group[g]:
            benchmarks += [b for b in c["benchmarks"] if b not in benchmarks]
    metrics = ["tau_sim_before", "tau_sim_after"] + [f"tau_real/{b}" for b in benchmarks] + \
        ["tau_real_mean", "verify_width"] + [f"speedup/{b}" for b in benchmarks] + ["train_wall_s"]

    def value(c: dict[str, Any], m: str) -> Any:
        if "/" in m:
            kind, b = m.split("/", 1)
            return c["benchmarks"].get(b, {}).get("tau" if kind == "tau_real" else "speedup")
        return c.get(m)

    rows = []
    for g, pts in groups.items():
        row: dict[str, Any] = {"point": g, "runs": len(per_group[g]), "planned": len(pts),
                               "overrides": " ".join(o for o in pts[0].overrides if not o.startswith("run.seed="))}
        for m in metrics:
            row[m] = _stat([value(c, m) for c in per_group[g]])
        rows.append(row)
    base = next((r for r in rows if r["point"] == sweep.baseline), None)
    for r in rows:
        for m in ["tau_sim_after", "tau_real_mean"] + [f"tau_real/{b}" for b in benchmarks]:
            mean, b_mean = r[m][0], base[m][0] if base else None
            r[f"{m} vs baseline %"] = (100.0 * (mean / b_mean - 1.0)) if mean is not None and b_mean else None
    sweep.directory.mkdir(parents=True, exist_ok=True)
    _write_csv(sweep, rows, metrics, benchmarks)
    _write_markdown(sweep, rows, benchmarks)
    _write_chart(sweep, rows, benchmarks)
    return rows


def _write_csv(sweep: Sweep, rows: list[dict[str, Any]], metrics: list[str], benchmarks: list[str]) -> None:
    pct = ["tau_sim_after", "tau_real_mean"] + [f"tau_real/{b}" for b in benchmarks]
    heads = ["point", "runs", "planned"] + [f"{m}_{s}" for m in metrics for s in ("mean", "std")] + \
        [f"{m}_vs_baseline_pct" for m in pct] + ["overrides"]
    with open(sweep.directory / "results.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow([h.replace("/", "_") for h in heads])
        for r in rows:
            w.writerow([r["point"], r["runs"], r["planned"]]
                       + [_num(r[m][i]) for m in metrics for i in (0, 1)]
                       + [_num(r[f"{m} vs baseline %"]) for m in pct] + [r["overrides"]])


def _num(x: float | None) -> str:
    return "" if x is None else f"{x:.6g}"


def _fmt(stat: tuple[float | None, float | None, int], digits: int = 3) -> str:
    mean, std, _ = stat
    if mean is None:
        return "-"
    return f"{mean:.{digits}f}" + (f" ± {std:.{digits}f}" if std is not None else "")


def _pct(x: float | None, is_base: bool) -> str:
    return "baseline" if is_base else "-" if x is None else f"{x:+.1f}%"


def _write_markdown(sweep: Sweep, rows: list[dict[str, Any]], benchmarks: list[str]) -> None:
    heads = ["point", "runs", "τ_sim before", "τ_sim after", "τ_sim vs base"]
    for b in benchmarks:
        heads += [f"τ_real {b}", f"vs base ({b})"]
    heads += ["τ_real mean", "vs base (mean)", "verify width"]
    # speedup columns only when some point measured one (`eval.speedup: false` skips it)
    speedups = [b for b in benchmarks if any(r[f"speedup/{b}"][0] is not None for r in rows)]
    heads += [f"speedup {b}" for b in speedups] + ["train time (min)"]
    lines = [f"# Sweep `{sweep.name}`", "",
             f"Recipe `{sweep.recipe}`" + (f" + overlays {', '.join(f'`{o}`' for o in sweep.overlays)}"
                                          if sweep.overlays else "") + f"; {len(sweep.points)} runs in "
             f"{len(rows)} points" + (f"; baseline `{sweep.baseline}`." if sweep.baseline else "."), "",
             "| " + " | ".join(heads) + " |", "|" + "---|" * len(heads)]
    for r in rows:
        is_base = r["point"] == sweep.baseline
        cells = [f"`{r['point']}`", f"{r['runs']}/{r['planned']}", _fmt(r["tau_sim_before"]), _fmt(r["tau_sim_after"]),
                 _pct(r["tau_sim_after vs baseline %"], is_base)]
        for b in benchmarks:
            cells += [_fmt(r[f"tau_real/{b}"]), _pct(r[f"tau_real/{b} vs baseline %"], is_base)]
        cells += [_fmt(r["tau_real_mean"]), _pct(r["tau_real_mean vs baseline %"], is_base), _fmt(r["verify_width"], 1)]
        cells += [_fmt(r[f"speedup/{b}"], 2) for b in speedups]
        wall = r["train_wall_s"]
        cells.append(_fmt((wall[0] / 60, wall[1] / 60 if wall[1] is not None else None, wall[2]), 1)
                     if wall[0] is not None else "-")
        lines.append("| " + " | ".join(cells) + " |")
    lines += ["", "Mean ± sample standard deviation over the seeds of a point (`runs` = finished / planned). "
              "τ_sim: held-out simulated acceptance length from each run's summary.json; τ_real: acceptance length "
              "when decoding for real (`specframe eval`), and its mean over the benchmarks; verify width: tokens "
              "the target checks per step (the block size; more with multi-draft strategies); "
              "`vs base`: change of the mean against the baseline point. "
              "Train time: wall time of the training attempts this sweep recorded (timing.json).", ""]
    lines += ["Overrides per point:", ""] + [f"- `{r['point']}`: `{r['overrides'] or '(none)'}`" for r in rows]
    (sweep.directory / "results.md").write_text("\n".join(lines) + "\n")


def _write_chart(sweep: Sweep, rows: list[dict[str, Any]], benchmarks: list[str]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    series = [("τ_sim", "tau_sim_after")] + [(f"τ_real {b}", f"tau_real/{b}") for b in benchmarks] + \
        ([("τ_real mean", "tau_real_mean")] if len(benchmarks) > 1 else [])
    n = len(series)
    width = 0.8 / n
    fig, ax = plt.subplots(figsize=(min(14.0, max(6.0, 0.9 * len(rows) * max(1, n) ** 0.5 + 2)), 4.5))
    # τ >= 1 always (the target's own token): bars start at 1 so that differences of a few % are visible
    for j, (label, key) in enumerate(series):
        xs = [i + (j - (n - 1) / 2) * width for i, r in enumerate(rows) if r[key][0] is not None]
        ys = [r[key][0] - 1.0 for r in rows if r[key][0] is not None]
        errs = [r[key][1] or 0.0 for r in rows if r[key][0] is not None]
        if xs:
            ax.bar(xs, ys, width, bottom=1.0, yerr=errs if any(errs) else None, capsize=3, label=label)
    ax.set_xticks(range(len(rows)))
    ax.set_xticklabels([r["point"] for r in rows], rotation=30, ha="right")
    ax.set_ylabel("acceptance length τ (bars start at 1)")
    ax.grid(axis="y", alpha=0.3)
    ax.set_title(f"sweep {sweep.name}" + (" (error bars: std over seeds)" if any(r["runs"] > 1 for r in rows) else ""))
    if n > 1 or rows:
        ax.legend(fontsize="small")
    fig.tight_layout()
    fig.savefig(sweep.directory / "results.png", dpi=120)
    plt.close(fig)


# --------------------------------------------------------------------------------------------------
# Command line
# --------------------------------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="tools/sweep.py", description=__doc__.split("\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("recipe", help="base recipe YAML")
    p.add_argument("axes", nargs="*", metavar="key=v1,v2", help="grid axes: their cartesian product is swept")
    p.add_argument("--grid", help="grid YAML of named variants (docs/sweeps.md)")
    p.add_argument("--overlay", action="append", default=[], help="overlay YAML applied to every point (repeatable)")
    p.add_argument("--plugin", action="append", default=[], help="import this module or .py file (repeatable)")
    p.add_argument("--name", help="sweep name (default: the grid's `name:`, its file stem, or the recipe's stem)")
    p.add_argument("--sweep-dir", help="where the points go (default: runs/sweeps/<name>)")
    p.add_argument("--baseline", help="point the %% columns compare against (default: the grid's `baseline:`)")
    p.add_argument("--seeds", help="comma-separated seeds crossing every point (overrides the grid's `seeds:`)")
    p.add_argument("--only", metavar="NAME,...", help="run only these variants, groups or points (comma-separated)")
    p.add_argument("--dry-run", action="store_true", help="validate every point, print the plan, run nothing")
    p.add_argument("--jobs", type=int, default=1, help="points trained at once (each gets cores/jobs threads)")
    p.add_argument("--eval", action=argparse.BooleanOptionalAction, default=True,
                   help="run `specframe eval` on each trained point (default: on)")
    p.add_argument("--wandb", action="store_true", help="log every point to W&B, grouped under the sweep name")
    p.add_argument("--max-points", type=int, help="run at most this many unfinished points, then stop")
    p.add_argument("--aggregate-only", action="store_true", help="only rebuild results.md/.csv/.png")
    return p


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    # intermixed: grid axes may come after options (`RECIPE --overlay tiny.yaml optim.lr=1e-3,3e-3`)
    return build_parser().parse_intermixed_args(argv)


def select(points: list[Point], only: str) -> list[Point]:
    """Keep the points whose variant, group or name is in the comma-separated `only`; unknown names are errors."""
    wanted = [w.strip() for w in only.split(",") if w.strip()]
    known = sorted({x for p in points for x in (p.variant, p.group, p.name) if x})
    unknown = [w for w in wanted if w not in known]
    if unknown:
        hints = [f"--only {w!r} matches no point{did_you_mean(w, known)}" for w in unknown]
        raise ConfigError([*hints, f"variants, groups and points: {known}"])
    return [p for p in points if {p.variant, p.group, p.name} & set(wanted)]


def plan(args: argparse.Namespace) -> Sweep:
    """Arguments -> an expanded, fully validated Sweep (raises ConfigError listing every bad point)."""
    grid = load_grid(args.grid) if args.grid else None
    for o in args.overlay:
        if not o.endswith((".yaml", ".yml")) or not Path(o).is_file():
            raise ConfigError(f"--overlay {o}: expected an existing .yaml file")
    name = sanitize(args.name or (grid.name if grid and grid.name else None)
                    or Path(args.grid or args.recipe).stem)
    directory = Path(args.sweep_dir or Path("runs") / "sweeps" / name)
    seeds = None
    if args.seeds:
        try:
            seeds = [int(s) for s in args.seeds.split(",")]
        except ValueError:
            raise ConfigError(f"--seeds {args.seeds!r}: expected integers like 0,1,2") from None
    points = expand(grid, parse_axes(args.axes), directory, seeds)
    if args.only:
        points = select(points, args.only)
    sweep = Sweep(name=name, recipe=Path(args.recipe), overlays=list(args.overlay), plugins=list(args.plugin),
                  directory=directory, points=points, baseline=args.baseline or (grid.baseline if grid else None),
                  wandb=args.wandb)
    validate_points(sweep)
    return sweep


def main(argv: list[str] | None = None, runner: Runner = subprocess_runner) -> int:
    args = parse_args(argv)
    try:
        sweep = plan(args)
    except ConfigError as e:
        print(f"error: the sweep was not started: {e}", file=sys.stderr)
        return 2
    with_eval = args.eval
    if with_eval and not eval_available():
        print("note: `specframe eval` is not available in this install; points are trained only", file=sys.stderr)
        with_eval = False
    if args.dry_run:
        print_plan(sweep, with_eval)
        return 0
    failed: list[str] = []
    if not args.aggregate_only:
        print_plan(sweep, with_eval)
        failed = run_sweep(sweep, with_eval=with_eval, jobs=max(1, args.jobs), max_points=args.max_points,
                           runner=runner)
    aggregate(sweep)
    print(f"results: {sweep.directory / 'results.md'} (.csv, .png)")
    if failed:
        print(f"{len(failed)} point(s) failed: {', '.join(failed)} (re-run the same command to retry them)",
              file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
