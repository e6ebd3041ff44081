"""Drafter registry. Built-in entries are imported explicitly below (no directory scanning)."""
from specframe.drafters.registry import DRAFTERS

from specframe.drafters import block_diffusion  # noqa: F401  (registers built-ins)
