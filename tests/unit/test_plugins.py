"""Plugins are found on purpose and fail loudly: module names, file paths, entry points."""
from __future__ import annotations

import sys
import textwrap
from pathlib import Path

import pytest

from specframe import plugins as plugins_mod
from specframe.config import compose, validate_recipe
from specframe.errors import ConfigError, PluginImportError
from specframe.losses import LOSS_TERMS
from specframe.plugins import import_plugin, import_plugins, loaded_plugins, resolve_spec

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


def test_entry_point_of_a_file_already_imported_by_path_is_not_run_again(tmp_path: Path, monkeypatch) -> None:
    """`pip install -e .` of a plugin whose file a recipe also lists by path: one plugin, not a duplicate."""
    (tmp_path / "ep_and_path_xyz.py").write_text(PLUGIN_SOURCE.format(name="ep_and_path_term"))
    monkeypatch.syspath_prepend(str(tmp_path))
    name = import_plugin(str(tmp_path / "ep_and_path_xyz.py"))

    class EntryPoint(_FakeEntryPoint):
        module = "ep_and_path_xyz"

        def load(self):
            import importlib

            return importlib.import_module(self.module)

    ep = EntryPoint("ep_and_path", "ep_and_path_xyz")
    monkeypatch.setattr(plugins_mod, "entry_points", lambda group: [ep])
    monkeypatch.setattr(plugins_mod, "_loaded", dict(plugins_mod._loaded))
    try:
        assert import_plugins([]) == ["ep_and_path_xyz"]  # no "duplicate loss term name" error
        assert sys.modules["ep_and_path_xyz"] is sys.modules[name]
    finally:
        sys.modules.pop("ep_and_path_xyz", None)


def test_broken_entry_point_is_a_hard_error(monkeypatch) -> None:
    ep = _FakeEntryPoint("fake_bad_ep", "fake_pkg.bad", ImportError("no module named fake_pkg"))
    monkeypatch.setattr(plugins_mod, "entry_points", lambda group: [ep])
    monkeypatch.setattr(plugins_mod, "_loaded", dict(plugins_mod._loaded))
    with pytest.raises(PluginImportError, match=r"installed plugin 'fake_bad_ep' \(fake_pkg\.bad\)") as info:
        import_plugins([])
    assert isinstance(info.value.__cause__, ImportError)
    assert import_plugins([], entry_point_group=False) == []  # the group can be skipped on purpose


# -- identity: one plugin however it is spelt ------------------------------------------------------
def test_two_spellings_of_one_file_import_it_once(tmp_path: Path, monkeypatch) -> None:
    path = tmp_path / "spelt_twice.py"
    path.write_text(PLUGIN_SOURCE.format(name="spelt_twice_term"))
    (tmp_path / "link.py").symlink_to(path)
    monkeypatch.chdir(tmp_path)
    name = import_plugin(str(path))
    # `dir/./x.py`, `x.py` from its folder, `dir/../dir/x.py` and a symlink are the same plugin: no
    # "duplicate loss term name" error, and one module
    for spelling in (f"{tmp_path}/./spelt_twice.py", "spelt_twice.py", "./spelt_twice.py",
                     f"{tmp_path}/../{tmp_path.name}/spelt_twice.py", "link.py"):
        assert import_plugin(spelling) == name
    assert import_plugins(["spelt_twice.py", "./spelt_twice.py"], entry_point_group=False) == [name, name]
    assert [m for m in sys.modules if m.startswith("specframe_plugin_spelt_twice")] == [name]


def test_a_file_already_imported_as_a_module_is_not_run_again(tmp_path: Path, monkeypatch) -> None:
    pkg = tmp_path / "pkg_by_two_names_xyz"
    pkg.mkdir()
    (pkg / "__init__.py").write_text(PLUGIN_SOURCE.format(name="two_names_term"))
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    try:
        assert import_plugin("pkg_by_two_names_xyz") == "pkg_by_two_names_xyz"
        assert import_plugin("pkg_by_two_names_xyz/__init__.py") == "pkg_by_two_names_xyz"
    finally:
        sys.modules.pop("pkg_by_two_names_xyz", None)


def test_a_file_imported_by_path_is_not_imported_again_by_module_name(tmp_path: Path, monkeypatch) -> None:
    pkg = tmp_path / "pkg_path_first_xyz"
    pkg.mkdir()
    (pkg / "__init__.py").write_text(PLUGIN_SOURCE.format(name="path_first_term"))
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    try:
        name = import_plugin(str(pkg / "__init__.py"))
        assert name.startswith("specframe_plugin___init___")
        assert import_plugin("pkg_path_first_xyz") == name  # no second registration of path_first_term
    finally:
        for mod in [m for m in sys.modules if "pkg_path_first_xyz" in m or m == name]:
            sys.modules.pop(mod, None)


def test_resolve_spec_keeps_module_names_and_resolves_paths(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert resolve_spec("plugins.label_smoothing") == "plugins.label_smoothing"
    assert resolve_spec("x.py") == str(tmp_path.resolve() / "x.py")
    assert resolve_spec("sub/../x.py", relative_to="/elsewhere") == "/elsewhere/x.py"
    assert resolve_spec("/abs/./x.py", relative_to="/elsewhere") == "/abs/x.py"


# -- plugins listed by a recipe --------------------------------------------------------------------
OPTION_PLUGIN = textwrap.dedent('''
    from dataclasses import dataclass
    from specframe.losses import LOSS_TERMS
    from specframe.losses.ce import CrossEntropyLoss

    @dataclass(kw_only=True)
    class SlotConfig:
        slot: int = 1
        """A plugin-defined option."""

    @LOSS_TERMS.register("{name}", config=SlotConfig)
    class SlotTerm(CrossEntropyLoss):
        """A test plugin term with an option."""

        def __init__(self, cfg: SlotConfig):
            self.cfg = cfg
    ''')


def _plugin_recipe(folder: Path, term: str, out: Path, plugin_line: str | None = None) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{term}.py").write_text(OPTION_PLUGIN.format(name=term))
    recipe = folder / "recipe.yaml"
    recipe.write_text(textwrap.dedent(f"""
        plugins: [{f"{term}.py" if plugin_line is None else plugin_line}]
        run: {{name: plug, output_dir: "{out}"}}
        target: {{name: tiny}}
        drafter: {{name: block_diffusion, block_size: 8}}
        loss: [{{name: ce}}, {{name: {term}, weight: 0.5}}]
        """))
    return recipe


def test_override_sets_an_option_of_a_plugin_listed_in_the_recipe(tmp_path: Path, monkeypatch) -> None:
    recipe = _plugin_recipe(tmp_path / "plug", "opt_override_term", tmp_path / "out")
    monkeypatch.chdir(tmp_path / "plug")
    # the recipe does not set `slot`; a plain override may, as for a built-in term's option
    r = validate_recipe(compose(recipe, overrides=["loss.1.slot=2"]))
    assert r.loss[1].options == {"slot": 2}
    assert LOSS_TERMS.build("opt_override_term", r.loss[1].options).cfg.slot == 2
    with pytest.raises(ConfigError, match=r"did you mean 'loss\.1\.slot'\?.*'slot'"):
        compose(recipe, overrides=["loss.1.slto=2"])


@pytest.mark.parametrize("form", ["plugins=[plug/{}.py]", "+plugins=[plug/{}.py]"])
def test_plugins_override_is_imported_before_the_other_overrides(tmp_path: Path, monkeypatch, form) -> None:
    term = "opt_late_add_term" if form.startswith("+") else "opt_late_term"
    recipe = _plugin_recipe(tmp_path / "plug", term, tmp_path / "out", plugin_line="")
    monkeypatch.chdir(tmp_path)
    cfg = compose(recipe, overrides=["loss.1.slot=3", form.format(term)])
    assert list(cfg.plugins) == [str((tmp_path / "plug" / f"{term}.py").resolve())]  # the current folder
    assert validate_recipe(cfg).loss[1].options == {"slot": 3}


def test_relative_plugin_path_is_relative_to_the_recipe(tmp_path: Path, monkeypatch) -> None:
    recipe = _plugin_recipe(tmp_path / "plug", "rel_path_term", tmp_path / "out")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    cfg = compose(recipe)
    plugin = str((tmp_path / "plug" / "rel_path_term.py").resolve())
    assert list(cfg.plugins) == [plugin]  # stored absolute: the run folder's recipe works from any folder
    assert validate_recipe(cfg).plugins == [plugin]
    # an overlay's relative plugin path is relative to the overlay; a module name stays a module name
    overlay = tmp_path / "over" / "o.yaml"
    overlay.parent.mkdir()
    overlay.write_text("plugins: [../plug/rel_path_term.py, some.module]\n")
    assert list(compose(recipe, [overlay], load_plugins=False).plugins) == [plugin, "some.module"]


def test_missing_relative_plugin_names_the_path_beside_the_recipe(tmp_path: Path, monkeypatch) -> None:
    recipe = _plugin_recipe(tmp_path / "plug", "rel_missing_term", tmp_path / "out", plugin_line="nope.py")
    monkeypatch.chdir(tmp_path)
    with pytest.raises(PluginImportError, match=f"no such plugin file: {tmp_path.resolve() / 'plug' / 'nope.py'}"):
        compose(recipe)


def test_cli_two_spellings_of_the_recipe_plugin(tmp_path: Path, monkeypatch, capsys) -> None:
    from specframe.cli import main

    recipe = _plugin_recipe(tmp_path / "plug", "cli_twice_term", tmp_path / "out")
    monkeypatch.chdir(tmp_path)
    args = ["validate", str(recipe), "loss.1.slot=2", "--plugin", "plug/./cli_twice_term.py",
            "--plugin", f"{tmp_path}/plug/cli_twice_term.py"]
    assert main(args) == 0, capsys.readouterr().err
    assert "0.5*cli_twice_term" in capsys.readouterr().out
