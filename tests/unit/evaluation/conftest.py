"""Fixtures for evaluation tests: the tiny target with varied greedy output and drafters, built with the
decoding tests' builders (tests/unit/decoding/decoding_setup.py)."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "decoding"))

from decoding_setup import NEW_TOKENS, QUESTIONS, fit_drafter, make_drafter, single_thread  # noqa: E402

from specframe.data.chat import render_prompt  # noqa: E402
from specframe.decoding.engine import target_only_decode  # noqa: E402
from specframe.targets import TARGETS  # noqa: E402


@pytest.fixture(autouse=True)
def one_thread():
    with single_thread():
        yield


@pytest.fixture(scope="session")
def target():
    return TARGETS.build("tiny", {"initializer_range": 0.3})


@pytest.fixture(scope="session")
def prompts(target):
    return [render_prompt(target.tokenizer, [{"role": "user", "content": q}]) for q in QUESTIONS]


@pytest.fixture(scope="session")
def fitted_drafter(target, prompts):
    with single_thread():
        refs = [target_only_decode(target, p, max_new_tokens=NEW_TOKENS, eos_ids=set()).tokens for p in prompts]
        return fit_drafter(make_drafter(target), target, prompts, refs)
