"""Decode (test-time) strategies: how drafts are proposed from the drafter's slot logits and which one is kept.

A recipe names one as `eval.strategy: {name: ..., **options}` (and `specframe eval --strategy`). Every entry
implements `interfaces.DecodeStrategy` and must keep decoding lossless. Training-time strategies, which change
what the drafter is trained on, are a separate registry: `specframe.alignment.ALIGNMENTS`.
"""
from specframe.decoding.strategies.registry import DECODE_STRATEGIES

from specframe.decoding.strategies import self_selection, single  # noqa: F401  (registers built-ins)
