"""The decode-strategy registry object, apart from `__init__.py` so that built-ins can import it without an import
cycle. Import `DECODE_STRATEGIES` from `specframe.decoding.strategies`: that also registers the built-ins."""
from specframe.registry import Registry

DECODE_STRATEGIES: Registry = Registry("decode strategy")
