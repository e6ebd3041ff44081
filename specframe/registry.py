"""One small registry class; specframe has one instance per kind of component.

    from specframe.losses import LOSS_TERMS

    @LOSS_TERMS.register("my_term", config=MyTermConfig)
    class MyTermLoss: ...

Names are explicit lower_snake_case strings; a duplicate name is an error naming both definitions; an unknown
name is an error with the closest match, the sorted valid names and how to load a plugin.
"""
from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from specframe.errors import ConfigError, closest, did_you_mean

T = TypeVar("T")
_NAME = re.compile(r"^[a-z][a-z0-9_]*$")


@dataclass(frozen=True)
class Entry(Generic[T]):
    """A registered component: its name, the object that builds it, its typed config and metadata."""

    name: str
    obj: T
    config: type | None
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def summary(self) -> str:
        """First line of the component's docstring (what `specframe list` prints)."""
        doc = (getattr(self.obj, "__doc__", None) or "").strip()
        return doc.splitlines()[0] if doc else ""

    @property
    def origin(self) -> str:
        return f"{getattr(self.obj, '__module__', '?')}:{getattr(self.obj, '__qualname__', repr(self.obj))}"

    def make_config(self, kwargs: dict[str, Any], where: str) -> Any:
        """Build this entry's config dataclass from recipe kwargs; unknown or bad keys raise ConfigError."""
        if self.config is None:
            if kwargs:
                raise ConfigError(f"{where}: '{self.name}' takes no options, got {sorted(kwargs)}")
            return None
        return build_dataclass(self.config, kwargs, where)

    def build(self, kwargs: dict[str, Any] | None = None, where: str = "", **extra: Any) -> T:
        cfg = self.make_config(dict(kwargs or {}), where or self.name)
        factory: Callable[..., Any] = self.obj  # type: ignore[assignment]
        return factory(cfg, **extra) if self.config is not None else factory(**extra)


def build_dataclass(cls: type, kwargs: dict[str, Any], where: str) -> Any:
    """Instantiate config dataclass `cls` from kwargs, reporting every unknown key with suggestions."""
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    issues = []
    for key in kwargs:
        if key not in fields:
            issues.append(f"{where}.{key}: unknown option{did_you_mean(key, fields)} Allowed: {sorted(fields)}")
    if issues:
        raise ConfigError(issues)
    try:
        return cls(**kwargs)
    except ConfigError as e:
        raise ConfigError([f"{where}: {i}" for i in e.issues]) from None
    except (TypeError, ValueError) as e:
        raise ConfigError(f"{where}: {e}") from None


class Registry(Generic[T]):
    """A named set of components of one kind (drafters, targets, loss terms, alignment strategies, ...)."""

    def __init__(self, kind: str):
        self.kind = kind
        self._entries: dict[str, Entry[T]] = {}

    def register(self, name: str, *, config: type | None = None, **meta: Any) -> Callable[[T], T]:
        """Decorator that registers a class or factory under `name` with its config dataclass and metadata."""
        if not _NAME.match(name):
            raise ValueError(f"{self.kind} name {name!r} must be lower_snake_case (letters, digits, '_')")
        if config is not None and not dataclasses.is_dataclass(config):
            raise TypeError(f"{self.kind} '{name}': config must be a dataclass, got {config!r}")

        def deco(obj: T) -> T:
            new = Entry(name, obj, config, dict(meta))
            if name in self._entries:
                old = self._entries[name]
                raise ValueError(
                    f"duplicate {self.kind} name '{name}': already registered by {old.origin}, "
                    f"registered again by {new.origin}. Pick another name for one of them."
                )
            self._entries[name] = new
            return obj

        return deco

    def get(self, name: str, where: str = "") -> Entry[T]:
        """The entry called `name`; an unknown name raises ConfigError with a suggestion and the valid names."""
        if name in self._entries:
            return self._entries[name]
        match = closest(str(name), self.names())
        hint = f" Did you mean '{match}'?" if match else ""
        loc = f"{where}: " if where else ""
        raise ConfigError(
            f"{loc}unknown {self.kind} '{name}'.{hint} Valid names: {self.names()}. "
            f"A {self.kind} from a plugin needs the plugin loaded: list it under `plugins:` in the recipe, "
            f"pass --plugin MODULE, or install a package with a 'specframe.plugins' entry point."
        )

    def build(self, name: str, kwargs: dict[str, Any] | None = None, where: str = "", **extra: Any) -> T:
        return self.get(name, where).build(kwargs, where or name, **extra)

    def names(self) -> list[str]:
        return sorted(self._entries)

    def entries(self) -> list[Entry[T]]:
        return [self._entries[n] for n in self.names()]

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        return len(self._entries)

    @contextmanager
    def isolated(self) -> Iterator[Registry[T]]:
        """Snapshot the registry and restore it afterwards (for tests that register throwaway entries)."""
        saved = dict(self._entries)
        try:
            yield self
        finally:
            self._entries = saved

    def __repr__(self) -> str:
        return f"Registry({self.kind!r}, {self.names()})"
