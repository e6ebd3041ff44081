"""Target registry: frozen autoregressive LMs. Built-ins are imported explicitly below."""
from specframe.targets.registry import TARGETS

from specframe.targets import hf, tiny  # noqa: F401  (registers built-ins)
