"""First-error focal loss: concentrate on the slot where the accepted prefix ends."""
from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import Tensor

from specframe.interfaces import LossValue, SlotChunk
from specframe.losses.registry import LOSS_TERMS


@dataclass(kw_only=True)
class FocalConfig:
    phi: float = 0.0
    """Focusing exponent of (1 - p_j*)^phi; the paper's value is unstated, 0 gives plain CE at j*."""

    def __post_init__(self) -> None:
        if self.phi < 0:
            raise ValueError(f"phi must be >= 0, got {self.phi}")


def first_error(chunk: SlotChunk) -> tuple[Tensor, Tensor]:
    """Index j* [n] of the first wrong slot inside each block's supervised prefix, and whether one exists [n].

    Chosen from the argmax of the same forward, without gradient. Slots after the first unsupervised slot are
    outside the prefix the target could accept, so they never hold j*.
    """
    with torch.no_grad():
        in_prefix = torch.cumprod(chunk.mask.long(), dim=1).bool()
        wrong = in_prefix & ~chunk.correct
        has = wrong.any(dim=1) & chunk.block_valid
        j = wrong.long().argmax(dim=1)  # first True (argmax returns the first maximum)
    return j, has


@LOSS_TERMS.register("first_error_focal", config=FocalConfig)
class FirstErrorFocalLoss:
    """Focal CE at the first mismatched slot of each block: mean over blocks with an error of (1-p)^phi (-log p)."""

    requires: ClassVar[frozenset[str]] = frozenset()

    def __init__(self, cfg: FocalConfig):
        self.cfg = cfg

    def __call__(self, chunk: SlotChunk) -> LossValue:
        j, has = first_error(chunk)
        lp = chunk.label_logp.gather(1, j.unsqueeze(1)).squeeze(1)
        has = has & torch.isfinite(lp)  # a label outside a reduced draft vocabulary cannot be learned
        lp = lp.masked_fill(~has, 0.0)
        term = -lp
        if self.cfg.phi:
            term = (1 - lp.exp()).clamp(min=0).pow(self.cfg.phi) * term
        return LossValue((term * has).sum(), has.sum().float())
