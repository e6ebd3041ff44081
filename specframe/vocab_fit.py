"""Choosing a reduced draft vocabulary from the training data."""
from __future__ import annotations

from typing import Any

import torch

from specframe.vocab import DraftVocab


def fit_draft_vocab(vocab: DraftVocab, rows: list[dict[str, Any]]) -> dict[str, float]:
    """Set `vocab` to the most frequent supervised target tokens of `rows`; returns coverage figures."""
    counts = torch.zeros(vocab.vocab_size, dtype=torch.long)
    for r in rows:
        ids = torch.as_tensor(r["input_ids"])[torch.as_tensor(r["loss_mask"]).bool()]
        counts += torch.bincount(ids, minlength=vocab.vocab_size)
    assert vocab.size is not None
    top = counts.topk(vocab.size).indices.sort().values
    vocab.set_ids(top)
    total = int(counts.sum())
    covered = int(counts[top].sum())
    return {"size": vocab.size, "coverage": covered / max(1, total), "supervised_tokens": total}


def coverage(vocab: DraftVocab, rows: list[dict[str, Any]]) -> float:
    """Fraction of the supervised tokens of `rows` that the draft vocabulary can emit (use held-out rows)."""
    if not vocab.reduced:
        return 1.0
    inside = total = 0
    for r in rows:
        ids = torch.as_tensor(r["input_ids"])[torch.as_tensor(r["loss_mask"]).bool()]
        inside += int((vocab.to_draft(ids) >= 0).sum())
        total += ids.numel()
    return inside / max(1, total)
