"""Evaluation prompt sets (specframe/evaluation/prompt_sets.py): MT-Bench, HumanEval, GSM8K, any jsonl."""
from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest

from specframe.evaluation.prompt_sets import Prompt, gsm8k_prompts, humaneval_prompts, jsonl_prompts, mt_bench_prompts

# tests/unit/evaluation/test_prompt_sets.py -> parents[3] is the repository root; the shared folder lies beside it.
GSM8K_SHARED = Path(__file__).resolve().parents[3].parent / "shared" / "data" / "gsm8k" / "test.jsonl"


def test_mt_bench_prompts() -> None:
    prompts = mt_bench_prompts()
    assert len(prompts) == 80
    assert all(isinstance(p, Prompt) and len(p.turns) == 2 for p in prompts)
    assert prompts[0].id == "mt_bench/81"
    assert len({p.id for p in prompts}) == 80
    assert sum(p.reference is not None for p in prompts) > 20
    assert len(mt_bench_prompts(limit=3)) == 3


def test_humaneval_prompts() -> None:
    prompts = humaneval_prompts()
    assert len(prompts) == 164
    first = prompts[0]
    assert first.id == "HumanEval/0"
    assert len(first.turns) == 1
    assert first.turns[0].startswith("Complete the following Python function:\n```python\n")
    assert "def has_close_elements" in first.turns[0] and first.turns[0].endswith("\n```")
    assert first.reference is not None and "def has_close_elements" in first.reference


def test_gsm8k_prompts_shared_file() -> None:
    if not GSM8K_SHARED.is_file():
        pytest.skip(f"{GSM8K_SHARED} is absent")
    prompts = gsm8k_prompts(GSM8K_SHARED)
    assert len(prompts) == 1319
    assert prompts[0].id == "gsm8k/0"
    assert prompts[0].reference is not None and "####" in prompts[0].reference
    assert len(gsm8k_prompts(GSM8K_SHARED, limit=10)) == 10


def test_gsm8k_env_and_missing(tmp_path: Path, monkeypatch) -> None:
    path = tmp_path / "g.jsonl"
    path.write_text(json.dumps({"question": "1+1?", "answer": "2\n#### 2"}) + "\n")
    monkeypatch.setenv("SPECFRAME_GSM8K", str(path))
    assert gsm8k_prompts() == [Prompt(id="gsm8k/0", turns=["1+1?"], reference="2\n#### 2")]
    monkeypatch.setenv("SPECFRAME_GSM8K", str(tmp_path / "nope.jsonl"))
    with pytest.raises(FileNotFoundError, match="SPECFRAME_GSM8K"):
        gsm8k_prompts()


def test_jsonl_prompts_fields(tmp_path: Path) -> None:
    rows = [
        {"prompt": "p"},
        {"question": "q", "answer": "a"},
        {"id": "x", "turns": ["t1", "t2"], "reference": ["r1", "r2"]},
        {"messages": [{"role": "user", "content": "m1"}, {"role": "assistant", "content": "r"},
                      {"role": "user", "content": "m2"}]},
    ]
    path = tmp_path / "set.jsonl.gz"
    with gzip.open(path, "wt") as handle:
        handle.write("\n".join(json.dumps(r) for r in rows))
    prompts = jsonl_prompts(path)
    assert prompts == [
        Prompt("set/0", ["p"]),
        Prompt("set/1", ["q"], "a"),
        Prompt("x", ["t1", "t2"], "r1"),
        Prompt("set/3", ["m1", "m2"]),
    ]
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"text": "t"}) + "\n")
    with pytest.raises(ValueError, match=r"bad\.jsonl:1: expected a 'prompt', 'question', 'turns' or 'messages'"):
        jsonl_prompts(bad)
    with pytest.raises(FileNotFoundError):
        jsonl_prompts(tmp_path / "absent.jsonl")
