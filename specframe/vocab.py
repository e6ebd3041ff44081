"""Draft vocabulary: the drafter's head may cover only a subset of the target's tokens (EAGLE-3's trick).

With the full vocabulary every map is the identity. With a reduced one, `ids` lists the target token ids the
drafter can emit; labels outside it map to -1 (never drafted, never learnable, always a mismatch).
"""
from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn


class DraftVocab(nn.Module):
    def __init__(self, vocab_size: int, size: int | None = None):
        super().__init__()
        self.vocab_size = vocab_size
        self.size = size
        n = size or 0
        # Buffers so that the chosen ids travel with the checkpoint.
        self.register_buffer("ids", torch.arange(n, dtype=torch.long))
        self.register_buffer("index", torch.full((vocab_size if size else 0,), -1, dtype=torch.long))
        if size:
            self.set_ids(torch.arange(size))

    @classmethod
    def from_config(cls, drafter_options: dict[str, Any], vocab_size: int) -> DraftVocab:
        size = drafter_options.get("draft_vocab_size")
        # A draft vocabulary at least as large as the target's is the full one (e.g. a CPU recipe's 8,192 run
        # with a tiny test target): no reduction, rather than ids that do not exist.
        return cls(vocab_size, int(size) if size and int(size) < vocab_size else None)

    @property
    def reduced(self) -> bool:
        return bool(self.size) and self.size < self.vocab_size

    def set_ids(self, ids: Tensor) -> None:
        ids = torch.as_tensor(ids, dtype=torch.long).flatten()
        if ids.numel() != self.size or ids.unique().numel() != ids.numel():
            raise ValueError(f"draft vocabulary needs {self.size} distinct ids, got {ids.numel()}")
        self.ids.copy_(ids.to(self.ids.device))
        self.index.fill_(-1)
        self.index[self.ids] = torch.arange(self.size, device=self.index.device)

    def to_draft(self, target_ids: Tensor) -> Tensor:
        return self.index[target_ids] if self.reduced else target_ids

    def to_target(self, draft_ids: Tensor) -> Tensor:
        return self.ids[draft_ids] if self.reduced else draft_ids

    def restrict(self, target_logits: Tensor) -> Tensor:
        """[..., V] -> [..., V'] columns of the draft vocabulary."""
        return target_logits[..., self.ids] if self.reduced else target_logits

    def restrict_rows(self, weight: Tensor) -> Tensor:
        """[V, H] head weight -> [V', H]."""
        return weight[self.ids] if self.reduced else weight
