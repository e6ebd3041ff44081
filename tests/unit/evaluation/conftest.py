"""Fixtures for evaluation tests: the tiny target with varied greedy output and drafters, shared with the
decoding tests (tests/unit/decoding/decoding_setup.py)."""
from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "decoding"))

from decoding_setup import fitted_drafter, one_thread, prompts, references, target  # noqa: E402,F401
