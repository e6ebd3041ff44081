"""The training objective: the LM head and every loss term, computed in chunks of blocks.

N*K x V logits never sit in memory at once: each chunk's head + terms run under activation checkpointing,
so the chunk's logits are freed after the forward and recomputed in backward.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor
from torch.utils.checkpoint import checkpoint

from specframe.interfaces import AlignedBatch, LossTerm, SlotChunk


@dataclass(frozen=True)
class WeightedTerm:
    name: str
    weight: float
    term: LossTerm


@dataclass(frozen=True, kw_only=True)
class ObjectiveParts:
    """Per-term numerators/denominators of one (local) batch, and the slot statistics for metrics."""

    numerators: Tensor  # [T] differentiable
    denominators: Tensor  # [T] no grad; sum these across data-parallel ranks before dividing
    correct: Tensor  # [B*N, K-1] bool, argmax equals label on a supervised slot
    mask: Tensor  # [B*N, K-1] bool, supervised slots
    block_valid: Tensor  # [B*N] bool


def slot_targets(view: AlignedBatch, block_size: int) -> tuple[Tensor, Tensor, Tensor]:
    """Positions [B, N, K-1] of slots 1..K-1, their labels, and whether each is supervised.

    Slot k of a block anchored at a predicts the token at a + k (no shift). It is supervised when a + k is
    inside the sequence, the loss mask is on there, and the block is real.
    """
    B, S = view.labels.shape
    k = torch.arange(1, block_size, device=view.anchors.device)
    pos = view.anchors.unsqueeze(-1) + k  # [B, N, K-1]
    inside = pos < S
    pos_c = pos.clamp(max=S - 1)
    labels = view.labels.gather(1, pos_c.flatten(1)).view_as(pos)
    mask = view.loss_mask.gather(1, pos_c.flatten(1)).view_as(pos).bool() & inside & view.anchor_valid.unsqueeze(-1)
    return pos_c, labels, mask


class Objective:
    """Weighted sum of loss terms over the drafter's slots; the head is applied chunk by chunk."""

    def __init__(self, terms: list[WeightedTerm], chunk_blocks: int = 64, checkpoint_chunks: bool = True):
        if not terms:
            raise ValueError("the objective needs at least one loss term")
        self.terms = terms
        self.chunk_blocks = chunk_blocks
        self.checkpoint_chunks = checkpoint_chunks

    @property
    def needs_target_logits(self) -> bool:
        return any("target_logits" in wt.term.requires for wt in self.terms)

    def parts(
        self,
        hidden: Tensor,  # [B, N, K, H] drafter output
        view: AlignedBatch,
        head: Callable[[Tensor], Tensor],  # [..., H] -> [..., V'] logits over the draft vocabulary
        to_draft: Callable[[Tensor], Tensor] = lambda ids: ids,  # target ids -> draft ids (-1: not draftable)
        target_logits_to_draft: Callable[[Tensor], Tensor] = lambda x: x,
    ) -> ObjectiveParts:
        B, N, K, H = hidden.shape
        pos, labels, mask = slot_targets(view, K)
        h = hidden[:, :, 1:].reshape(B * N, K - 1, H)
        labels = to_draft(labels.reshape(B * N, K - 1))
        mask = mask.reshape(B * N, K - 1)
        block_valid = view.anchor_valid.reshape(B * N)
        flat_pos = pos.reshape(B * N, K - 1)
        batch_idx = torch.arange(B, device=hidden.device).repeat_interleave(N)

        nums, dens, correct = [], [], []
        for s in range(0, B * N, self.chunk_blocks):
            e = min(s + self.chunk_blocks, B * N)
            tl = None
            if self.needs_target_logits and view.target_logits is not None:
                tl = target_logits_to_draft(view.target_logits[batch_idx[s:e, None], flat_pos[s:e]].float())
            fn = self._chunk_fn(labels[s:e], mask[s:e], block_valid[s:e], tl, head)
            if self.checkpoint_chunks and torch.is_grad_enabled() and h.requires_grad:
                n, d, c = checkpoint(fn, h[s:e], use_reentrant=False)
            else:
                n, d, c = fn(h[s:e])
            nums.append(n)
            dens.append(d)
            correct.append(c)
        return ObjectiveParts(
            numerators=torch.stack(nums).sum(0), denominators=torch.stack(dens).sum(0),
            correct=torch.cat(correct), mask=mask, block_valid=block_valid,
        )

    def _chunk_fn(self, labels: Tensor, mask: Tensor, block_valid: Tensor, target_logits: Tensor | None,
                  head: Callable[[Tensor], Tensor]) -> Callable[[Tensor], tuple[Tensor, Tensor, Tensor]]:
        def fn(h: Tensor) -> tuple[Tensor, Tensor, Tensor]:
            chunk = SlotChunk(logits=head(h).float(), labels=labels, mask=mask, block_valid=block_valid,
                              target_logits=target_logits)
            values = [wt.term(chunk) for wt in self.terms]
            nums = torch.stack([v.numerator for v in values])
            dens = torch.stack([v.denominator.detach().float() for v in values])
            return nums, dens, chunk.correct
        return fn

    def combine(self, parts: ObjectiveParts, global_denominators: Tensor, world_size: int = 1
                ) -> tuple[Tensor, dict[str, Tensor]]:
        """Total loss and each term's value, normalised by denominators summed over the global batch.

        Data-parallel backends average gradients over ranks, so each rank's share is scaled by world_size:
        the averaged gradient is then exactly that of sum(numerators) / sum(denominators) over all ranks.
        """
        den = global_denominators
        # A term with nothing to average over this step (e.g. no block has an error) contributes 0.
        per_term = torch.where(den > 0, parts.numerators / den.clamp(min=1e-12), parts.numerators * 0) * world_size
        weights = torch.tensor([wt.weight for wt in self.terms], device=per_term.device)
        total = (weights * per_term).sum()
        return total, {wt.name: per_term[i] for i, wt in enumerate(self.terms)}
