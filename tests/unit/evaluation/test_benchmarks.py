"""Benchmark registry: offline sets load, jsonl files work, hub sets fail clearly offline."""
from __future__ import annotations

import types

import pytest

from specframe.data import sources
from specframe.errors import ConfigError
from specframe.evaluation.benchmarks import BENCHMARKS, build_benchmark


def test_registered_names():
    assert set(BENCHMARKS.names()) == {"mt_bench", "humaneval", "gsm8k", "jsonl", "math500", "mbpp", "aime",
                                       "livecodebench", "alpaca"}
    hub = {e.name for e in BENCHMARKS.entries() if e.meta.get("hub")}
    assert hub == {"math500", "mbpp", "aime", "livecodebench", "alpaca"}
    assert all(e.summary for e in BENCHMARKS.entries())


def test_offline_sets():
    mt = build_benchmark("mt_bench").prompts(2)
    assert len(mt) == 2 and all(len(p.turns) == 2 for p in mt)
    assert len(build_benchmark("humaneval").prompts(3)) == 3
    gsm = build_benchmark("gsm8k").prompts(2)
    assert len(gsm) == 2 and gsm[0].reference and "####" in gsm[0].reference


def test_jsonl_path_and_errors(tmp_path):
    path = tmp_path / "mine.jsonl"
    path.write_text('{"prompt": "hi"}\n{"turns": ["a", "b"]}\n')
    prompts = build_benchmark(str(path)).prompts(None)
    assert [p.turns for p in prompts] == [["hi"], ["a", "b"]]
    with pytest.raises(ConfigError, match="needs a path"):
        build_benchmark("jsonl")
    with pytest.raises(ConfigError, match="Did you mean 'gsm8k'"):
        build_benchmark("gsm8kk")


def test_hub_sets_offline_error_and_formatting(monkeypatch):
    def offline(*args, **kwargs):
        raise ConnectionError("no network")

    monkeypatch.setattr(sources, "_import_datasets", lambda what: types.SimpleNamespace(load_dataset=offline))
    with pytest.raises(RuntimeError, match="HuggingFaceH4/MATH-500.*need network access"):
        build_benchmark("math500").prompts(2)

    rows = [{"instruction": "Name a colour.", "input": ""}, {"instruction": "Add", "input": "2 and 3"}]
    fake = types.SimpleNamespace(load_dataset=lambda name, subset, split: rows)
    monkeypatch.setattr(sources, "_import_datasets", lambda what: fake)
    prompts = build_benchmark("alpaca").prompts(5)
    assert [p.turns[0] for p in prompts] == ["Name a colour.", "Add\n\n2 and 3"]
    assert [p.id for p in prompts] == ["alpaca/0", "alpaca/1"]
