"""Sizes and builders shared by the decoding and evaluation tests (imported by name: test folders are not packages)."""
from __future__ import annotations

from contextlib import contextmanager

import torch
import torch.nn.functional as F

from specframe.drafters import DRAFTERS

BLOCK = 4
NEW_TOKENS = 24
QUESTIONS = ["Hello there", "What is 2+2?", "Tell me a joke about cats."]


def make_drafter(target, block_size: int = BLOCK, seed: int = 0, **options):
    """An untrained block-diffusion drafter for `target`, deterministic in `seed`."""
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        return DRAFTERS.build("block_diffusion", {"block_size": block_size, **options}, spec=target.spec).eval()


@contextmanager
def single_thread():
    """Tiny models run fastest on one thread; two threads fight over shared cores."""
    saved = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(saved)


def fit_drafter(drafter, target, prompts, references, steps: int = 60):
    """Overfit `drafter` on anchors in the first half of each greedy continuation (`references`): it then drafts
    that half right (multi-token acceptance) and the rest mostly wrong. Returns it frozen, in eval mode."""
    drafter.train()
    opt = torch.optim.Adam(drafter.parameters(), lr=3e-3)
    data = []
    row = drafter.mask_token_id  # a frozen row of the target's table (None: a learned vector), as in training
    mask = None if row is None else target.embed(torch.tensor(row))
    for p, ref in zip(prompts, references):
        ids = torch.tensor([p + ref])
        hidden = target(ids, torch.ones_like(ids)).hidden
        anchors = torch.arange(len(p), len(p) + NEW_TOKENS // 2).unsqueeze(0)
        labels = ids[0, anchors[0].unsqueeze(1) + torch.arange(1, BLOCK)]
        data.append((ids, hidden, anchors, labels))
    with torch.random.fork_rng():
        torch.manual_seed(0)
        for _ in range(steps):
            loss = 0.0
            for ids, hidden, anchors, labels in data:
                valid = torch.ones(ids.shape, dtype=torch.bool)
                ones = torch.ones(anchors.shape, dtype=torch.bool)
                h = drafter(hidden, valid, target.embed(ids.gather(1, anchors)), anchors, ones, mask)
                logits = F.linear(h[0, :, 1:], target.lm_head_weight)
                loss = loss + F.cross_entropy(logits.reshape(-1, logits.shape[-1]), labels.reshape(-1))
            opt.zero_grad()
            loss.backward()
            opt.step()
    return drafter.eval().requires_grad_(False)


# -- fixtures shared by tests/unit/decoding and tests/unit/evaluation (re-exported by their conftests) ------
import pytest  # noqa: E402

from specframe.data.chat import render_prompt  # noqa: E402
from specframe.decoding.engine import target_only_decode  # noqa: E402
from specframe.targets import TARGETS  # noqa: E402


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
def fitted_drafter(target, prompts, references):
    """A drafter overfit on anchors in the first half of each greedy continuation: it drafts that half right
    (multi-token acceptance) and the rest mostly wrong."""
    with single_thread():
        # A learned mask vector: 60 steps fit it to tau ~1.9 here; the tiny target's frozen row reaches ~1.4 only.
        # (The random drafter keeps the default frozen row, so decoding covers both.)
        return fit_drafter(make_drafter(target, mask_token="learned"), target, prompts, references)
