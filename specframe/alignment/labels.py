"""Train-time alignment that changes what the drafter is taught to predict."""
from __future__ import annotations

import dataclasses
from typing import ClassVar, Literal

from specframe.alignment.registry import ALIGNMENTS
from specframe.interfaces import TARGET_GREEDY, AlignedBatch


@ALIGNMENTS.register("target_greedy_labels", stage="train")
class TargetGreedyLabels:
    """Online regeneration-lite: label each position with the target's own greedy token for it (teacher-forced)."""

    stage: ClassVar[Literal["train"]] = "train"
    requires: ClassVar[frozenset[str]] = frozenset({TARGET_GREEDY})  # only the argmax: no [B, S, V] tensor
    produces: ClassVar[frozenset[str]] = frozenset({"labels"})

    def align(self, view: AlignedBatch) -> AlignedBatch:
        if view.target_greedy is None:
            raise RuntimeError("target_greedy_labels needs the target's greedy tokens (target_greedy)")
        labels = view.target_greedy.where(view.context_valid, view.labels)
        return dataclasses.replace(view, labels=labels)
