"""The drafter registry object, apart from `__init__.py` so that built-ins can import it without an import
cycle (`__init__` imports the built-ins to register them). Import `DRAFTERS` from `specframe.drafters`: that also
registers the built-ins."""
from specframe.registry import Registry

DRAFTERS: Registry = Registry("drafter")
