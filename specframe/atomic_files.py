"""One way to write a file so that it is either whole under its final name or absent.

Every file a reader trusts by its presence goes through `atomic_path`: run summaries, resolved recipes, eval
reports, a cache's plan and manifest, the shards of a features cache and of a regenerated dataset (which is
what makes both resumable: a finished shard is skipped, a half-written one never carries the final name).
"""
from __future__ import annotations

import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside `path`; on success rename it to `path`, on an exception delete it.

    The temporary name is `<name>.tmp` in the same folder (a rename within one filesystem is atomic); one left
    by a killed process is overwritten by the next attempt.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.name}.tmp")
    try:
        yield tmp
        if tmp.is_file():  # some writers (safetensors) create 0600 files: give the usual permissions
            os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def write_text(path: str | Path, text: str) -> Path:
    """Write `text` to `path` atomically; returns the path."""
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return Path(path)


def write_json(path: str | Path, data: Any, *, ensure_ascii: bool = True) -> Path:
    """Write `data` as indented JSON (with a final newline) to `path` atomically; returns the path."""
    return write_text(path, json.dumps(data, indent=2, ensure_ascii=ensure_ascii) + "\n")
