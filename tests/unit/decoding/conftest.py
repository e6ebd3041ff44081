"""Fixtures for decoding tests: a tiny target whose greedy output varies, prompts, and drafters that are
random, partly right (overfit to the first half of each greedy continuation) or always right (the oracle).
The shared ones live in decoding_setup.py, which tests/unit/evaluation uses too."""
from __future__ import annotations

import pytest

from decoding_setup import fitted_drafter, make_drafter, one_thread, prompts, references, target  # noqa: F401


@pytest.fixture(scope="session")
def random_drafter(target):
    return make_drafter(target)
