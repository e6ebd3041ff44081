"""The two ways a sweep leaves one machine: points as submitit/Slurm jobs (`--launcher submitit`) and an Optuna
search over the grid file's ranges (`--search optuna`). This file only connects the sweep's points to
specframe/launchers.py and specframe/search.py, which know nothing of sweeps. docs/sweeps.md is the guide.
"""
from __future__ import annotations

import argparse
import os
import sys
from typing import Any

from specframe.errors import ConfigError
from specframe.sweeps.grid import Point, Sweep, validate_points
from specframe.sweeps.results import aggregate, collect
from specframe.sweeps.run import Runner, eval_command, find_eval_json, point_status, run_point, train_command


def point_job(sweep: Sweep, p: Point, with_eval: bool) -> Any:
    """The point's remaining work as a launcher job: train unless finished, then eval unless done."""
    from specframe.launchers import PointJob, Step

    steps = []
    if p.name not in sweep.trained_by:
        steps.append(Step(kind="train", argv=train_command(sweep, p), log=p.output_dir / "train.log",
                          done_marker=p.output_dir / "summary.json"))
    if with_eval and not find_eval_json(p.output_dir, sweep.recipes[p.name].eval):
        steps.append(Step(kind="eval", argv=eval_command(sweep, p), log=p.output_dir / "eval.log"))
    return PointJob(name=p.name, output_dir=p.output_dir, steps=steps)


def launch_submitit(sweep: Sweep, args: argparse.Namespace, with_eval: bool) -> list[str]:
    """Every unfinished point as a submitit job (one Slurm array); points sharing a checkpoint in a second wave.
    Returns the names of the points that ended unfinished."""
    from specframe.launchers import SubmititLauncher, settings

    by_name = {p.name: p for p in sweep.points}
    launcher = SubmititLauncher(settings(sweep.grid.launcher if sweep.grid else None, args),
                                folder=(sweep.directory / ".submitit").resolve(),
                                is_done=lambda name: point_status(sweep, by_name[name], with_eval) == "done")
    todo = [p for p in sweep.points if point_status(sweep, p, with_eval) != "done"][:args.max_points]
    if len(todo) < len(sweep.points):
        print(f"{len(sweep.points) - len(todo)} point(s) already done or beyond --max-points, skipped")
    waves = [[point_job(sweep, p, with_eval) for p in todo if (p.name in sweep.trained_by) == second]
             for second in (False, True)]
    return launcher.launch(waves)


def launch_search(sweep: Sweep, args: argparse.Namespace, with_eval: bool, runner: Runner) -> int:
    """--search optuna: trials around the sweep's one base point, then the same results plus the study's."""
    from specframe import search

    space = search.parse_space(sweep.grid.search if sweep.grid else None, args.objective)
    if len(sweep.points) != 1:
        raise ConfigError(f"--search explores around one base point; this sweep expands to {len(sweep.points)} "
                          f"({', '.join(p.name for p in sweep.points[:5])}...): choose one with --only")
    if not args.trials or args.trials < 1:
        raise ConfigError(f"--search optuna needs --trials N with N >= 1, got {args.trials}")
    if space.objective == "tau_real" and not with_eval:
        raise ConfigError("search objective tau_real needs the eval of each trial: drop --no-eval")
    base = sweep.points[0]

    def trial_sweep(name: str, overrides: list[str]) -> tuple[Sweep, Point]:
        p = Point(name=name, group=name, seed=base.seed, overrides=(*base.overrides, *overrides),
                  output_dir=(sweep.directory / name).resolve())
        return Sweep(name=sweep.name, recipe=sweep.recipe, overlays=sweep.overlays, plugins=sweep.plugins,
                     directory=sweep.directory, points=[p], wandb=sweep.wandb, grid=sweep.grid), p

    probe = {q.key: q.choices[0] if q.choices is not None else q.low for q in space.params}
    validate_points(trial_sweep("probe", search.overrides_of(probe))[0])  # a bad key fails before any trial
    if args.dry_run:
        print(f"search over {[q.key for q in space.params]} maximising {space.objective}, {args.trials} trials")
        return 0
    study = search.open_study(name=args.study or sweep.name, storage=args.storage, journal=args.journal,
                              default_db=sweep.directory / "study.db", heartbeat=args.heartbeat,
                              seed=space.sampler_seed)
    env = dict(os.environ)

    def evaluate(name: str, overrides: list[str]) -> float | None:
        one, p = trial_sweep(name, overrides)
        try:
            validate_points(one)
        except ConfigError as e:
            print(f"{name}: {e}", file=sys.stderr)
            return None
        if point_status(one, p, with_eval) != "done" and not run_point(one, p, with_eval, env, runner):
            return None
        figures = collect(one, p) or {}
        return figures.get("tau_sim_after" if space.objective == "tau_sim" else "tau_real_mean")

    search.optimize(study, space, args.trials, evaluate)
    points = [trial_sweep(t.user_attrs["point"], search.overrides_of(t.params))[1] for t in search.completed(study)]
    aggregate(Sweep(name=sweep.name, recipe=sweep.recipe, overlays=sweep.overlays, plugins=sweep.plugins,
                    directory=sweep.directory, points=points, grid=sweep.grid))
    print(search.report(study, space, sweep.directory))
    print(f"results: {sweep.directory / 'results.md'} (.csv, .png), importance.md, trials.csv, search.png")
    return 0
