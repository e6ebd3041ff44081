"""Anchor sampling (method.md §3): where the blocks of a training step sit."""
from __future__ import annotations

import torch
from torch import Tensor


def eligible_anchors(loss_mask: Tensor) -> Tensor:
    """[B, S] bool: positions i with the loss mask on at i and at i + 1 (slot 1 then has a supervised label)."""
    m = loss_mask.bool()
    out = torch.zeros_like(m)
    out[:, :-1] = m[:, :-1] & m[:, 1:]
    return out


def sample_anchors(loss_mask: Tensor, num_anchors: int, generator: torch.Generator | None = None
                   ) -> tuple[Tensor, Tensor]:
    """Up to `num_anchors` anchors PER SEQUENCE, uniformly without replacement among eligible positions, sorted.

    Returns anchors [B, N] (long; 0 where invalid) and anchor_valid [B, N] (bool), N = num_anchors. A sequence
    with fewer eligible positions gets fewer valid anchors; blocks may overlap.
    """
    ok = eligible_anchors(loss_mask).cpu()
    B, S = ok.shape
    scores = torch.rand(B, S, generator=generator)
    scores = scores.masked_fill(~ok, -1.0)
    n = min(num_anchors, S)
    top, idx = scores.topk(n, dim=1)
    valid = top >= 0
    pos = idx.masked_fill(~valid, S)  # invalid ones sort last
    pos, order = pos.sort(dim=1)
    valid = valid.gather(1, order)
    pos = pos.masked_fill(~valid, 0)
    if n < num_anchors:  # keep N fixed so shapes do not depend on the sequence length
        pad = num_anchors - n
        pos = torch.cat([pos, pos.new_zeros(B, pad)], 1)
        valid = torch.cat([valid, valid.new_zeros(B, pad)], 1)
    return pos.to(loss_mask.device), valid.to(loss_mask.device)
