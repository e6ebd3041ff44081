"""The alignment strategy registry object, apart from `__init__.py` so that built-ins can import it without an import
cycle (`__init__` imports the built-ins to register them). Import `ALIGNMENTS` from `specframe.alignment`: that also
registers the built-ins."""
from specframe.registry import Registry

ALIGNMENTS: Registry = Registry("alignment strategy")
