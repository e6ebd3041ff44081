"""Sweeps: one base recipe crossed with a grid of overrides; every point validated before anything runs, then
trained (resumably), evaluated and aggregated into one table and one chart.

    python tools/sweep.py RECIPE [--overlay FILE.yaml ...] [key=v1,v2 ...] [--grid GRID.yaml]
        [--sweep-dir DIR] [--name NAME] [--baseline POINT] [--dry-run] [--jobs N] [--no-eval] [--wandb]
        [--max-points N] [--only NAME,...] [--plugin MODULE] [--aggregate-only]
        [--launcher submitit --partition P --gpus-per-point N --time-min M ...]   (Slurm, docs/sweeps.md)
        [--search optuna --trials N [--storage URL | --journal FILE]]           (search, docs/sweeps.md)

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
import os  # noqa: F401  (tests patch sweep.os.cpu_count)
import sys
from pathlib import Path

from specframe.errors import ConfigError
from specframe.sweeps.grid import (MAX_NAME, Point, Sweep, expand, load_grid, parse_axes,  # noqa: F401
                                   sanitize, select, split_values, validate_points)
from specframe.sweeps.cluster import launch_search, launch_submitit
from specframe.sweeps.results import aggregate
from specframe.sweeps.run import Runner, eval_available, print_plan, run_sweep, subprocess_runner


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
    from specframe.launchers import add_arguments as add_launcher_arguments
    from specframe.search import add_arguments as add_search_arguments

    add_launcher_arguments(p)  # --launcher submitit, --partition, ... (docs/sweeps.md: Slurm)
    add_search_arguments(p)  # --search optuna, --trials, --storage, ... (docs/sweeps.md: Optuna)
    return p


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    # intermixed: grid axes may come after options (`RECIPE --overlay tiny.yaml optim.lr=1e-3,3e-3`)
    return build_parser().parse_intermixed_args(argv)


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
                  wandb=args.wandb, grid=grid)
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
    if args.search:
        try:
            return launch_search(sweep, args, with_eval, runner)
        except ConfigError as e:
            print(f"error: the search was not started: {e}", file=sys.stderr)
            return 2
    if args.dry_run:
        print_plan(sweep, with_eval)
        return 0
    failed: list[str] = []
    if not args.aggregate_only:
        print_plan(sweep, with_eval)
        if args.launcher == "submitit":
            try:
                failed = launch_submitit(sweep, args, with_eval)
            except ConfigError as e:
                print(f"error: the sweep was not started: {e}", file=sys.stderr)
                return 2
        else:
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
