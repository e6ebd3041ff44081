"""The loss term registry object, apart from `__init__.py` so that built-ins can import it without an import
cycle (`__init__` imports the built-ins to register them). Import `LOSS_TERMS` from `specframe.losses`: that also
registers the built-ins."""
from specframe.registry import Registry

LOSS_TERMS: Registry = Registry("loss term")
