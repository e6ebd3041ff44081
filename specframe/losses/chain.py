"""Chain loss: a differentiable surrogate of the expected accepted length."""
from __future__ import annotations

from typing import ClassVar

import torch
from torch import Tensor

from specframe.interfaces import LossValue, SlotChunk
from specframe.losses import LOSS_TERMS


def expected_streak(label_logp: Tensor, mask: Tensor) -> Tensor:
    """[n] sum over k of prod_{j<=k} p_j, the product stopping at the first unsupervised slot.

    This is the expected accepted length if slot j were accepted independently with probability p_j.
    """
    lp = label_logp.masked_fill(~mask, float("-inf"))
    return torch.exp(torch.cumsum(lp, dim=1)).sum(dim=1)


@LOSS_TERMS.register("chain")
class ChainLoss:
    """Chain loss -R, R = 1/(B-1) sum_k prod_{j<=k} p_j, averaged over valid blocks; the weight is alpha_c."""

    requires: ClassVar[frozenset[str]] = frozenset()

    def __call__(self, chunk: SlotChunk) -> LossValue:
        R = expected_streak(chunk.label_logp, chunk.mask) / chunk.mask.shape[1]
        valid = chunk.block_valid & chunk.mask.any(dim=1)
        return LossValue(-(R * valid).sum(), valid.sum().float())
