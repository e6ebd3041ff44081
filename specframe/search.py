"""Searching a sweep's parameters with Optuna, the study kept in a real database so that it resumes after a kill
and several launchers can share it.

The grid file's `search:` section names the ranges and the objective (docs/sweeps.md):

    search:
      objective: tau_sim            # held-out τ_sim after training (summary.json); tau_real: mean τ_real of eval
      params:
        loss.0.gamma: {low: 3, high: 20, log: true}
        loss.1.weight: {low: 0.0, high: 1.0}
        loss.2.weight: {low: 0, high: 80}
        drafter.num_layers: {choices: [1, 2]}
        data.num_anchors: {low: 8, high: 32, step: 8, int: true}

Storage: Optuna's RDB storage, SQLite at <sweep_dir>/study.db unless `--storage` names any SQLAlchemy URL
(postgresql://..., mysql://...); `--journal FILE` uses Optuna's journal file storage instead (shared
filesystems without a database server, where SQLite's locking is unreliable).

Resuming: a trial's run folder is named by a hash of its parameter values, so the trial that a kill left
unfinished is re-enqueued with the same values and its training resumes from the folder's last.ckpt. A trial is
known to be abandoned when its launcher process (recorded per trial: host and pid) is gone, or, across machines
on an RDB storage, when its heartbeat stops (`--heartbeat`).
"""
from __future__ import annotations

import argparse
import hashlib
import inspect
import json
import math
import os
import socket
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from specframe.errors import ConfigError, did_you_mean

OBJECTIVES = ("tau_sim", "tau_real")
PARAM_KEYS = {"low", "high", "log", "step", "int", "choices"}
SEARCH_KEYS = {"objective", "params", "sampler_seed"}


@dataclass(frozen=True, kw_only=True)
class Param:
    key: str
    """A recipe key as in a key=value override, e.g. loss.0.gamma."""
    low: float | None = None
    high: float | None = None
    log: bool = False
    step: float | None = None
    integer: bool = False
    choices: tuple[Any, ...] | None = None

    def suggest(self, trial: Any) -> Any:
        if self.choices is not None:
            return trial.suggest_categorical(self.key, list(self.choices))
        if self.integer:
            return trial.suggest_int(self.key, int(self.low), int(self.high), log=self.log,
                                     step=int(self.step or 1))
        return trial.suggest_float(self.key, float(self.low), float(self.high), log=self.log, step=self.step)


@dataclass(frozen=True, kw_only=True)
class SearchSpace:
    params: tuple[Param, ...]
    objective: str = "tau_sim"
    sampler_seed: int | None = 0


def parse_space(section: dict[str, Any] | None, objective: str | None = None) -> SearchSpace:
    """The grid's `search:` section -> a SearchSpace; every problem is reported at once."""
    section = dict(section or {})
    issues = [f"search: unknown key '{k}'{did_you_mean(k, sorted(SEARCH_KEYS))}. Allowed: {sorted(SEARCH_KEYS)}"
              for k in section if k not in SEARCH_KEYS]
    objective = objective or section.get("objective", "tau_sim")
    if objective not in OBJECTIVES:
        issues.append(f"search.objective: {objective!r} is not one of {list(OBJECTIVES)}"
                      f"{did_you_mean(str(objective), OBJECTIVES)}")
    raw = section.get("params") or {}
    if not isinstance(raw, dict) or not raw:
        issues.append("search.params: expected a mapping key -> {low, high[, log, step, int]} or {choices: [...]}, "
                      "e.g. {loss.0.gamma: {low: 3, high: 20, log: true}}")
        raw = {}
    params = []
    for key, spec in raw.items():
        where = f"search.params.{key}"
        if not isinstance(spec, dict):
            issues.append(f"{where}: expected {{low: .., high: ..}} or {{choices: [...]}}, got {spec!r}")
            continue
        bad = [k for k in spec if k not in PARAM_KEYS]
        issues += [f"{where}: unknown key '{k}'{did_you_mean(k, sorted(PARAM_KEYS))}. Allowed: {sorted(PARAM_KEYS)}"
                   for k in bad]
        if "choices" in spec:
            if not isinstance(spec["choices"], list) or not spec["choices"]:
                issues.append(f"{where}.choices: expected a non-empty list, got {spec['choices']!r}")
                continue
            params.append(Param(key=str(key), choices=tuple(spec["choices"])))
            continue
        low, high = spec.get("low"), spec.get("high")
        nums = all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in (low, high))
        if not nums or not math.isfinite(low) or not math.isfinite(high) or low >= high:
            issues.append(f"{where}: expected numbers low < high, got low={low!r} high={high!r}")
            continue
        log = bool(spec.get("log", False))
        if log and low <= 0:
            issues.append(f"{where}: a log range needs low > 0, got {low}")
        step = spec.get("step")
        if log and step is not None:
            issues.append(f"{where}: step and log cannot be combined (Optuna's rule)")
        integer = bool(spec.get("int", False)) or (isinstance(low, int) and isinstance(high, int)
                                                   and isinstance(step, int))
        params.append(Param(key=str(key), low=low, high=high, log=log, step=step, integer=integer))
    seed = section.get("sampler_seed", 0)
    if seed is not None and (not isinstance(seed, int) or isinstance(seed, bool)):
        issues.append(f"search.sampler_seed: expected an integer or null, got {seed!r}")
    if issues:
        raise ConfigError(issues)
    return SearchSpace(params=tuple(params), objective=objective, sampler_seed=seed)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    g = parser.add_argument_group("search (docs/sweeps.md: Optuna)")
    g.add_argument("--search", choices=("optuna",), help="search the grid file's `search:` ranges instead of a grid")
    g.add_argument("--trials", type=int, help="finished trials the study should have (counts earlier sessions')")
    g.add_argument("--storage", help="SQLAlchemy URL of the study database (default sqlite:///<sweep_dir>/study.db)")
    g.add_argument("--journal", help="Optuna journal file instead of a database (shared filesystems)")
    g.add_argument("--study", help="study name (default: the sweep name)")
    g.add_argument("--objective", choices=OBJECTIVES, help="what to maximise (default: the grid's, else tau_sim)")
    g.add_argument("--heartbeat", type=int, default=60,
                   help="seconds between trial heartbeats (RDB storage): a trial silent for 2x this is retried")


def point_name(values: dict[str, Any]) -> str:
    """The run folder of a trial: a hash of its parameter values (a re-enqueued trial finds its last.ckpt)."""
    text = json.dumps(values, sort_keys=True, default=str)
    return "trial-" + hashlib.sha1(text.encode()).hexdigest()[:10]


def overrides_of(values: dict[str, Any]) -> list[str]:
    return [f"{k}={json.dumps(v) if isinstance(v, str) else v}" for k, v in values.items()]


def open_study(*, name: str, storage: str | None, journal: str | None, default_db: Path, heartbeat: int,
               seed: int | None) -> Any:
    """Create or load the study (maximising); RDB storage with heartbeats, or a journal file."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    if journal and storage:
        raise ConfigError("--storage and --journal: choose one study store")
    if journal:
        from optuna.storages import JournalStorage
        from optuna.storages.journal import JournalFileBackend

        Path(journal).parent.mkdir(parents=True, exist_ok=True)
        store: Any = JournalStorage(JournalFileBackend(str(journal)))
    else:
        url = storage or f"sqlite:///{default_db.resolve()}"
        if url.startswith("sqlite:///"):
            Path(url[len("sqlite:///"):]).parent.mkdir(parents=True, exist_ok=True)
        # the retry callback and its keyword were renamed in Optuna 4.9 (RetryFailedTrialCallback before)
        retry_cls = getattr(optuna.storages, "RetryHeartbeatStaleTrialCallback", None) or \
            optuna.storages.RetryFailedTrialCallback
        stale_kw = "heartbeat_stale_trial_callback" if "heartbeat_stale_trial_callback" in \
            inspect.signature(optuna.storages.RDBStorage.__init__).parameters else "failed_trial_callback"
        try:
            with warnings.catch_warnings():  # heartbeats are marked experimental; they are what resumes a study
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                store = optuna.storages.RDBStorage(url, heartbeat_interval=heartbeat, grace_period=2 * heartbeat,
                                                   **{stale_kw: retry_cls(max_retry=3)})
        except Exception as e:  # noqa: BLE001  (SQLAlchemy's errors: bad URL, missing driver, no server)
            raise ConfigError(f"--storage {url}: cannot open the study database: {type(e).__name__}: {e}") from None
    study = optuna.create_study(study_name=name, storage=store, direction="maximize", load_if_exists=True)
    # A resumed study must not replay the first session's random start: the seed moves on with the trial count.
    start = None if seed is None else seed + len(study.trials)
    study.sampler = optuna.samplers.TPESampler(seed=start, n_startup_trials=4)
    return study


def _alive_here(owner: str) -> bool:
    host, _, pid = owner.rpartition(":")
    if host != socket.gethostname():
        return True  # another machine's launcher: only its heartbeat can tell
    from specframe.launchers import pid_exists

    return pid_exists(pid)


def reclaim_abandoned(study: Any, log: Callable[[str], None]) -> int:
    """Trials left RUNNING by a launcher of this machine that no longer exists: FAIL, and enqueue their values
    again (same values, same run folder: the training resumes). Returns how many."""
    from optuna.trial import TrialState

    n = 0
    for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        owner = t.user_attrs.get("launcher")
        if owner and not _alive_here(owner):
            study._storage.set_trial_state_values(t._trial_id, TrialState.FAIL)
            study.enqueue_trial(dict(t.params), user_attrs={"retry_of": t.number}, skip_if_exists=False)
            log(f"trial {t.number} ({t.user_attrs.get('point')}): its launcher {owner} is gone; enqueued again")
            n += 1
    return n


class TrialFailed(Exception):
    """A trial's training or evaluation failed (the study records it as FAIL and goes on)."""


def optimize(study: Any, space: SearchSpace, trials: int,
             evaluate: Callable[[str, list[str]], float | None], log: Callable[[str], None] = print) -> None:
    """Run trials until the study has `trials` complete ones. `evaluate(point_name, overrides)` trains (or
    resumes) one point and returns its objective, None when it failed."""
    from optuna.trial import TrialState

    owner = f"{socket.gethostname()}:{os.getpid()}"
    reclaim_abandoned(study, log)

    def objective(trial: Any) -> float:
        values = {p.key: p.suggest(trial) for p in space.params}
        name = point_name(values)
        trial.set_user_attr("point", name)
        trial.set_user_attr("launcher", owner)
        log(f"trial {trial.number}: {name} " + " ".join(overrides_of(values)))
        score = evaluate(name, overrides_of(values))
        if score is None or not math.isfinite(score):
            raise TrialFailed(f"trial {trial.number} ({name}) produced no {space.objective}")
        log(f"trial {trial.number}: {space.objective} = {score:.4f}")
        return score

    failures = 0
    while True:
        complete = len(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)))
        if complete >= trials:
            log(f"study '{study.study_name}': {complete} complete trial(s), target {trials} reached")
            return
        if failures >= max(3, trials):
            log(f"study '{study.study_name}': {failures} failed trials in this session; stopping")
            return
        before = len(study.get_trials(deepcopy=False, states=(TrialState.FAIL,)))
        study.optimize(objective, n_trials=1, catch=(TrialFailed,))
        failures += len(study.get_trials(deepcopy=False, states=(TrialState.FAIL,))) - before


def completed(study: Any) -> list[Any]:
    from optuna.trial import TrialState

    return study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))


def report(study: Any, space: SearchSpace, folder: Path) -> str:
    """importance.md (the study's parameter importances), trials.csv and search.png (τ against each parameter);
    returns the importance table's text."""
    import csv

    import optuna

    folder.mkdir(parents=True, exist_ok=True)
    done = completed(study)
    keys = [p.key for p in space.params]
    with open(folder / "trials.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["trial", "point", space.objective, *keys])
        for t in done:
            w.writerow([t.number, t.user_attrs.get("point", ""), f"{t.value:.6g}", *(t.params.get(k) for k in keys)])
    lines = [f"# Study `{study.study_name}`", "",
             f"{len(done)} complete trials, maximising {space.objective}; best {study.best_value:.4f} "
             f"(trial {study.best_trial.number}: {' '.join(overrides_of(study.best_trial.params))})." if done else
             "No complete trial yet.", ""]
    if len(done) >= 2:
        try:
            imp = optuna.importance.get_param_importances(study)
            method = "PED-ANOVA" if "PedAnova" in str(optuna.importance.get_param_importances.__doc__) else "default"
        except Exception as e:  # noqa: BLE001  (too few distinct values, say)
            imp, method = {}, f"not computed: {e}"
        lines += [f"Parameter importance (optuna.importance.get_param_importances, {method} evaluator):", "",
                  "| parameter | importance |", "|---|---|"] + [f"| `{k}` | {v:.3f} |" for k, v in imp.items()]
    text = "\n".join(lines) + "\n"
    (folder / "importance.md").write_text(text)
    _plot(done, space, folder / "search.png")
    return text


def _plot(done: list[Any], space: SearchSpace, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = max(1, len(space.params))
    fig, axes = plt.subplots(1, n, figsize=(4 * n, 3.5), squeeze=False)
    best = max((t.value for t in done), default=None)
    for ax, p in zip(axes[0], space.params):
        pts = [(t.params[p.key], t.value) for t in done if p.key in t.params]
        if pts:
            xs = [x if p.choices is None else [str(c) for c in p.choices].index(str(x)) for x, _ in pts]
            ax.scatter(xs, [y for _, y in pts], c=["tab:red" if y == best else "tab:blue" for _, y in pts])
        if p.choices is not None:
            ax.set_xticks(range(len(p.choices)))
            ax.set_xticklabels([str(c) for c in p.choices])
        elif p.log:
            ax.set_xscale("log")
        ax.set_xlabel(p.key)
        ax.set_ylabel(space.objective)
        ax.grid(alpha=0.3)
    fig.suptitle(f"{space.objective} against each parameter ({len(done)} trials; red: best)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
