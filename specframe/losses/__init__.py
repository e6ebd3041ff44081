"""Loss-term registry. A recipe lists terms as `{name, weight, ...options}`; built-ins are imported below."""
from specframe.registry import Registry

LOSS_TERMS: Registry = Registry("loss term")

from specframe.losses import ce, chain, distill, focal, positional, streak  # noqa: E402,F401  (registers built-ins)
