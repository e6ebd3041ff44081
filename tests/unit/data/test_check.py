"""Data problems are named at validate time, before any model loads (issue 10, item 5)."""
from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from specframe.config import DataConfig
from specframe.data.check import check_data
from specframe.data.sources import load_conversations, skip_reason

GOOD = [{"role": "user", "content": "Hi?"}, {"role": "assistant", "content": "Hello there."}]


def jsonl(path: Path, rows: list, raw: bytes = b"") -> str:
    path.write_bytes(b"".join(json.dumps(r).encode() + b"\n" for r in rows) + raw)
    return str(path)


def issues(train: str, **kw) -> list[str]:
    return check_data(DataConfig(train=train, val_conversations=kw.pop("val", 2), **kw))


def test_good_file_passes(tmp_path: Path) -> None:
    assert issues(jsonl(tmp_path / "d.jsonl", [{"messages": GOOD}] * 4)) == []


def test_missing_file_and_folder_named_like_a_file(tmp_path: Path) -> None:
    assert issues(str(tmp_path / "nope.jsonl")) == [f"data.train: {tmp_path / 'nope.jsonl'} does not exist"]
    (tmp_path / "d.jsonl").mkdir()
    assert "is a folder, not a file" in issues(str(tmp_path / "d.jsonl"))[0]
    with pytest.raises(ValueError, match="is a folder, not a file"):
        load_conversations(str(tmp_path / "d.jsonl"))


def test_empty_file(tmp_path: Path) -> None:
    (tmp_path / "e.jsonl").write_text("\n")
    assert issues(str(tmp_path / "e.jsonl")) == [f"data.train: {tmp_path / 'e.jsonl'} is empty"]


def test_unicode_line_separators_inside_strings_are_not_line_breaks(tmp_path: Path) -> None:
    """json.dumps(ensure_ascii=False) leaves U+2028 / U+0085 raw inside strings: still one record per line."""
    turns = [{"role": "user", "content": "part 1\u2028Day one\u0085end"}, {"role": "assistant", "content": "ok"}]
    path = tmp_path / "u.jsonl"
    path.write_text("".join(json.dumps({"messages": turns}, ensure_ascii=False) + "\n" for _ in range(4)),
                    encoding="utf-8")
    assert issues(str(path)) == []


def test_broken_json_line_named(tmp_path: Path) -> None:
    path = jsonl(tmp_path / "b.jsonl", [{"messages": GOOD}] * 2, b"{oops\n")
    assert issues(path) == [f"data.train: {path}:3: not valid JSON (Expecting property name enclosed in double "
                            "quotes at column 2)"]


def test_non_utf8_byte_offset(tmp_path: Path) -> None:
    first = json.dumps({"messages": GOOD}).encode() + b"\n"
    path = tmp_path / "l.jsonl"
    path.write_bytes(first + b'{"messages": "caf\xe9"}\n')
    offset = len(first) + len(b'{"messages": "caf')
    assert issues(str(path)) == [f"data.train: {path} is not UTF-8: byte offset {offset} (line 2) is b'\\xe9' "
                                 "(invalid continuation byte); re-encode the file as UTF-8"]


@pytest.mark.parametrize("turns,reason", [
    ([{"role": "user", "content": "hi"}], "no assistant turn"),
    ([{"role": "system", "content": "be nice"}], "only system messages"),
    ([{"from": "narrator", "value": "x"}, *GOOD], "unknown role 'narrator'"),
])
def test_unusable_records_counted_with_reasons(tmp_path: Path, turns, reason) -> None:
    assert skip_reason(turns) == reason
    path = jsonl(tmp_path / "u.jsonl", [{"messages": turns}] * 5)
    [issue] = issues(path)
    assert f"gives 0 usable conversation(s) (of 5 records)" in issue
    assert f"skipped 5 of 5 records: 5 {reason}" in issue


def test_skipped_records_get_a_summary_line(tmp_path: Path, caplog) -> None:
    rows = [{"conversations": [{"from": "tool", "value": "x"}, {"from": "human", "value": "q"},
                               {"from": "gpt", "value": "a"}]}] * 2 + [{"messages": GOOD}] * 3
    with caplog.at_level(logging.WARNING):
        assert len(load_conversations(jsonl(tmp_path / "r.jsonl", rows))) == 3
    assert "skipped 2 of 5 records: 2 unknown role 'tool'" in caplog.text


def test_negative_limit_refused() -> None:
    with pytest.raises(ValueError, match="limit must be null"):
        DataConfig(limit=-1)


def test_partial_regenerate_folder_refused_unless_allowed(tmp_path: Path) -> None:
    folder = tmp_path / "regen"
    folder.mkdir()
    jsonl(folder / "shard-00000.jsonl", [{"messages": GOOD}] * 4)
    (folder / "manifest.json").write_text(json.dumps({"complete": False}))
    assert "partial `specframe regenerate` folder" in issues(str(folder))[0]
    with pytest.raises(ValueError, match="data.allow_partial=true"):
        load_conversations(str(folder))
    assert issues(str(folder), allow_partial=True) == []
    assert len(load_conversations(str(folder), allow_partial=True)) == 4
