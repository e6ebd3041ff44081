"""Running a sweep: each point is `specframe train` (then `specframe eval`) in a subprocess, skipped when done,
resumed when interrupted, with its log and wall times in the point's folder."""
from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from specframe.atomic_files import write_json
from specframe.sweeps.grid import Point, Sweep


# --------------------------------------------------------------------------------------------------
# Running
# --------------------------------------------------------------------------------------------------
def eval_available() -> bool:
    return importlib.util.find_spec("specframe.cli.eval") is not None


def _eval_matches(report: dict[str, Any], eval_cfg: Any) -> bool:
    """Whether an eval JSON was made with the recipe's eval settings (a JSON without settings is accepted)."""
    s = report.get("settings")
    if not isinstance(s, dict) or eval_cfg is None:
        return True
    want = {"benchmarks": list(eval_cfg.benchmarks), "num_prompts": eval_cfg.num_prompts,
            "max_new_tokens": eval_cfg.max_new_tokens, "temperature": eval_cfg.temperature,
            "strategy": dict(eval_cfg.strategy)}
    if eval_cfg.block_size is not None:
        want["block_size" if eval_cfg.block_size != "auto" else "block_size_requested"] = eval_cfg.block_size
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
                and report.get("complete") is not False and _eval_matches(report, eval_cfg):
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


def _die_with_parent() -> None:
    """In the child, before exec: SIGKILL it when the sweep dies, even by SIGKILL (Linux prctl PR_SET_PDEATHSIG),
    so that a killed sweep never leaves a trainer writing into a folder that the next sweep will resume.

    SIGKILL, not SIGTERM: Lightning handles SIGTERM by finishing the current step and tearing down, which took
    more than 5 s on a busy machine (tools/bad_inputs.py case 4.sweep_killed). Nothing is lost by not waiting:
    checkpoints and run files are written atomically, the run-folder lock dies with the process, and the next
    sweep resumes the point from its last.ckpt."""
    try:
        import ctypes
        import signal

        ctypes.CDLL(None, use_errno=True).prctl(1, int(signal.SIGKILL), 0, 0, 0)  # 1 = PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass  # not Linux: Ctrl-C still stops the child (subprocess.run kills it on KeyboardInterrupt)


def subprocess_runner(argv: list[str], log: Path, env: dict[str, str]) -> int:
    """Run one command with its output appended to `log`; returns the exit code. The child stops with the sweep."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "a") as f:
        f.write(f"\n$ {' '.join(argv)}\n")
        f.flush()
        preexec = _die_with_parent if sys.platform.startswith("linux") else None
        return subprocess.run(argv, stdout=f, stderr=subprocess.STDOUT, env=env, preexec_fn=preexec).returncode


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


def read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None


def _attempt(timing: dict[str, Any], kind: str, timing_path: Path, run: Callable[[], int]) -> int:
    """Run one train/eval attempt, recorded in timing.json BEFORE it starts, so that a killed attempt's time is
    kept: the next sweep finds it unfinished and closes it with the time its log was last written."""
    record: dict[str, Any] = {"started_at": time.time(), "seconds": None, "returncode": None}
    timing[f"{kind}_attempts"].append(record)
    write_json(timing_path, timing)
    t0 = time.time()
    rc = run()
    record.update(seconds=round(time.time() - t0, 3), returncode=rc, finished_at=time.strftime("%Y-%m-%dT%H:%M:%S"))
    return rc


def _close_killed_attempts(timing: dict[str, Any], point_dir: Path) -> None:
    for kind in ("train", "eval"):
        log = point_dir / f"{kind}.log"
        for a in timing.setdefault(f"{kind}_attempts", []):
            if a.get("returncode") is None and a.get("seconds") is None and "started_at" in a:
                end = log.stat().st_mtime if log.is_file() else a["started_at"]
                a.update(seconds=round(max(0.0, end - a["started_at"]), 3), returncode="killed")


def run_point(sweep: Sweep, p: Point, with_eval: bool, env: dict[str, str], runner: Runner) -> bool:
    """Train (or resume) and evaluate one point; record wall times in <point>/timing.json. True on success."""
    p.output_dir.mkdir(parents=True, exist_ok=True)
    timing_path = p.output_dir / "timing.json"
    timing = read_json(timing_path) or {"train_attempts": [], "eval_attempts": []}
    _close_killed_attempts(timing, p.output_dir)
    ok = True
    if p.name in sweep.trained_by:  # shares another point's training: only its eval runs here
        ok = (sweep.train_dir(p) / "summary.json").is_file()
    elif not (p.output_dir / "summary.json").is_file():
        log = p.output_dir / "train.log"
        rc = _attempt(timing, "train", timing_path, lambda: runner(train_command(sweep, p), log, env))
        ok = rc == 0 and (p.output_dir / "summary.json").is_file()
    if ok and with_eval and not find_eval_json(p.output_dir, sweep.recipes[p.name].eval):
        log = p.output_dir / "eval.log"
        rc = _attempt(timing, "eval", timing_path, lambda: runner(eval_command(sweep, p), log, env))
        ok = rc == 0 and find_eval_json(p.output_dir, sweep.recipes[p.name].eval) is not None
    # Wall time of every attempt, killed ones included (closed with their log's last write).
    timing["train_wall_s"] = round(sum(a["seconds"] or 0 for a in timing["train_attempts"]), 3)
    timing["eval_wall_s"] = round(sum(a["seconds"] or 0 for a in timing["eval_attempts"]), 3)
    write_json(timing_path, timing)
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
