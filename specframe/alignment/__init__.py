"""Alignment-strategy registry: train-time (change labels / targets) and decode-time (drafting strategies).

Each entry carries `stage` metadata: "train" entries transform the training view (`align`), "decode" entries
are used by the decoding engine as `eval.strategy`.
"""
from specframe.alignment.registry import ALIGNMENTS

from specframe.alignment import labels, self_selection, single  # noqa: F401  (registers built-ins)
