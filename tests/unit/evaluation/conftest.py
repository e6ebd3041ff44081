"""Fixtures for evaluation tests: the tiny target with varied greedy output and drafters, shared with the
decoding tests (tests/unit/decoding/decoding_setup.py)."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "decoding"))

from decoding_setup import fitted_drafter, one_thread, prompts, references, target  # noqa: E402,F401


@pytest.fixture
def routed_kernels(monkeypatch) -> list[tuple]:
    """The module tuples each decoding hands to `small_batch_linears` (recorded; the kernel still runs)."""
    import specframe.decoding.engine as engine

    routed: list[tuple] = []
    real = engine.small_batch_linears
    monkeypatch.setattr(engine, "small_batch_linears", lambda *modules: routed.append(modules) or real(*modules))
    return routed
