"""Acceptance-length metrics (torchmetrics): τ_sim and per-slot acceptance, exact under data parallelism.

τ_sim of a block = 1 + the number of leading slots k = 1, 2, ... whose drafter argmax equals the label (the
first mismatch, or the first unsupervised slot, ends the prefix). The +1 is the target's bonus token, which
every verify step yields, so τ is "tokens gained per verify step" and lies in [1, B].
"""
from __future__ import annotations

import torch
from torch import Tensor
from torchmetrics import Metric


def accepted_prefix(correct: Tensor, mask: Tensor) -> Tensor:
    """[n] length of the leading run of correct, supervised slots. correct, mask: [n, K-1] bool."""
    return torch.cumprod((correct & mask).long(), dim=1).sum(dim=1)


class AcceptanceLength(Metric):
    """τ_sim: mean over valid blocks of (accepted prefix + 1), with each slot's acceptance rate."""

    full_state_update = False
    higher_is_better = True

    def __init__(self, block_size: int, **kwargs):
        super().__init__(**kwargs)
        self.block_size = block_size
        n = block_size - 1
        self.add_state("tau_sum", default=torch.tensor(0.0, dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("blocks", default=torch.tensor(0, dtype=torch.long), dist_reduce_fx="sum")
        self.add_state("slot_accepted", default=torch.zeros(n, dtype=torch.long), dist_reduce_fx="sum")
        self.add_state("slot_supervised", default=torch.zeros(n, dtype=torch.long), dist_reduce_fx="sum")
        self.add_state("histogram", default=torch.zeros(block_size, dtype=torch.long), dist_reduce_fx="sum")

    def update(self, correct: Tensor, mask: Tensor, block_valid: Tensor) -> None:
        """correct, mask: [n, K-1] bool; block_valid: [n] bool. Blocks with no supervised slot are skipped."""
        keep = block_valid & mask.any(dim=1)
        correct, mask = correct[keep], mask[keep]
        a = accepted_prefix(correct, mask)
        self.tau_sum += (a + 1).sum().to(torch.float64)
        self.blocks += keep.sum()
        k = torch.arange(1, self.block_size, device=a.device)
        self.slot_accepted += ((a.unsqueeze(1) >= k) & mask).sum(0)
        self.slot_supervised += mask.sum(0)
        self.histogram += torch.bincount(a, minlength=self.block_size)[: self.block_size]

    def compute(self) -> Tensor:
        return (self.tau_sum / self.blocks.clamp(min=1)).float()

    def slot_acceptance(self) -> Tensor:
        """[K-1] fraction of supervised slot-k occurrences inside the accepted prefix (over all processes)."""
        # Synced across data-parallel ranks like compute() (which torchmetrics wraps); a no-op in one process.
        already = self._is_synced
        with self.sync_context(should_sync=not already, should_unsync=not already):
            return self.slot_accepted.float() / self.slot_supervised.clamp(min=1).float()
