"""Plugins are found on purpose and fail loudly: module names, file paths, entry points."""
from __future__ import annotations

import sys
import textwrap
from pathlib import Path

import pytest

from specframe import plugins as plugins_mod
from specframe.errors import PluginImportError
from specframe.losses import LOSS_TERMS
from specframe.plugins import import_plugin, import_plugins, loaded_plugins

PLUGIN_SOURCE = textwrap.dedent('''
    from specframe.losses import LOSS_TERMS
    from specframe.losses.ce import CrossEntropyLoss

    @LOSS_TERMS.register("{name}")
    class PluginTerm(CrossEntropyLoss):
        """A test plugin term."""
    ''')


@pytest.fixture(autouse=True)
def _isolated_loss_terms():
    with LOSS_TERMS.isolated():
        yield


def test_import_by_file_path_registers_once(tmp_path: Path) -> None:
    path = tmp_path / "file_plugin.py"
    path.write_text(PLUGIN_SOURCE.format(name="file_plugin_term"))
    name = import_plugin(str(path))
    assert "file_plugin_term" in LOSS_TERMS
    assert name in sys.modules and name in loaded_plugins()
    # a second import of the same spec is a no-op, not a duplicate-registration error
    assert import_plugin(str(path)) == name


def test_import_by_module_name_from_the_current_folder(tmp_path: Path, monkeypatch) -> None:
    pkg = tmp_path / "my_plugins_pkg_xyz"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "term.py").write_text(PLUGIN_SOURCE.format(name="module_plugin_term"))
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", [p for p in sys.path if p not in ("", str(tmp_path))])
    try:
        assert import_plugin("my_plugins_pkg_xyz.term") == "my_plugins_pkg_xyz.term"
        assert "module_plugin_term" in LOSS_TERMS
    finally:
        for mod in [m for m in sys.modules if m.startswith("my_plugins_pkg_xyz")]:
            del sys.modules[mod]


def test_missing_module_is_a_hard_error_with_the_cause() -> None:
    with pytest.raises(PluginImportError, match="plugin 'no_such_plugin_abc' failed to import") as info:
        import_plugins(["no_such_plugin_abc"], entry_point_group=False)
    assert isinstance(info.value.__cause__, ModuleNotFoundError)
    assert "--plugin" in str(info.value)


def test_missing_file_is_a_hard_error(tmp_path: Path) -> None:
    with pytest.raises(PluginImportError, match="no such plugin file") as info:
        import_plugin(str(tmp_path / "absent.py"))
    assert isinstance(info.value.__cause__, FileNotFoundError)


def test_failing_plugin_is_not_half_registered(tmp_path: Path) -> None:
    path = tmp_path / "half_plugin.py"
    path.write_text(PLUGIN_SOURCE.format(name="half_term") + "\nraise RuntimeError('broken on purpose')\n")
    with pytest.raises(PluginImportError, match="RuntimeError: broken on purpose") as info:
        import_plugin(str(path))
    assert isinstance(info.value.__cause__, RuntimeError)
    assert not [m for m in sys.modules if m.startswith("specframe_plugin_half_plugin")]
    assert str(path) not in plugins_mod._loaded  # a later retry imports it again instead of pretending


def test_plugin_reusing_a_builtin_name_fails(tmp_path: Path) -> None:
    path = tmp_path / "clash_plugin.py"
    path.write_text(PLUGIN_SOURCE.format(name="ce"))
    with pytest.raises(PluginImportError, match="duplicate loss term name 'ce'") as info:
        import_plugin(str(path))
    assert isinstance(info.value.__cause__, ValueError)
    assert LOSS_TERMS.get("ce").obj.__name__ == "CrossEntropyLoss"


class _FakeEntryPoint:
    def __init__(self, name: str, value: str, error: Exception | None = None):
        self.name, self.value, self._error = name, value, error
        self.loaded = 0

    def load(self):
        self.loaded += 1
        if self._error:
            raise self._error
        return object()


def test_entry_point_plugins_load_once(monkeypatch) -> None:
    ep = _FakeEntryPoint("fake_ok_ep", "fake_pkg.plugin")
    monkeypatch.setattr(plugins_mod, "entry_points", lambda group: [ep] if group == "specframe.plugins" else [])
    monkeypatch.setattr(plugins_mod, "_loaded", dict(plugins_mod._loaded))
    assert "fake_pkg.plugin" in import_plugins([])
    assert import_plugins([]) == []  # already loaded
    assert ep.loaded == 1
    assert "fake_pkg.plugin" in loaded_plugins()


def test_broken_entry_point_is_a_hard_error(monkeypatch) -> None:
    ep = _FakeEntryPoint("fake_bad_ep", "fake_pkg.bad", ImportError("no module named fake_pkg"))
    monkeypatch.setattr(plugins_mod, "entry_points", lambda group: [ep])
    monkeypatch.setattr(plugins_mod, "_loaded", dict(plugins_mod._loaded))
    with pytest.raises(PluginImportError, match=r"installed plugin 'fake_bad_ep' \(fake_pkg\.bad\)") as info:
        import_plugins([])
    assert isinstance(info.value.__cause__, ImportError)
    assert import_plugins([], entry_point_group=False) == []  # the group can be skipped on purpose
