"""Answers files (`specframe pack-answers`, `data.answers`): replies only, joined with their own prompts."""
from __future__ import annotations

import gzip
import json

import pytest

from specframe.cli import main
from specframe.data.answers import join_answers, pack_answers, prompt_key, read_answers, resolve_answers
from specframe.data import regenerate as regen
from specframe.data.regenerate import RegenerateSettings, regenerate
from specframe.targets import TARGETS

CONVERSATIONS = [
    [{"role": "user", "content": "hi there"}, {"role": "assistant", "content": "human reply 0"}],
    [{"role": "system", "content": "be brief"}, {"role": "user", "content": "what is 2+2?"},
     {"role": "assistant", "content": "human reply 1"}, {"role": "user", "content": "and 3+3?"}],
    [{"role": "user", "content": "name a colour"}, {"role": "assistant", "content": "human reply 2"}],
]


@pytest.fixture(scope="module")
def regenerated(tmp_path_factory):
    tiny = TARGETS.build("tiny", {})
    out = tmp_path_factory.mktemp("regen")
    settings = RegenerateSettings(max_new_tokens=4, batch_size=2, shard_size=2)
    real = regen._generate  # the tiny random target ends its turn at once; give each prompt a distinct reply
    regen._generate = lambda model, tok, prompts, *a: [f"generated reply {len(p)}" for p in prompts]
    try:
        regenerate(tiny.model, tiny.tokenizer, CONVERSATIONS, out, settings, target_name=tiny.name, data="demo",
                   limit=None, progress=False)
    finally:
        regen._generate = real
    return out


def test_pack_keeps_replies_only_and_join_restores_the_regenerated_conversations(regenerated, tmp_path):
    pack = tmp_path / "answers.jsonl.gz"
    header = pack_answers(regenerated, pack)
    text = gzip.open(pack, "rt", encoding="utf-8").read()
    for conversation in CONVERSATIONS:  # no prompt text is stored
        for message in conversation:
            if message["role"] != "assistant":
                assert message["content"] not in text
    rows = [json.loads(line) for shard in sorted(regenerated.glob("shard-*.jsonl"))
            for line in shard.read_text().splitlines()]
    expected = [r["messages"] for r in rows if any(m["role"] == "assistant" and m["content"] for m in r["messages"])]
    assert header["rows"] == len(expected) > 0
    assert join_answers(CONVERSATIONS, pack, source="demo") == expected


def test_join_drops_rows_whose_prompt_changed_and_rows_past_the_limit(regenerated, tmp_path, caplog):
    pack = tmp_path / "answers.jsonl.gz"
    pack_answers(regenerated, pack)
    _, answers = read_answers(pack)
    changed = [list(c) for c in CONVERSATIONS]
    changed[0] = [{"role": "user", "content": "hi there!"}] + changed[0][1:]
    joined = join_answers(changed, pack)
    assert len(joined) == len(answers) - (0 in answers)
    assert all(c[0]["content"] != "hi there!" for c in joined)
    assert "prompt differs" in caplog.text
    assert len(join_answers(CONVERSATIONS[:1], pack)) == (1 if 0 in answers else 0)


def test_prompt_key_depends_on_the_prompt_only():
    a = CONVERSATIONS[1]
    assert prompt_key(a) == prompt_key(a[:2] + [{"role": "assistant", "content": "other"}])
    assert prompt_key(a) != prompt_key([{"role": "user", "content": "what is 2+2?"}])  # the system turn counts


def test_bad_files_are_named(tmp_path, regenerated):
    with pytest.raises(FileNotFoundError, match="specframe pack-answers"):
        resolve_answers(str(tmp_path / "missing.jsonl.gz"))
    plain = tmp_path / "plain.jsonl.gz"
    with gzip.open(plain, "wt") as f:
        f.write('{"row": 1}\n')
    with pytest.raises(ValueError, match="header"):
        read_answers(plain)
    broken = tmp_path / "broken.jsonl.gz"
    with gzip.open(broken, "wt") as f:
        f.write(json.dumps({"format": "specframe-answers", "version": 1}) + "\n{not json\n")
    with pytest.raises(ValueError, match="line 2"):
        read_answers(broken)
    partial = tmp_path / "partial"
    partial.mkdir()
    (partial / "manifest.json").write_text(json.dumps({"complete": False, "settings": {"turns": "first"}}))
    with pytest.raises(ValueError, match="unfinished"):
        pack_answers(partial, tmp_path / "x.jsonl.gz")
    assert not (tmp_path / "x.jsonl.gz").exists()


def test_cli_pack_answers(regenerated, tmp_path, capsys):
    out = tmp_path / "cli.jsonl.gz"
    assert main(["pack-answers", str(regenerated), "--out", str(out)]) == 0
    assert "no prompt text" in capsys.readouterr().out and out.is_file()
    assert main(["pack-answers", str(tmp_path), "--out", str(out)]) == 2
    assert "manifest.json" in capsys.readouterr().err


def test_replies_with_unicode_line_separators_pack_and_join(tmp_path):
    """JSON keeps U+2028 / U+0085 raw inside strings: a shard line must not be split there (a real ShareGPT
    prompt with U+2028 broke `pack-answers` with 'Unterminated string')."""
    tiny = TARGETS.build("tiny", {})
    convs = [[{"role": "user", "content": "part 1\u2028Day one\u0085end"}, {"role": "assistant", "content": "x"}],
             [{"role": "user", "content": "plain"}, {"role": "assistant", "content": "y"}]]
    real = regen._generate
    regen._generate = lambda model, tok, prompts, *a: [f"reply\u2028with separator {len(p)}" for p in prompts]
    try:
        regenerate(tiny.model, tiny.tokenizer, convs, tmp_path / "regen", RegenerateSettings(max_new_tokens=4),
                   target_name=tiny.name, data="demo", limit=None, progress=False)
    finally:
        regen._generate = real
    header = pack_answers(tmp_path / "regen", tmp_path / "a.jsonl.gz")
    joined = join_answers(convs, tmp_path / "a.jsonl.gz", source="demo")
    assert header["rows"] == 2 and [c[0]["content"] for c in joined] == [convs[0][0]["content"], "plain"]
    assert all("\u2028" in c[-1]["content"] for c in joined)
