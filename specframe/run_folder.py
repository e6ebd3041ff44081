"""A run folder belongs to one recipe and has one writer.

    with claim_run_folder(recipe) as folder:   # refuses a changed recipe or a second writer, before any write
        ...train...
        folder.succeeded()                       # else a folder this run created is removed, or marked failed

* **One recipe.** Resuming a folder whose `recipe.resolved.yaml` differs from the new recipe in any key outside
  `RESUMABLE_KEYS` is refused, naming every differing key, before anything in the folder is touched.
* **One writer.** `<folder>/.lock` is held with an OS file lock (`fcntl.flock`) for the whole run: the kernel
  releases it when the owner exits, however it exits (kill -9 included), so a lock left by a dead process is
  stale by construction and the next run takes it. A second writer gets an error naming the owner's pid.
* **No complete-looking failures.** A run that fails before its first checkpoint removes the folder it created
  (only what it created); otherwise it writes `failed.json` (error, time), which the next success removes.
  `summary.json` is written only by a run that finished.

Only the process of global rank 0 claims the folder: under data parallelism the other ranks run the same
command and write nothing here.
"""
from __future__ import annotations

import datetime
import fcntl
import json
import os
import shutil
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import yaml

from specframe.errors import RunError

RESUMABLE_KEYS: tuple[str, ...] = (
    "run.name", "run.output_dir", "run.resume",
    "run.wandb", "run.wandb_project", "run.wandb_mode", "run.wandb_group",
    "trainer.max_steps", "trainer.progress_bar", "trainer.log_every_n_steps", "trainer.save_every_n_steps",
    "trainer.val_every_n_steps", "data.num_workers",
    "eval",
)
"""The ONE list of recipe keys that may differ when a run folder is resumed (a section name allows all its keys).
Everything else (model, data, loss, optimiser, precision, seeds, ...) changes what the checkpoint means."""

RESOLVED_RECIPE = "recipe.resolved.yaml"
FAILED = "failed.json"
LOCK = ".lock"
# Files whose presence means the folder holds results of a run (a bare recipe.resolved.yaml does not).
_RESULTS = ("checkpoints", "tau_before.json", "summary.json", "logs")


def is_rank_zero() -> bool:
    """True in the process that owns the run folder (global rank 0, or the only process)."""
    return all(int(os.environ.get(k, 0) or 0) == 0 for k in ("RANK", "LOCAL_RANK", "NODE_RANK"))


def flatten(d: Any, prefix: str = "") -> dict[str, Any]:
    """{'a': {'b': 1}, 'l': [{'x': 2}]} -> {'a.b': 1, 'l.0.x': 2} (leaves only; empty containers kept)."""
    if isinstance(d, dict) and d:
        return {k: v for key, val in d.items() for k, v in flatten(val, f"{prefix}{key}.").items()}
    if isinstance(d, list) and d:
        return {k: v for i, val in enumerate(d) for k, v in flatten(val, f"{prefix}{i}.").items()}
    return {prefix[:-1]: d}


def _resumable(key: str) -> bool:
    return any(key == k or key.startswith(k + ".") for k in RESUMABLE_KEYS)


def recipe_differences(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """Keys outside RESUMABLE_KEYS whose values differ, as 'key: old -> new' lines (sorted)."""
    a = {k: v for k, v in flatten({k: v for k, v in old.items() if not k.startswith("_")}).items()
         if not _resumable(k)}
    b = {k: v for k, v in flatten(new).items() if not _resumable(k)}
    missing = object()
    return [f"{k}: {a.get(k, '(unset)')!r} -> {b.get(k, '(unset)')!r}" for k in sorted(set(a) | set(b))
            if a.get(k, missing) != b.get(k, missing)]


def holds_results(folder: Path) -> bool:
    return any((folder / name).exists() for name in _RESULTS)


def check_same_recipe(folder: Path, resolved: dict[str, Any]) -> None:
    """Refuse to reuse a folder that holds another recipe's results (reads only safe YAML)."""
    saved = folder / RESOLVED_RECIPE
    if not holds_results(folder):
        return
    if not saved.is_file():
        raise RunError(f"{folder} holds results (checkpoints, logs or summary) but no {RESOLVED_RECIPE}: it is not "
                       "a specframe run folder this run can safely reuse. Pick another run.output_dir.")
    try:
        old = yaml.safe_load(saved.read_text()) or {}
    except yaml.YAMLError as e:
        raise RunError(f"{saved}: cannot be read ({str(e).splitlines()[0]}); pick another run.output_dir") from None
    diffs = recipe_differences(old if isinstance(old, dict) else {}, resolved)
    if diffs:
        shown = "; ".join(diffs[:12]) + (f"; ... ({len(diffs) - 12} more)" if len(diffs) > 12 else "")
        raise RunError(f"{folder} was trained with another recipe; {len(diffs)} key(s) differ: {shown}. "
                       f"Only these may change on resume: {', '.join(RESUMABLE_KEYS)}. Nothing was changed in the "
                       "folder: train into a new run.output_dir, or delete the folder to start over.")


class RunFolder:
    """A claimed run folder (see the module docstring)."""

    def __init__(self, path: Path, created: bool, owner: bool = True) -> None:
        self.path = path
        self.created = created
        self.owner = owner  # False on ranks > 0: they neither mark nor clean the folder
        self._ok = False
        self._touched = False

    def touch(self) -> None:
        """From here on a failure marks (or, if this run created it, removes) the folder."""
        self._touched = True

    def succeeded(self) -> None:
        self._ok = True
        if self.owner:
            (self.path / FAILED).unlink(missing_ok=True)

    def _failed(self, error: BaseException) -> None:
        if not self._touched and not self.created:
            return  # refused before writing anything: the folder stays exactly as it was
        if self.created and not (self.path / "checkpoints").exists():
            shutil.rmtree(self.path, ignore_errors=True)  # nothing worth keeping, and nothing that was there before
            return
        try:
            (self.path / FAILED).write_text(json.dumps({
                "error": f"{type(error).__name__}: {str(error).strip().splitlines()[0] if str(error).strip() else ''}",
                "failed_at": datetime.datetime.now().isoformat(timespec="seconds")}, indent=2))
        except OSError:
            pass


def _lock_owner(lock_path: Path) -> str:
    try:
        info = json.loads(lock_path.read_text() or "{}")
        return f"pid {info.get('pid')} on {info.get('host')}, since {info.get('since')}"
    except (OSError, ValueError):
        return "another process"


@contextmanager
def claim_run_folder(path: Path, resolved: dict[str, Any]) -> Iterator[RunFolder]:
    """Check the recipe, take the lock, and on failure leave nothing that looks complete (rank 0 only)."""
    path = Path(path)
    if not is_rank_zero():
        yield RunFolder(path, created=False, owner=False)
        return
    created = not path.exists()
    if not created:
        check_same_recipe(path, resolved)  # before the lock file: a refused run writes nothing at all
    path.mkdir(parents=True, exist_ok=True)
    lock_path = path / LOCK
    handle = open(lock_path, "a+")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.close()
        raise RunError(f"{path} is being written by {_lock_owner(lock_path)}: one writer per run folder. Wait for "
                       "it to finish or stop it (its lock is released as soon as it exits).") from None
    handle.seek(0)
    handle.truncate()
    handle.write(json.dumps({"pid": os.getpid(), "host": socket.gethostname(),
                             "since": datetime.datetime.now().isoformat(timespec="seconds")}))
    handle.flush()
    folder = RunFolder(path, created)
    try:
        if not created:  # checked again under the lock: another writer may have finished in between
            check_same_recipe(path, resolved)
        yield folder
    except BaseException as e:
        if not folder._ok:
            folder._failed(e)
        raise
    finally:
        # The lock file stays (deleting it would let a waiting process lock an unlinked inode); the lock goes.
        fcntl.flock(handle, fcntl.LOCK_UN)
        handle.close()
