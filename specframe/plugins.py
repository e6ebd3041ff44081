"""Plugins: code found on purpose only (a recipe's `plugins:`, `--plugin`, or a `specframe.plugins` entry point).

A plugin is a module (dotted name, importable from the current folder too) or a .py file path. Importing it
runs its `@REGISTRY.register(...)` decorators. A failure stops the run with the plugin's name and the original
traceback; nothing is logged-and-ignored.
"""
from __future__ import annotations

import hashlib
import importlib
import importlib.util
import sys
from importlib.metadata import entry_points
from pathlib import Path

from specframe.errors import PluginImportError

ENTRY_POINT_GROUP = "specframe.plugins"
_loaded: dict[str, str] = {}  # plugin spec -> module name, so a plugin is imported once per process


def import_plugin(spec: str) -> str:
    """Import one plugin by module name or file path; returns the module name."""
    if spec in _loaded:
        return _loaded[spec]
    try:
        if spec.endswith(".py") or "/" in spec:
            path = Path(spec).resolve()
            if not path.is_file():
                raise FileNotFoundError(f"no such plugin file: {path}")
            name = f"specframe_plugin_{path.stem}_{hashlib.sha1(str(path).encode()).hexdigest()[:8]}"
            mod_spec = importlib.util.spec_from_file_location(name, path)
            assert mod_spec and mod_spec.loader
            module = importlib.util.module_from_spec(mod_spec)
            sys.modules[name] = module
            try:
                mod_spec.loader.exec_module(module)
            except BaseException:
                sys.modules.pop(name, None)
                raise
        else:
            if "" not in sys.path and str(Path.cwd()) not in sys.path:
                sys.path.insert(0, str(Path.cwd()))  # `plugins.my_loss` from the project folder
            name = importlib.import_module(spec).__name__
    except Exception as e:
        raise PluginImportError(
            f"plugin '{spec}' failed to import: {type(e).__name__}: {e}\n"
            f"(the original traceback is above). Check the module name or path in `plugins:` / --plugin."
        ) from e
    _loaded[spec] = name
    return name


def import_plugins(specs: list[str], entry_point_group: bool = True) -> list[str]:
    """Import recipe/CLI plugins and installed entry-point plugins; returns what was loaded."""
    loaded = [import_plugin(s) for s in specs]
    if entry_point_group:
        for ep in entry_points(group=ENTRY_POINT_GROUP):
            key = f"entry_point:{ep.name}"
            if key in _loaded:
                continue
            try:
                ep.load()
            except Exception as e:
                raise PluginImportError(f"installed plugin '{ep.name}' ({ep.value}) failed to import: {e}") from e
            _loaded[key] = ep.value
            loaded.append(ep.value)
    return loaded


def loaded_plugins() -> list[str]:
    return sorted(_loaded.values())
