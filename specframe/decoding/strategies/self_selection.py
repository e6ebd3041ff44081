"""Decode-time strategy `self_selection`: K sampled drafts verified together, the best one kept (SpecDiff-2).

One drafter forward gives per-slot distributions; K chains are sampled from them (top-k, draft temperature),
i.i.d. across chains and slot by slot; the engine verifies every chain in ONE target forward as a tree (shared
anchor, identical prefixes merged, ancestor mask). At temperature 0 the chain with the longest accepted prefix
wins (the output is the target's greedy output); above, multi-candidate recursive rejection sampling keeps the
output distribution exactly the target's (specframe/decoding/sampling.py). Verify width: 1 + the number of
distinct draft prefixes, at most 1 + K*(B-1).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Literal

import torch
from torch import Tensor

from specframe.decoding.strategies.registry import DECODE_STRATEGIES
from specframe.decoding.sampling import greedy_select, rejection_select
from specframe.interfaces import Proposal, Selection


@dataclass(kw_only=True)
class SelfSelectionConfig:
    num_drafts: int = 4
    """K: chains sampled per step (SpecDiff-2 uses up to 8)."""
    top_k: int = 64
    """Sample each slot from its top-k tokens only (0: the whole vocabulary)."""
    draft_temperature: float = 1.0
    """Temperature of the drafter's distribution the chains are sampled from (SpecDiff-2: 1-2)."""
    include_argmax: bool = True
    """At temperature 0, make chain 0 the argmax draft, so a step never accepts less than `single` would.
    Ignored above temperature 0, where exactness needs every chain to be an i.i.d. sample."""

    def __post_init__(self) -> None:
        if self.num_drafts < 1:
            raise ValueError(f"num_drafts must be >= 1, got {self.num_drafts}")
        if self.top_k < 0:
            raise ValueError(f"top_k must be >= 0 (0: no top-k filter), got {self.top_k}")
        if not self.draft_temperature > 0:
            raise ValueError(f"draft_temperature must be > 0, got {self.draft_temperature}")


@DECODE_STRATEGIES.register("self_selection", config=SelfSelectionConfig)
class SelfSelection:
    """K sampled drafts verified in one tree forward; keep the longest accepted (lossless at any temperature)."""

    stage: ClassVar[Literal["decode"]] = "decode"
    requires: ClassVar[frozenset[str]] = frozenset()
    produces: ClassVar[frozenset[str]] = frozenset()

    def __init__(self, cfg: SelfSelectionConfig | None = None):
        self.cfg = cfg or SelfSelectionConfig()

    def proposal_distribution(self, slot_logits: Tensor) -> Tensor:
        """[D, V] logits -> [D, V] float64 distribution: top-k filtered, softmax at the draft temperature."""
        logits = slot_logits.double() / self.cfg.draft_temperature
        k = self.cfg.top_k
        if 0 < k < logits.shape[-1]:
            kth = logits.topk(k, dim=-1).values[:, -1:]
            logits = logits.masked_fill(logits < kth, float("-inf"))
        return torch.softmax(logits, dim=-1)

    def propose(self, slot_logits: Tensor, temperature: float, generator: torch.Generator | None) -> Proposal:
        q = self.proposal_distribution(slot_logits)
        chains = torch.multinomial(q, self.cfg.num_drafts, replacement=True, generator=generator).T  # [K, D]
        if temperature <= 0 and self.cfg.include_argmax:
            chains = chains.clone()
            chains[0] = slot_logits.argmax(-1)
        return Proposal(candidates=chains, q=q)

    def select(self, proposal: Proposal, target_logits: Tensor, temperature: float,
               generator: torch.Generator | None) -> Selection:
        if temperature <= 0:
            return greedy_select(proposal.candidates, target_logits)
        assert proposal.q is not None  # propose() always sets q
        return rejection_select(proposal.candidates, proposal.q, target_logits, temperature, generator)
