"""Decode-time strategy `single`: the drafter's argmax of each slot, one draft verified per step (DFlash)."""
from __future__ import annotations

from typing import ClassVar, Literal

from specframe.alignment import ALIGNMENTS


@ALIGNMENTS.register("single", stage="decode")
class SingleDraft:
    """One draft per step: the argmax (or a sample at temperature > 0) of each slot; verify width B."""

    stage: ClassVar[Literal["decode"]] = "decode"
    requires: ClassVar[frozenset[str]] = frozenset()
    produces: ClassVar[frozenset[str]] = frozenset()
