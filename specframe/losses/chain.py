"""Chain loss: a differentiable surrogate of the expected accepted length (the paper's third term).

It is the `block_size`-normalised member of the expected-streak family (specframe/losses/streak.py): -E/(B-1)
with acceptance = the drafter's probability of the label, nothing detached, no smoothing.
"""
from __future__ import annotations

from typing import ClassVar

from specframe.interfaces import LossValue, SlotChunk
from specframe.losses.registry import LOSS_TERMS
from specframe.losses.streak import StreakSetting, expected_streak_loss


@LOSS_TERMS.register("chain")
class ChainLoss:
    """Chain loss -R, R = 1/(B-1) sum_k prod_{j<=k} p_j, averaged over valid blocks; the weight is alpha_c."""

    requires: ClassVar[frozenset[str]] = frozenset()
    setting: ClassVar[StreakSetting] = StreakSetting(acceptance="label_prob", detach_weights=False, smoothing=0.0,
                                                     normalisation="block_size")

    def __call__(self, chunk: SlotChunk) -> LossValue:
        return expected_streak_loss(chunk, self.setting)
