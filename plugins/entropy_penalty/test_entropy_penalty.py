"""Tests of the entropy-penalty plugin against closed forms."""
from __future__ import annotations

import math

import pytest
import torch

import plugins.entropy_penalty  # noqa: F401  (registers entropy_penalty)
from specframe.interfaces import SlotChunk
from specframe.losses import LOSS_TERMS


def test_uniform_and_one_hot_have_the_closed_form_entropies():
    V = 7
    logits = torch.zeros(1, 3, V)
    logits[0, 1, 2] = 1e4  # one-hot: entropy 0
    chunk = SlotChunk(logits=logits, labels=torch.zeros(1, 3, dtype=torch.long),
                      mask=torch.tensor([[True, True, False]]), block_valid=torch.tensor([True]))
    v = LOSS_TERMS.build("entropy_penalty", {})(chunk)
    assert float(v.denominator) == 2
    assert float(v.numerator) == pytest.approx(math.log(V), rel=1e-5)


def test_gradient_descent_lowers_the_entropy():
    logits = torch.randn(2, 4, 9, generator=torch.Generator().manual_seed(0)).requires_grad_(True)
    chunk = SlotChunk(logits=logits, labels=torch.zeros(2, 4, dtype=torch.long),
                      mask=torch.ones(2, 4, dtype=torch.bool), block_valid=torch.ones(2, dtype=torch.bool))
    term = LOSS_TERMS.build("entropy_penalty", {})
    v = term(chunk)
    v.numerator.backward()
    with torch.no_grad():
        stepped = logits - 0.5 * logits.grad
    after = term(SlotChunk(logits=stepped, labels=chunk.labels, mask=chunk.mask, block_valid=chunk.block_valid))
    assert float(after.numerator) < float(v.numerator.detach())

