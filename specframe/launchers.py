"""Where the points of a sweep run: local subprocesses (tools/sweep.py's own loop) or jobs through `submitit`.

The sweep hands this module a narrow description of each unfinished point (`PointJob`: the train and eval
commands, their logs, the point's folder) and gets back the names of the points that failed. A job record
`<point>/job.json` (submitit folder, job id, cluster) lets a re-run of the same sweep command ask the executor
whether a point's job is still pending or running, and leave it alone instead of submitting it twice.

    python tools/sweep.py RECIPE --grid GRID.yaml --launcher submitit --cluster slurm \
        --partition gpu --gpus-per-point 8 --time-min 720 --mem-gb 400

Slurm jobs are submitted as one job array per wave (submitit's `executor.batch()`). A job that hits its time
limit or is preempted is requeued by submitit (`PointJob` is `Checkpointable`); the requeued job runs the same
`specframe train ... run.resume=true`, which resumes from the point's `last.ckpt`.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from specframe.atomic_files import write_json
from specframe.errors import ConfigError, did_you_mean

CLUSTERS = ("slurm", "local", "debug")
"""submitit's executors: real Slurm, local processes (the test stand-in for Slurm), in-process debug."""
LAUNCHER_KEYS = {"cluster", "partition", "gpus_per_point", "cpus_per_point", "time_min", "mem_gb", "sbatch",
                 "array_parallelism", "wait", "poll_s"}
JOB_RECORD = "job.json"
# Slurm states (sacct / squeue) in which a job still holds or waits for resources: never resubmit it.
ACTIVE_STATES = {"PENDING", "RUNNING", "REQUEUED", "REQUEUE_FED", "REQUEUE_HOLD", "RESIZING", "SUSPENDED",
                 "CONFIGURING", "COMPLETING", "STAGE_OUT", "SIGNALING", "RESV_DEL_HOLD", "SPECIAL_EXIT"}


# --------------------------------------------------------------------------------------------------
# What a point's job runs
# --------------------------------------------------------------------------------------------------
@dataclass(kw_only=True)
class Step:
    """One command of a point: `specframe train ...` or `specframe eval ...`."""

    kind: str
    """'train' or 'eval' (names the timing entry: train_attempts / eval_attempts)."""
    argv: list[str]
    log: Path
    done_marker: Path | None = None
    """Skip the step when this file exists (a requeued job does not retrain a finished point)."""


def _submitit_checkpointable() -> type:
    try:
        from submitit.helpers import Checkpointable
    except ImportError:  # the local launcher works without submitit
        return object
    return Checkpointable


@dataclass(kw_only=True)
class PointJob(_submitit_checkpointable()):  # type: ignore[misc]
    """A point's work as one picklable callable: its steps in order, each a subprocess with its output appended
    to the step's log, and their wall times recorded in `<point>/timing.json` (the sweep's results read it).

    Requeue-safe: submitit calls `checkpoint()` on timeout or preemption and resubmits this same object; the
    train step then resumes from last.ckpt (`run.resume=true`) and a finished step is skipped.
    """

    name: str
    output_dir: Path
    steps: list[Step]
    env: dict[str, str] = field(default_factory=dict)
    """Extra environment for the steps (thread counts)."""

    def __call__(self) -> bool:
        env = {**os.environ, **self.env}
        # Inside a one-task Slurm job Lightning would take the job for an `srun` launch of all its ranks and
        # refuse devices > 1; a point's `specframe train` starts its own ranks instead (Lightning's documented
        # switch: a SLURM job named 'interactive'). Multi-node training: docs/scaling.md, sbatch + srun.
        if "SLURM_JOB_ID" in env:
            env["SLURM_JOB_NAME"] = "interactive"
        self.output_dir.mkdir(parents=True, exist_ok=True)
        for step in self.steps:
            if step.done_marker is not None and step.done_marker.is_file():
                continue
            t0 = time.time()
            rc = run_logged(step.argv, step.log, env)
            record_attempt(self.output_dir, step.kind, time.time() - t0, rc)
            if rc != 0 or (step.done_marker is not None and not step.done_marker.is_file()):
                return False
        return True


def run_logged(argv: list[str], log: Path, env: dict[str, str]) -> int:
    """Run one command with its output appended to `log`; returns the exit code."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "a") as f:
        f.write(f"\n$ {' '.join(argv)}\n")
        f.flush()
        return subprocess.run(argv, stdout=f, stderr=subprocess.STDOUT, env=env).returncode


def record_attempt(point_dir: Path, kind: str, seconds: float, returncode: int) -> None:
    """Append one attempt to <point>/timing.json (the format tools/sweep.py's results read)."""
    path = point_dir / "timing.json"
    try:
        timing = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        timing = {}
    for k in ("train_attempts", "eval_attempts"):
        timing.setdefault(k, [])
    timing[f"{kind}_attempts"].append({"seconds": round(seconds, 3), "returncode": returncode,
                                       "finished_at": time.strftime("%Y-%m-%dT%H:%M:%S")})
    timing["train_wall_s"] = round(sum(a["seconds"] for a in timing["train_attempts"]), 3)
    timing["eval_wall_s"] = round(sum(a["seconds"] for a in timing["eval_attempts"]), 3)
    write_json(path, timing)


# --------------------------------------------------------------------------------------------------
# Settings: the grid file's `launcher:` section, then command-line flags
# --------------------------------------------------------------------------------------------------
@dataclass(kw_only=True)
class SubmititSettings:
    cluster: str = "slurm"
    partition: str | None = None
    gpus_per_point: int = 1
    cpus_per_point: int | None = None
    time_min: int = 60
    mem_gb: int | None = None
    sbatch: dict[str, str] = field(default_factory=dict)
    """Extra sbatch options, e.g. {account: proj, qos: high, constraint: h100} (submitit's additional parameters)."""
    array_parallelism: int = 64
    """At most this many points of one array run at once."""
    wait: bool = True
    """Wait for the jobs and write the results table; false: submit and return (re-run later to collect)."""
    poll_s: float | None = None
    """Seconds between state checks while waiting (default: 30 on Slurm, 2 for local processes)."""

    def parameters(self) -> dict[str, Any]:
        """submitit.AutoExecutor.update_parameters(...) for this cluster."""
        p: dict[str, Any] = {"timeout_min": self.time_min, "tasks_per_node": 1, "nodes": 1}
        if self.cluster == "slurm":
            p["gpus_per_node"] = self.gpus_per_point
            p["slurm_array_parallelism"] = self.array_parallelism
            if self.partition:
                p["slurm_partition"] = self.partition
            if self.mem_gb is not None:
                p["mem_gb"] = self.mem_gb
            if self.cpus_per_point is not None:
                p["cpus_per_task"] = self.cpus_per_point
            if self.sbatch:
                p["slurm_additional_parameters"] = dict(self.sbatch)
        return p


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The launcher flags of tools/sweep.py (each overrides the grid file's `launcher:` key of the same name)."""
    g = parser.add_argument_group("launcher (docs/sweeps.md: Slurm)")
    g.add_argument("--launcher", choices=("local", "submitit"), default="local",
                   help="local: subprocesses on this machine (default); submitit: one job per point")
    g.add_argument("--cluster", choices=CLUSTERS, help="submitit executor (default slurm; local: test stand-in)")
    g.add_argument("--partition", help="Slurm partition")
    g.add_argument("--gpus-per-point", type=int, help="GPUs of each point's job (default 1)")
    g.add_argument("--cpus-per-point", type=int, help="CPUs of each point's job")
    g.add_argument("--time-min", type=int, help="time limit of each job in minutes (default 60; requeued at it)")
    g.add_argument("--mem-gb", type=int, help="host memory of each job")
    g.add_argument("--sbatch", action="append", default=[], metavar="KEY=VALUE",
                   help="extra sbatch option (repeatable), e.g. --sbatch account=proj --sbatch qos=high")
    g.add_argument("--no-wait", action="store_true", help="submit and return; re-run the command to collect")


def settings(section: dict[str, Any] | None, args: argparse.Namespace | None = None) -> SubmititSettings:
    """Grid `launcher:` section + flags -> settings; every bad key or value is reported at once."""
    section = dict(section or {})
    issues = [f"launcher: unknown key '{k}'{did_you_mean(k, sorted(LAUNCHER_KEYS))}. Allowed: {sorted(LAUNCHER_KEYS)}"
              for k in section if k not in LAUNCHER_KEYS]
    if args is not None:
        for key in ("cluster", "partition", "gpus_per_point", "cpus_per_point", "time_min", "mem_gb"):
            if getattr(args, key, None) is not None:
                section[key] = getattr(args, key)
        extra = dict(section.get("sbatch") or {})
        for item in getattr(args, "sbatch", []) or []:
            key, sep, value = item.partition("=")
            if not sep or not key:
                issues.append(f"--sbatch {item!r}: expected KEY=VALUE, e.g. account=myproject")
            extra[key.lstrip("-")] = value
        if extra:
            section["sbatch"] = extra
        if getattr(args, "no_wait", False):
            section["wait"] = False
    s = SubmititSettings()
    for key, value in section.items():
        if key in LAUNCHER_KEYS:
            setattr(s, key, value)
    if s.cluster not in CLUSTERS:
        issues.append(f"launcher.cluster: {s.cluster!r} is not one of {list(CLUSTERS)}{did_you_mean(str(s.cluster), CLUSTERS)}")
    for key in ("gpus_per_point", "time_min", "array_parallelism"):
        v = getattr(s, key)
        if not isinstance(v, int) or isinstance(v, bool) or v < (0 if key == "gpus_per_point" else 1):
            issues.append(f"launcher.{key}: expected a positive integer, got {v!r}")
    for key in ("mem_gb", "cpus_per_point"):
        v = getattr(s, key)
        if v is not None and (not isinstance(v, int) or isinstance(v, bool) or v < 1):
            issues.append(f"launcher.{key}: expected a positive integer, got {v!r}")
    if not isinstance(s.sbatch, dict):
        issues.append(f"launcher.sbatch: expected a mapping of sbatch options, got {s.sbatch!r}")
    if issues:
        raise ConfigError(issues)
    return s


# --------------------------------------------------------------------------------------------------
# Job records and their state
# --------------------------------------------------------------------------------------------------
def read_record(point_dir: Path) -> dict[str, Any] | None:
    try:
        rec = json.loads((point_dir / JOB_RECORD).read_text())
    except (OSError, json.JSONDecodeError):
        return None
    return rec if isinstance(rec, dict) and "job_id" in rec else None


def write_record(point_dir: Path, job_id: str, cluster: str, folder: Path) -> None:
    point_dir.mkdir(parents=True, exist_ok=True)
    write_json(point_dir / JOB_RECORD, {"job_id": str(job_id), "cluster": cluster, "folder": str(folder),
                                         "submitted_at": time.time()})


def pid_exists(pid: str | int) -> bool:
    """Is there a process with this pid on this machine (one owned by another user counts)?"""
    try:
        os.kill(int(pid), 0)
    except (ProcessLookupError, ValueError):
        return False
    except PermissionError:
        return True
    return True


def _local_alive(pid: str) -> bool:
    """A local submitit job is its controller process (`python -m submitit.local._local FOLDER`), pid = job id."""
    if not pid_exists(pid):
        return False
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return True  # no /proc: the pid exists, assume it is ours
    if b"submitit" not in cmdline:
        return False  # the pid was reused by something else
    try:  # a finished controller that nobody reaped is a zombie: not running
        return Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0] != "Z"
    except OSError:
        return True


def job_state(record: dict[str, Any]) -> str:
    """The executor's state of a recorded job, upper-case ('RUNNING', 'PENDING', 'COMPLETED', 'FAILED', ...)."""
    cluster, job_id = record.get("cluster"), str(record.get("job_id"))
    if cluster == "local":
        return "RUNNING" if _local_alive(job_id) else "FINISHED"
    if cluster == "slurm":
        import submitit

        state = str(submitit.SlurmJob(folder=record["folder"], job_id=job_id).state).upper()
        # sacct may not know a job for a few seconds after sbatch: a fresh record counts as pending
        if state in ("UNKNOWN", "") and time.time() - float(record.get("submitted_at", 0)) < 300:
            return "PENDING"
        return state
    return "FINISHED"  # debug jobs run inside the launcher's own process


def is_active(record: dict[str, Any] | None) -> bool:
    return record is not None and job_state(record).split()[0] in ACTIVE_STATES


# --------------------------------------------------------------------------------------------------
# Launching
# --------------------------------------------------------------------------------------------------
class Launcher(Protocol):
    def launch(self, waves: Sequence[Sequence[PointJob]], log: Callable[[str], None]) -> list[str]:
        """Run the jobs, wave after wave (a later wave needs an earlier one's checkpoints); the failed names."""
        ...


@dataclass
class SubmititLauncher:
    """One submitit job per point, one job array per wave; never a second job for a point whose job is active."""

    settings: SubmititSettings
    folder: Path
    """submitit's folder (pickled jobs, stdout/stderr per job): <sweep_dir>/.submitit."""
    is_done: Callable[[str], bool] = lambda name: False
    """Whether a point is finished (its summary / eval JSON exist): asked after its job ends."""

    def executor(self) -> Any:
        import submitit

        ex = submitit.AutoExecutor(folder=str(self.folder / "%j"), cluster=self.settings.cluster)
        ex.update_parameters(**self.settings.parameters())
        return ex

    def launch(self, waves: Sequence[Sequence[PointJob]], log: Callable[[str], None] = print) -> list[str]:
        failed: list[str] = []
        for i, wave in enumerate(w for w in waves if w):
            running = [j for j in wave if is_active(read_record(j.output_dir))]
            for j in running:
                rec = read_record(j.output_dir) or {}
                log(f"{j.name}: job {rec.get('job_id')} is {job_state(rec).lower()}: not resubmitted")
            todo = [j for j in wave if j not in running]
            jobs = self.submit(todo, log) if todo else []
            if not self.settings.wait:
                if i == 0 and len([w for w in waves if w]) > 1:
                    log("later points evaluate this wave's checkpoints: re-run the command once it has finished")
                return []
            failed += self.wait_for(wave, jobs, log)
        return failed

    def submit(self, todo: Sequence[PointJob], log: Callable[[str], None]) -> list[tuple[PointJob, Any]]:
        ex = self.executor()
        handles = []
        with ex.batch():  # one Slurm job array
            for j in todo:
                handles.append((j, ex.submit(j)))
        for j, h in handles:
            write_record(j.output_dir, h.job_id, self.settings.cluster, self.folder)
            log(f"{j.name}: submitted as job {h.job_id} ({self.settings.cluster})")
        return handles

    def wait_for(self, wave: Sequence[PointJob], jobs: list[tuple[PointJob, Any]],
                 log: Callable[[str], None]) -> list[str]:
        """Poll every point of the wave until its job is no longer active; jobs of this session by their handle,
        earlier sessions' jobs by their record. Returns the points that ended unfinished."""
        handles = {j.name: h for j, h in jobs}
        pending = list(wave)
        while pending:
            still = []
            for j in pending:
                h = handles.get(j.name)
                if h is not None and self.settings.cluster == "debug":
                    try:  # a debug job runs here, in this process, when its result is asked for
                        h.result()
                    except Exception as e:  # noqa: BLE001  (the point failed: reported below)
                        log(f"{j.name}: {type(e).__name__}: {e}")
                    active = False
                elif h is not None and self.settings.cluster == "local":
                    active = not h.done()
                else:  # Slurm, and jobs submitted by an earlier run of the command: ask by job id
                    active = is_active(read_record(j.output_dir))
                if active:
                    still.append(j)
            if still and still != pending:
                log(f"{len(pending) - len(still)} job(s) ended, {len(still)} still running")
            pending = still
            if pending:
                time.sleep(self.settings.poll_s or (30.0 if self.settings.cluster == "slurm" else 2.0))
        failed = [j.name for j in wave if not self.is_done(j.name)]
        for name in failed:
            log(f"{name}: FAILED, see its train.log / eval.log and {self.folder}/<job id>/")
        return failed
