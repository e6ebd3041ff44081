"""Position-uniform cross-entropy: the baseline every paper compares against."""
from __future__ import annotations

from typing import ClassVar

from specframe.interfaces import LossValue, SlotChunk
from specframe.losses.registry import LOSS_TERMS


def learnable(chunk: SlotChunk):
    """[n, K-1] bool, supervised slots of real blocks whose label the drafter can produce (in its vocabulary)."""
    return chunk.mask & (chunk.labels >= 0) & chunk.block_valid.unsqueeze(-1)  # padding blocks get no loss


@LOSS_TERMS.register("ce")
class CrossEntropyLoss:
    """Position-uniform cross-entropy: mean over supervised slots of -log p_k."""

    requires: ClassVar[frozenset[str]] = frozenset()

    def __call__(self, chunk: SlotChunk) -> LossValue:
        m = learnable(chunk)
        nll = -chunk.label_logp.masked_fill(~m, 0.0)
        return LossValue(nll.sum(), m.sum().float())
