"""Plot a run's training curves (loss terms, train/val τ_sim) from its CSV log into a PNG.

    python tools/plot_run.py runs/quickstart [runs/other ...] [--out curves.png]

With several runs, their curves share the axes (one colour per run), which makes ablations easy to compare.
"""
from __future__ import annotations

import argparse
import csv
from pathlib import Path


def read_metrics(run: Path) -> dict[str, list[tuple[int, float]]]:
    """{metric: [(step, value), ...]} from <run>/logs/metrics.csv (empty cells skipped)."""
    path = run / "logs" / "metrics.csv"
    if not path.is_file():
        raise SystemExit(f"{path} does not exist: is {run} a specframe run folder?")
    series: dict[str, list[tuple[int, float]]] = {}
    with path.open() as f:
        for row in csv.DictReader(f):
            step = int(float(row["step"]))
            for key, value in row.items():
                if key not in ("step", "epoch") and value not in ("", None):
                    series.setdefault(key, []).append((step, float(value)))
    return series


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("runs", nargs="+", type=Path)
    p.add_argument("--out", type=Path, default=None, help="PNG path (default: <first run>/curves.png)")
    args = p.parse_args()
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = [("train/loss", "train loss (weighted sum)"), ("train/tau_sim", "train τ_sim"),
              ("val/tau_sim", "held-out τ_sim"), ("val/accept/slot_1", "held-out acceptance of slot 1")]
    fig, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 3.4))
    for run in args.runs:
        series = read_metrics(run)
        for ax, (key, title) in zip(axes, panels):
            points = series.get(key, [])
            if points:
                xs, ys = zip(*points)
                ax.plot(xs, ys, marker="o" if key.startswith("val") else None, ms=3, label=run.name)
            ax.set_title(title, fontsize=10)
            ax.set_xlabel("step")
            ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    out = args.out or args.runs[0] / "curves.png"
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
