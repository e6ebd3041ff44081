"""Token positional weighting: early slots matter more, since a mismatch there discards the rest."""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar, Literal

import torch
from torch import Tensor

from specframe.interfaces import LossValue, SlotChunk
from specframe.losses.registry import LOSS_TERMS
from specframe.losses.ce import learnable


@dataclass(kw_only=True)
class PositionalConfig:
    gamma: float = 10.0
    """Decay length of w_k = exp(-(k-1)/gamma) (the paper: 10; DFlash: 7 for B=16, 5 for B=10, 4 for B=8)."""
    shape: Literal["exp", "linear", "flat"] = "exp"
    """exp: exp(-(k-1)/gamma); linear: 1 - (k-1)/(B-1); flat: 1 (equals `ce`)."""

    def __post_init__(self) -> None:
        if not self.gamma > 0 or math.isinf(self.gamma):
            raise ValueError(f"gamma must be a positive finite number, got {self.gamma}")


def slot_weights(n_slots: int, cfg: PositionalConfig, device: torch.device | None = None) -> Tensor:
    """[K-1] weights of slots k = 1..K-1."""
    j = torch.arange(n_slots, dtype=torch.float32, device=device)  # j = k - 1
    if cfg.shape == "exp":
        return torch.exp(-j / cfg.gamma)
    if cfg.shape == "linear":
        return 1.0 - j / n_slots
    return torch.ones_like(j)


@LOSS_TERMS.register("positional", config=PositionalConfig)
class PositionalLoss:
    """Positionally weighted CE: sum_k w_k M_k (-log p_k) / sum_k w_k M_k with decaying w_k."""

    requires: ClassVar[frozenset[str]] = frozenset()

    def __init__(self, cfg: PositionalConfig):
        self.cfg = cfg

    def __call__(self, chunk: SlotChunk) -> LossValue:
        m = learnable(chunk)
        w = slot_weights(m.shape[1], self.cfg, m.device) * m
        nll = -chunk.label_logp.masked_fill(~m, 0.0)
        return LossValue((w * nll).sum(), w.sum())
