"""Loss-term registry. A recipe lists terms as `{name, weight, ...options}`; built-ins are imported below."""
from specframe.losses.registry import LOSS_TERMS

from specframe.losses import ce, chain, distill, focal, positional, streak  # noqa: F401  (registers built-ins)
