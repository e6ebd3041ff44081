"""The target registry object, apart from `__init__.py` so that built-ins can import it without an import
cycle (`__init__` imports the built-ins to register them). Import `TARGETS` from `specframe.targets`: that also
registers the built-ins."""
from specframe.registry import Registry

TARGETS: Registry = Registry("target")
