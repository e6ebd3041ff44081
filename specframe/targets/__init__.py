"""Target registry: frozen autoregressive LMs. Built-ins are imported explicitly below."""
from specframe.registry import Registry

TARGETS: Registry = Registry("target")

from specframe.targets import hf, tiny  # noqa: E402,F401  (registers built-ins)
