"""Train-time alignment that changes what the drafter is taught to predict."""
from __future__ import annotations

import dataclasses
from typing import ClassVar, Literal

from specframe.alignment.registry import ALIGNMENTS
from specframe.interfaces import AlignedBatch


@ALIGNMENTS.register("target_greedy_labels", stage="train")
class TargetGreedyLabels:
    """Online regeneration-lite: label each position with the target's own greedy token for it (teacher-forced)."""

    stage: ClassVar[Literal["train"]] = "train"
    requires: ClassVar[frozenset[str]] = frozenset({"target_logits"})
    produces: ClassVar[frozenset[str]] = frozenset({"labels"})

    def align(self, view: AlignedBatch) -> AlignedBatch:
        if view.target_logits is None:
            raise RuntimeError("target_greedy_labels needs target logits")
        labels = view.target_logits.argmax(-1)
        labels = labels.where(view.context_valid, view.labels)
        return dataclasses.replace(view, labels=labels)
