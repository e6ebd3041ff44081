"""Alignment-strategy registry: training-time strategies that change what the drafter learns (labels, targets).

Each entry carries `stage` metadata ("train": it transforms the training view with `align`). Decode-time
strategies (`single`, `self_selection`) have their own registry: `specframe.decoding.strategies`.
"""
from specframe.alignment.registry import ALIGNMENTS

from specframe.alignment import labels  # noqa: F401  (registers built-ins)
