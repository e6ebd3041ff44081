"""Errors that users see: each says what is wrong, where, what is allowed and how to fix it."""
from __future__ import annotations

import difflib
from collections.abc import Iterable


def closest(word: str, choices: Iterable[str]) -> str | None:
    """The allowed name closest to a misspelt one, or None when none is close."""
    close = difflib.get_close_matches(word, list(choices), n=1)
    return close[0] if close else None


def did_you_mean(word: str, choices: Iterable[str]) -> str:
    """"; did you mean 'x'?" for the closest allowed name, or "" (appended to an error line)."""
    match = closest(word, choices)
    return f"; did you mean '{match}'?" if match else ""


class ConfigError(ValueError):
    """One or more problems with a recipe, reported together.

    Attributes:
        issues: one human-readable line per problem, each naming its config path.
    """

    def __init__(self, issues: list[str] | str):
        self.issues = [issues] if isinstance(issues, str) else list(issues)
        n = len(self.issues)
        head = "1 problem" if n == 1 else f"{n} problems"
        super().__init__(f"{head} in the recipe:\n" + "\n".join(f"  - {i}" for i in self.issues))


class PluginImportError(ImportError):
    """A plugin named by a recipe, the CLI or an entry point failed to import."""


class RunError(RuntimeError):
    """A run stopped for a reason the user must act on (another writer, a changed recipe, a non-finite loss).

    The message is complete on its own: the CLI prints it as one `error:` line, without a traceback.
    """
