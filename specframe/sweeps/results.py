"""A sweep's results: one row per group (mean and std over seeds) in results.md, results.csv and results.png."""
from __future__ import annotations

import csv
import math
import statistics
from typing import Any

from specframe.sweeps.grid import Point, Sweep
from specframe.sweeps.run import read_json, find_eval_json


# --------------------------------------------------------------------------------------------------
# Aggregation
# --------------------------------------------------------------------------------------------------
def collect(sweep: Sweep, p: Point) -> dict[str, Any] | None:
    """One point's figures: τ_sim before/after, τ_real and speedup per benchmark, training wall time."""
    summary = read_json(sweep.train_dir(p) / "summary.json")
    if not isinstance(summary, dict):
        return None
    recipe = sweep.recipes.get(p.name)
    eval_path = find_eval_json(p.output_dir, recipe.eval if recipe else None)
    report = read_json(eval_path) if eval_path else None
    benches = (report.get("summary") or report.get("benchmarks") or {}) if isinstance(report, dict) else {}
    timing = read_json(sweep.train_dir(p) / "timing.json") or {}
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
