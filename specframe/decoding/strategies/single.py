"""Decode-time strategy `single`: the drafter's argmax of each slot, one draft verified per step (DFlash)."""
from __future__ import annotations

from typing import ClassVar, Literal

import torch
from torch import Tensor

from specframe.decoding.strategies.registry import DECODE_STRATEGIES
from specframe.decoding.sampling import greedy_select, rejection_select
from specframe.interfaces import Proposal, Selection


@DECODE_STRATEGIES.register("single")
class SingleDraft:
    """One draft per step: the argmax (or a sample at temperature > 0) of each slot; verify width B."""

    stage: ClassVar[Literal["decode"]] = "decode"
    requires: ClassVar[frozenset[str]] = frozenset()
    produces: ClassVar[frozenset[str]] = frozenset()

    def propose(self, slot_logits: Tensor, temperature: float, generator: torch.Generator | None) -> Proposal:
        """[D, V] slot logits -> one chain: the argmax at temperature 0, else a sample of softmax(logits / T)."""
        if temperature <= 0:
            return Proposal(candidates=slot_logits.argmax(-1).unsqueeze(0))
        q = torch.softmax(slot_logits.double() / temperature, dim=-1)
        return Proposal(candidates=torch.multinomial(q, 1, generator=generator).T, q=q)

    def select(self, proposal: Proposal, target_logits: Tensor, temperature: float,
               generator: torch.Generator | None) -> Selection:
        """Longest matching prefix at temperature 0; standard speculative sampling above."""
        if temperature <= 0:
            return greedy_select(proposal.candidates, target_logits)
        assert proposal.q is not None  # propose() always sets q at temperature > 0
        return rejection_select(proposal.candidates, proposal.q, target_logits, temperature, generator)
