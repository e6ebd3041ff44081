"""Training data never contains a benchmark prompt (data.exclude_benchmarks)."""
from __future__ import annotations

import pytest

from specframe.data import decontaminate
from specframe.data.decontaminate import BenchmarkIndex, benchmark_index, drop_benchmark_conversations
from specframe.evaluation.prompt_sets import Prompt

GSM = ("Natalia sold clips to 48 of her friends in April, and then she sold half as many clips in May. "
       "How many clips did Natalia sell altogether in April and May?")


def conv(user: str, answer: str = "ok") -> list[dict[str, str]]:
    return [{"role": "user", "content": user}, {"role": "assistant", "content": answer}]


@pytest.fixture
def fake_benchmarks(monkeypatch):
    monkeypatch.setattr(decontaminate, "_loaders", lambda: {
        "gsm8k": lambda: [Prompt(id="gsm8k/0", turns=[GSM])],
        "mt_bench": lambda: [Prompt(id="mt_bench/81", turns=["Write a haiku.", "Now make it rhyme."])],
        "humaneval": lambda: [],
    })


def test_pasted_question_is_found_inside_a_longer_message(fake_benchmarks):
    index = benchmark_index()
    pasted = "hey can you help me with my homework??\n\n" + GSM.upper().replace(" ", "  ") + "\nthanks"
    convs = [conv("What is the capital of France?"), conv(pasted), conv("write a HAIKU!"), conv("Write a haiku about")]
    kept, dropped = drop_benchmark_conversations(convs, index)
    assert dropped == [(1, "gsm8k/0"), (2, "mt_bench/81")]
    assert kept == [convs[0], convs[3]]  # a short prompt matches only as a whole message


def test_only_user_turns_are_checked(fake_benchmarks):
    index = benchmark_index()
    kept, dropped = drop_benchmark_conversations([conv("solve this", answer=GSM)], index)
    assert not dropped and len(kept) == 1


def test_a_twelve_word_overlap_is_not_a_match():
    index = BenchmarkIndex(n=13)
    index.add("x", "x/0", " ".join(f"w{i}" for i in range(30)))
    assert index.match(" ".join(f"w{i}" for i in range(12))) is None
    assert index.match("prefix " + " ".join(f"w{i}" for i in range(5, 18))) == "x/0"


def test_unknown_benchmark_is_refused():
    with pytest.raises(ValueError, match="known benchmarks"):
        benchmark_index(["gsm8kk"])


def test_load_rows_drops_benchmark_conversations(fake_benchmarks, caplog):
    """The training pipeline applies the check by default and says what it dropped."""
    from specframe.config import DataConfig
    from specframe.data.rows import load_rows
    from specframe.data.tiny_tokenizer import tiny_tokenizer

    convs = [conv(f"question number {i} about something", answer="a fine answer") for i in range(6)] + [conv(GSM)]
    cfg = DataConfig(val_conversations=2, max_length=512, min_supervised=1)
    tok = tiny_tokenizer()
    with caplog.at_level("WARNING"):
        train, val, val_convs = load_rows(cfg, tok, seed=0, conversations=convs)
    assert len(train) + len(val) == 6 and "dropped 1 of 7" in caplog.text and "gsm8k/0" in caplog.text
    cfg_off = DataConfig(val_conversations=2, max_length=512, min_supervised=1, exclude_benchmarks=False)
    train, val, _ = load_rows(cfg_off, tok, seed=0, conversations=convs)
    assert len(train) + len(val) == 7


def test_real_benchmarks_are_indexed_when_installed():
    """With the benchmark packages of the dev install, a real GSM8K/HumanEval prompt is caught."""
    index = benchmark_index()
    if not index.sources.get("gsm8k") or not index.sources.get("humaneval"):
        pytest.skip("benchmark data not installed")
    from specframe.evaluation.prompt_sets import gsm8k_prompts, humaneval_prompts

    q = gsm8k_prompts(limit=1)[0].turns[0]
    stub = humaneval_prompts(limit=1)[0].reference
    assert index.match("Please solve: " + q) == "gsm8k/0"
    assert index.match("fix my code\n" + stub) == "HumanEval/0"
