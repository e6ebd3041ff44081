"""Plugin: the drafter's predictive entropy as a loss term (a second, minimal plugin example).

    # in a recipe (run from the repository root):
    plugins: [plugins.entropy_penalty]
    loss:
      - {name: ce, weight: 1.0}
      - {name: entropy_penalty, weight: 0.01}

The term's value is the mean entropy H(q) of the drafter's slot distributions over supervised slots. A positive
weight sharpens the drafter (penalises entropy); a negative weight is the confidence penalty of Pereyra et al.
(2017), which keeps the drafter from collapsing onto one token.
"""
from __future__ import annotations

from typing import ClassVar

from specframe.interfaces import LossValue, SlotChunk
from specframe.losses import LOSS_TERMS


@LOSS_TERMS.register("entropy_penalty")
class EntropyPenaltyLoss:
    """Mean entropy H(q) of the drafter's distribution over supervised slots (weight > 0 sharpens, < 0 flattens)."""

    requires: ClassVar[frozenset[str]] = frozenset()

    def __call__(self, chunk: SlotChunk) -> LossValue:
        m = chunk.mask & chunk.block_valid.unsqueeze(-1)
        logq = chunk.log_probs
        entropy = -(logq.exp() * logq).sum(-1).masked_fill(~m, 0.0)  # [n, K-1]
        return LossValue(entropy.sum(), m.sum().float())
