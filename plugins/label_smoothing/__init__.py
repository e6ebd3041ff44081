"""Plugin: label-smoothed cross-entropy as a loss term (the worked example of docs/extending.md).

    specframe validate recipes/plugins/smollm2_label_smoothing.yaml
    specframe list losses --plugin plugins.label_smoothing

Importing this module registers `label_smoothed_ce`. Everything a loss term needs comes from the public API:
the registry (`specframe.losses.LOSS_TERMS`), the chunk it receives (`SlotChunk`) and the value it returns
(`LossValue`: numerator and denominator, summed over chunks and divided once over the global batch).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from specframe.interfaces import LossValue, SlotChunk
from specframe.losses import LOSS_TERMS


@dataclass(kw_only=True)
class LabelSmoothingConfig:
    smoothing: float = 0.1
    """ε: the target is (1 - ε) on the label plus ε spread uniformly over the drafter's vocabulary."""

    def __post_init__(self) -> None:
        if not 0.0 <= self.smoothing < 1.0:
            raise ValueError(f"smoothing must be in [0, 1), got {self.smoothing}")


@LOSS_TERMS.register("label_smoothed_ce", config=LabelSmoothingConfig)
class LabelSmoothedCrossEntropyLoss:
    """Label-smoothed CE: (1-ε)(-log q_label) + ε mean_v(-log q_v), mean over supervised slots."""

    requires: ClassVar[frozenset[str]] = frozenset()  # nothing beyond the drafter's logits and the labels

    def __init__(self, cfg: LabelSmoothingConfig):
        self.cfg = cfg

    def __call__(self, chunk: SlotChunk) -> LossValue:
        # A slot counts when it is supervised, in a real (non-padding) block, and its label is in the drafter's
        # vocabulary (labels < 0 are not).
        m = chunk.mask & (chunk.labels >= 0) & chunk.block_valid.unsqueeze(-1)
        nll = -chunk.label_logp.masked_fill(~m, 0.0)  # [n, K-1]
        uniform = -chunk.log_probs.mean(dim=-1)  # [n, K-1] cross-entropy against the uniform distribution
        eps = self.cfg.smoothing
        per_slot = ((1 - eps) * nll + eps * uniform).masked_fill(~m, 0.0)
        # Numerator and denominator, not a mean: the objective sums both over chunks and ranks before dividing.
        return LossValue(per_slot.sum(), m.sum().float())
