"""specframe/atomic_files.py: a file is whole under its final name or absent, never half-written."""
from __future__ import annotations

import json

import pytest

from specframe.atomic_files import atomic_path, write_json, write_text


def test_write_json_and_text(tmp_path) -> None:
    path = write_json(tmp_path / "deep" / "a.json", {"x": [1, 2]})
    assert json.loads(path.read_text()) == {"x": [1, 2]}
    write_text(tmp_path / "b.md", "hello")
    assert (tmp_path / "b.md").read_text() == "hello"
    assert not list(tmp_path.rglob("*.tmp"))


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path) -> None:
    path = tmp_path / "summary.json"
    write_json(path, {"old": True})
    with pytest.raises(RuntimeError):
        with atomic_path(path) as tmp:
            tmp.write_text('{"new": ')  # half a file
            raise RuntimeError("killed mid-write")
    assert json.loads(path.read_text()) == {"old": True}
    assert not list(tmp_path.glob("*.tmp"))
    with pytest.raises(KeyboardInterrupt):
        with atomic_path(tmp_path / "fresh.json") as tmp:
            tmp.write_text("{")
            raise KeyboardInterrupt
    assert not (tmp_path / "fresh.json").exists()


def test_a_file_created_private_gets_the_usual_permissions(tmp_path) -> None:
    """safetensors writes 0600 files: an exported drafter must be readable by the serving engine's user."""
    import os
    import stat

    from specframe.atomic_files import atomic_path

    mask = os.umask(0o022)
    try:
        with atomic_path(tmp_path / "model.safetensors") as tmp:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT, 0o600)
            os.close(fd)
    finally:
        os.umask(mask)
    assert stat.S_IMODE((tmp_path / "model.safetensors").stat().st_mode) == 0o644
