"""Plugins: code found on purpose only (a recipe's `plugins:`, `--plugin`, or a `specframe.plugins` entry point).

A plugin is a module (dotted name, importable from the current folder too) or a .py file path. Importing it
runs its `@REGISTRY.register(...)` decorators. A failure stops the run with the plugin's name and the original
traceback; nothing is logged-and-ignored.
"""
from __future__ import annotations

import hashlib
import importlib
import importlib.util
import os
import sys
from importlib.metadata import entry_points
from pathlib import Path

from specframe.errors import PluginImportError

ENTRY_POINT_GROUP = "specframe.plugins"
_loaded: dict[str, str] = {}  # plugin key (resolved file path or module name) -> module name; imported once


def is_path(spec: str) -> bool:
    """A plugin spec names a file (`my_term.py`, `dir/x.py`) rather than a dotted module name."""
    return spec.endswith(".py") or "/" in spec or os.sep in spec


def resolve_spec(spec: str, relative_to: str | Path | None = None) -> str:
    """The canonical form of a plugin spec: a file path made absolute and resolved, a module name as it is.

    A relative file path is taken against `relative_to` (the folder of the recipe that lists it), or against
    the current folder when None (a --plugin argument). `~` is expanded. Two spellings of one file
    (`dir/./x.py`, `dir/x.py`, a symlink) give the same string, so they are one plugin.
    """
    if not is_path(spec):
        return spec
    path = Path(spec).expanduser()
    if not path.is_absolute() and relative_to is not None:
        path = Path(relative_to) / path
    return str(path.resolve())


def _module_of_file(path: Path) -> str | None:
    """The name of an already imported module whose source is this file (whatever name it was imported by)."""
    for name, module in list(sys.modules.items()):
        file = getattr(module, "__file__", None)
        if file and Path(file).name == path.name and Path(file).resolve() == path:
            return name
    return None


def import_plugin(spec: str) -> str:
    """Import one plugin by module name or file path (against the current folder); returns the module name.

    A plugin is identified by its resolved file path or its module name, so it is imported once per process
    however it is spelt, and a file already imported as a module (`plugins.x` and `plugins/x/__init__.py`)
    is not run a second time.
    """
    key = resolve_spec(spec)
    if key in _loaded:
        return _loaded[key]
    try:
        if is_path(spec):
            path = Path(key)
            if not path.is_file():
                raise FileNotFoundError(f"no such plugin file: {path}")
            name = _module_of_file(path)
            if name is None:
                name = f"specframe_plugin_{path.stem}_{hashlib.sha1(str(path).encode()).hexdigest()[:8]}"
                _exec_file(name, path)
        else:
            if "" not in sys.path and str(Path.cwd()) not in sys.path:
                sys.path.insert(0, str(Path.cwd()))  # `plugins.my_loss` from the project folder
            name = _import_module(spec)
    except Exception as e:
        raise PluginImportError(
            f"plugin '{spec}' failed to import: {type(e).__name__}: {e}\n"
            f"(the original traceback is above). Check the module name or path in `plugins:` / --plugin."
        ) from e
    _loaded[key] = name
    return name


def _exec_file(name: str, path: Path) -> None:
    mod_spec = importlib.util.spec_from_file_location(name, path)
    assert mod_spec and mod_spec.loader
    module = importlib.util.module_from_spec(mod_spec)
    sys.modules[name] = module
    try:
        mod_spec.loader.exec_module(module)
    except BaseException:
        sys.modules.pop(name, None)
        raise


def _import_module(spec: str) -> str:
    if spec not in sys.modules:
        found = importlib.util.find_spec(spec)
        origin = found.origin if found is not None else None
        if origin and os.path.isfile(origin):
            same = _module_of_file(Path(origin).resolve())
            if same is not None:  # imported earlier by file path: the same plugin, not a second copy
                sys.modules[spec] = sys.modules[same]
                return same
    return importlib.import_module(spec).__name__


def import_plugins(specs: list[str], entry_point_group: bool = True) -> list[str]:
    """Import recipe/CLI plugins and installed entry-point plugins; returns what was loaded."""
    loaded = [import_plugin(s) for s in specs]
    if entry_point_group:
        for ep in entry_points(group=ENTRY_POINT_GROUP):
            key = f"entry_point:{ep.name}"
            if key in _loaded:
                continue
            try:
                module = getattr(ep, "module", None)
                if module:  # the same file already imported by path (an editable install) is not run again
                    _import_module(module)
                ep.load()
            except Exception as e:
                raise PluginImportError(f"installed plugin '{ep.name}' ({ep.value}) failed to import: {e}") from e
            _loaded[key] = ep.value
            loaded.append(ep.value)
    return loaded


def loaded_plugins() -> list[str]:
    return sorted(_loaded.values())
