"""Fixtures for decoding tests: a tiny target whose greedy output varies, prompts, and drafters that are
random, partly right (overfit to the first half of each greedy continuation) or always right (the oracle)."""
from __future__ import annotations

import pytest

from specframe.data.chat import render_prompt
from specframe.decoding.engine import target_only_decode
from specframe.targets import TARGETS

from decoding_setup import NEW_TOKENS, QUESTIONS, fit_drafter, make_drafter, single_thread


@pytest.fixture(autouse=True)
def one_thread():
    with single_thread():
        yield


@pytest.fixture(scope="session")
def target():
    """Tiny random target with large initial weights: its greedy output is varied, not one repeated token."""
    return TARGETS.build("tiny", {"initializer_range": 0.3})


@pytest.fixture(scope="session")
def prompts(target):
    return [render_prompt(target.tokenizer, [{"role": "user", "content": q}]) for q in QUESTIONS]


@pytest.fixture(scope="session")
def references(target, prompts):
    """The target's greedy continuation of each prompt (EOS ignored, so it has NEW_TOKENS tokens)."""
    with single_thread():
        return [target_only_decode(target, p, max_new_tokens=NEW_TOKENS, eos_ids=set()).tokens for p in prompts]


@pytest.fixture(scope="session")
def random_drafter(target):
    return make_drafter(target)


@pytest.fixture(scope="session")
def fitted_drafter(target, prompts, references):
    """A drafter overfit on anchors in the first half of each greedy continuation: it drafts that half right
    (multi-token acceptance) and the rest mostly wrong."""
    with single_thread():
        return fit_drafter(make_drafter(target), target, prompts, references)
