"""The Registry class: explicit names, loud duplicates and unknown names, isolation, typed configs."""
from __future__ import annotations

import dataclasses
import re

import pytest

from specframe.errors import ConfigError
from specframe.losses import LOSS_TERMS
from specframe.registry import Registry, build_dataclass


@dataclasses.dataclass(kw_only=True)
class _Cfg:
    gamma: float = 1.0
    """A documented option."""
    shape: str = "exp"

    def __post_init__(self) -> None:
        if self.gamma <= 0:
            raise ValueError(f"gamma must be > 0, got {self.gamma}")


class _First:
    """First line of the summary.

    More text.
    """


class _Second:
    pass


def test_explicit_name_is_the_key_not_the_class_name() -> None:
    reg: Registry = Registry("widget")
    reg.register("round_widget", config=_Cfg, speed="fast")(_First)
    assert reg.names() == ["round_widget"]
    assert "_First" not in reg and "round_widget" in reg
    entry = reg.get("round_widget")
    assert entry.obj is _First and entry.config is _Cfg and entry.meta == {"speed": "fast"}
    assert entry.summary == "First line of the summary."
    assert entry.origin == f"{__name__}:_First"


def test_names_are_sorted_and_iterable() -> None:
    reg: Registry = Registry("widget")
    for name in ("zeta", "alpha", "mid_one"):
        reg.register(name)(type(name, (), {}))
    assert reg.names() == ["alpha", "mid_one", "zeta"]
    assert list(reg) == reg.names() and len(reg) == 3
    assert [e.name for e in reg.entries()] == reg.names()


def test_duplicate_name_is_an_error_naming_both_definitions() -> None:
    reg: Registry = Registry("widget")
    reg.register("w")(_First)
    with pytest.raises(ValueError) as info:
        reg.register("w")(_Second)
    msg = str(info.value)
    assert "duplicate widget name 'w'" in msg
    assert f"{__name__}:_First" in msg and f"{__name__}:_Second" in msg
    assert reg.get("w").obj is _First  # the first definition is kept, not silently replaced


def test_builtin_name_cannot_be_reused() -> None:
    with LOSS_TERMS.isolated():
        with pytest.raises(ValueError, match=r"duplicate loss term name 'ce'.*specframe\.losses\.ce:CrossEntropyLoss"):
            LOSS_TERMS.register("ce")(_Second)
    assert LOSS_TERMS.get("ce").obj.__name__ == "CrossEntropyLoss"


def test_unknown_name_error_has_suggestion_valid_names_plugin_hint_and_path() -> None:
    reg: Registry = Registry("loss term")
    for name in ("forward_kl", "chain", "ce"):
        reg.register(name)(type(name, (), {}))
    with pytest.raises(ConfigError) as info:
        reg.get("forward_kll", where="loss[1].name")
    msg = str(info.value)
    assert "loss[1].name" in msg
    assert "unknown loss term 'forward_kll'" in msg
    assert "Did you mean 'forward_kl'?" in msg
    assert "['ce', 'chain', 'forward_kl']" in msg  # sorted valid names
    assert "plugins:" in msg and "--plugin" in msg and "specframe.plugins" in msg
    assert len(info.value.issues) == 1


def test_unknown_name_without_close_match_has_no_suggestion() -> None:
    reg: Registry = Registry("widget")
    reg.register("alpha")(_First)
    with pytest.raises(ConfigError) as info:
        reg.build("zzzzzz")
    assert "Did you mean" not in str(info.value) and "['alpha']" in str(info.value)


def test_isolated_restores_entries() -> None:
    before = LOSS_TERMS.names()
    with LOSS_TERMS.isolated() as reg:
        assert reg is LOSS_TERMS
        LOSS_TERMS.register("throwaway_term")(_First)
        assert "throwaway_term" in LOSS_TERMS
    assert "throwaway_term" not in LOSS_TERMS
    assert LOSS_TERMS.names() == before


def test_isolated_restores_after_an_exception() -> None:
    before = LOSS_TERMS.names()
    with pytest.raises(RuntimeError):
        with LOSS_TERMS.isolated():
            LOSS_TERMS.register("throwaway_term")(_First)
            raise RuntimeError("boom")
    assert LOSS_TERMS.names() == before


@pytest.mark.parametrize("bad", ["Ce", "forward-kl", "1abc", "", "with space", "_private", "camelCase"])
def test_bad_names_are_rejected(bad: str) -> None:
    reg: Registry = Registry("widget")
    with pytest.raises(ValueError, match="lower_snake_case"):
        reg.register(bad)
    assert len(reg) == 0


def test_config_must_be_a_dataclass() -> None:
    with pytest.raises(TypeError, match="must be a dataclass"):
        Registry("widget").register("w", config=dict)


def test_build_passes_config_and_extra_arguments() -> None:
    reg: Registry = Registry("widget")
    seen = {}

    @reg.register("w", config=_Cfg)
    def make(cfg: _Cfg, spec: str) -> tuple:
        seen["cfg"] = cfg
        return cfg, spec

    cfg, spec = reg.build("w", {"gamma": 2.5}, spec="S")
    assert cfg == _Cfg(gamma=2.5) and spec == "S"


def test_entry_without_config_rejects_options() -> None:
    reg: Registry = Registry("widget")
    reg.register("plain")(_First)
    assert isinstance(reg.build("plain", {}), _First)
    with pytest.raises(ConfigError, match=r"loss\[0\]: 'plain' takes no options, got \['gamma'\]"):
        reg.build("plain", {"gamma": 1}, where="loss[0]")


def test_config_unknown_kwargs_error_with_suggestion_lists_all() -> None:
    with pytest.raises(ConfigError) as info:
        build_dataclass(_Cfg, {"gama": 2.0, "shap": "flat", "zzz": 1}, "loss[0]")
    issues = info.value.issues
    assert len(issues) == 3
    assert any(i.startswith("loss[0].gama: unknown option; did you mean 'gamma'?") for i in issues)
    assert any("loss[0].shap" in i and "did you mean 'shape'?" in i for i in issues)
    zzz = next(i for i in issues if "zzz" in i)
    assert "did you mean" not in zzz and "Allowed: ['gamma', 'shape']" in zzz


def test_config_value_error_is_reported_with_its_path() -> None:
    with pytest.raises(ConfigError, match=re.escape("loss[2]: gamma must be > 0, got -1")):
        build_dataclass(_Cfg, {"gamma": -1}, "loss[2]")


def test_builtin_registries_use_explicit_snake_case_names() -> None:
    from specframe.config import registries

    for kind, reg in registries().items():
        assert len(reg) > 0, kind
        for name in reg.names():
            assert re.fullmatch(r"[a-z][a-z0-9_]*", name), (kind, name)
            assert reg.get(name).summary, f"{kind} '{name}' has no docstring summary for `specframe list`"
