"""Drafter registry. Built-in entries are imported explicitly below (no directory scanning)."""
from specframe.registry import Registry

DRAFTERS: Registry = Registry("drafter")

from specframe.drafters import block_diffusion  # noqa: E402,F401  (registers built-ins)
