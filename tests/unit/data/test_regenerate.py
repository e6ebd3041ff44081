"""`specframe regenerate` with the tiny target: resumable shards, determinism, and reading the folder back."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from specframe.cli import main
from specframe.data import regenerate as regen
from specframe.data.regenerate import PerRowSampler, RegenerateSettings, regenerate
from specframe.data.sources import load_conversations
from specframe.targets import TARGETS

CONVERSATIONS = [
    [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "old 0"}],
    [{"role": "system", "content": "be brief"}, {"role": "user", "content": "what is 2+2?"},
     {"role": "assistant", "content": "old 1"}, {"role": "user", "content": "and 3+3?"},
     {"role": "assistant", "content": "old 1b"}],
    [{"role": "user", "content": "name a colour"}, {"role": "assistant", "content": "old 2"}],
    [{"role": "user", "content": "x"}, {"role": "assistant", "content": "old 3"},
     {"role": "user", "content": "y"}, {"role": "assistant", "content": "old 3b"}],
    [{"role": "user", "content": "last one"}, {"role": "assistant", "content": "old 4"}],
]


@pytest.fixture(scope="module")
def tiny():
    return TARGETS.build("tiny", {})


def settings(**kw) -> RegenerateSettings:
    return RegenerateSettings(**{"max_new_tokens": 3, "batch_size": 2, "shard_size": 2, **kw})


def run(tiny, out, s, **kw):
    return regenerate(tiny.model, tiny.tokenizer, CONVERSATIONS, out, s, target_name=tiny.name, data="test",
                      limit=None, progress=False, **kw)


def shard_texts(out: Path) -> dict[str, str]:
    return {p.name: p.read_text() for p in sorted(out.glob("shard-*.jsonl"))}


@pytest.mark.parametrize("s", [
    pytest.param(settings(), id="greedy_first"),
    pytest.param(settings(temperature=1.5, top_p=0.9, turns="all", seed=7), id="sampled_all", marks=pytest.mark.slow),
])
def test_interrupted_then_resumed_equals_uninterrupted(tiny, tmp_path, monkeypatch, s):
    full = run(tiny, tmp_path / "full", s)
    assert full["complete"] and full["num_shards"] == 3
    reference = shard_texts(tmp_path / "full")
    rows = [json.loads(line) for text in reference.values() for line in text.splitlines()]
    assert [r["id"] for r in rows] == list(range(len(CONVERSATIONS)))

    calls = {"n": 0}
    real = regen.generate_replies

    def failing(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] > 1 + (s.turns == "all"):  # fail inside the second shard, like a killed job
            raise KeyboardInterrupt("simulated interruption")
        return real(*args, **kwargs)

    monkeypatch.setattr(regen, "_generate", failing)
    with pytest.raises(KeyboardInterrupt):
        run(tiny, tmp_path / "resumed", s)
    partial = tmp_path / "resumed"
    assert list(shard_texts(partial)) == ["shard-00000.jsonl"]  # the half-written shard never got its name
    assert json.loads((partial / "manifest.json").read_text())["complete"] is False

    seen_prompts: list[int] = []

    def counting(model, tokenizer, prompts, *args, **kwargs):
        seen_prompts.append(len(prompts))
        return real(model, tokenizer, prompts, *args, **kwargs)

    monkeypatch.setattr(regen, "_generate", counting)
    resumed = run(tiny, partial, s)
    assert resumed["complete"]
    assert shard_texts(partial) == reference  # row for row, byte for byte
    users = [sum(m["role"] == "user" for m in c) if s.turns == "all" else 1 for c in CONVERSATIONS]
    assert sum(seen_prompts) == sum(users[2:])  # only shards 1 and 2 were generated, not shard 0
    assert not list(partial.glob("*.tmp"))


def test_rows_keep_user_turns_and_record_sampling(tiny, tmp_path):
    run(tiny, tmp_path, settings(turns="all", temperature=0.8, seed=3))
    rows = [json.loads(line) for p in sorted(tmp_path.glob("shard-*.jsonl")) for line in p.read_text().splitlines()]
    row = rows[1]
    assert [m["role"] for m in row["messages"]] == ["system", "user", "assistant", "user", "assistant"]
    assert [m["content"] for m in row["messages"] if m["role"] != "assistant"] == ["be brief", "what is 2+2?",
                                                                                   "and 3+3?"]
    assert all(not m["content"].startswith("old") for r in rows for m in r["messages"])
    assert row["sampling"] == {"temperature": 0.8, "top_p": 1.0, "max_new_tokens": 3, "target": tiny.name,
                               "seed": 4}
    greedy = tmp_path / "greedy"
    run(tiny, greedy, settings())  # turns=first: one exchange per row
    first = json.loads((greedy / "shard-00000.jsonl").read_text().splitlines()[1])
    assert [m["role"] for m in first["messages"]] == ["system", "user", "assistant"]
    assert first["sampling"]["seed"] is None


def test_too_long_prompt_stops_the_row(tiny, tmp_path):
    # The byte-level prompt of 'hi' is 21 tokens, of 'name a colour' 32.
    run(tiny, tmp_path, settings(max_prompt_tokens=25, temperature=1.0, turns="all"))
    rows = [json.loads(line) for p in sorted(tmp_path.glob("shard-*.jsonl")) for line in p.read_text().splitlines()]
    assert len(rows) == len(CONVERSATIONS)
    assert [m["role"] for m in rows[2]["messages"]] == ["user"]
    assert [m["role"] for m in rows[0]["messages"]] == ["user", "assistant"] and rows[0]["messages"][1]["content"]
    assert [m["role"] for m in rows[3]["messages"]] == ["user", "assistant"]  # 'y' after a reply is too long
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    assert manifest["rows_without_reply"] == sum(
        1 for r in rows if not any(m["role"] == "assistant" and m["content"] for m in r["messages"])) >= 2


def test_unicode_line_separators_inside_a_row_do_not_split_it(tiny, tmp_path):
    """U+2028 / U+0085 are line breaks to str.splitlines() but not to JSON Lines: the manifest step and the
    reader must split on '\\n' only (a real ShareGPT prompt with U+2028 once crashed the final manifest write)."""
    odd = [[{"role": "user", "content": "line one\u2028line two\x85three"}, {"role": "assistant", "content": "x"}],
           *CONVERSATIONS[:2]]
    manifest = regenerate(tiny.model, tiny.tokenizer, odd, tmp_path, settings(), target_name=tiny.name, data="test",
                          limit=None, progress=False)
    rows = [json.loads(line) for p in sorted(tmp_path.glob("shard-*.jsonl"))
            for line in p.read_text(encoding="utf-8").split("\n") if line]
    assert len(rows) == 3 and rows[0]["messages"][0]["content"] == "line one\u2028line two\x85three"
    assert manifest["complete"] and manifest["rows_without_reply"] == sum(
        1 for r in rows if not any(m["role"] == "assistant" and m["content"] for m in r["messages"]))
    # the reader of such folders splits on '\n' only, too
    (tmp_path / "shard-00000.jsonl").write_text(json.dumps({"messages": [
        {"role": "user", "content": "a\u2028b"}, {"role": "assistant", "content": "c\x85d"}]}, ensure_ascii=False) + "\n")
    for p in tmp_path.glob("shard-0000[1-9].jsonl"):
        p.unlink()
    assert load_conversations(str(tmp_path))[0][1]["content"] == "c\x85d"


def test_per_row_sampler_ignores_batch_neighbours_and_respects_top_p():
    scores = torch.log(torch.tensor([[0.6, 0.3, 0.1], [0.2, 0.3, 0.5]]))
    picks = []
    for _ in range(50):
        sampler = PerRowSampler(1.0, 0.5, [torch.Generator().manual_seed(i) for i in range(2)])
        out = sampler(torch.zeros(2, 1, dtype=torch.long), scores)
        picks.append(out.argmax(-1).tolist())
        assert torch.isinf(out).sum() == 4  # one finite logit per row
    assert {p[0] for p in picks} == {0}  # top-p 0.5 keeps only the 0.6 token
    alone = PerRowSampler(1.0, 1.0, [torch.Generator().manual_seed(5)])
    pair = PerRowSampler(1.0, 1.0, [torch.Generator().manual_seed(5), torch.Generator().manual_seed(9)])
    flat = torch.zeros(1, 50)
    a = [int(alone(None, flat).argmax()) for _ in range(20)]
    b = [int(pair(None, flat.expand(2, 50)).argmax(-1)[0]) for _ in range(20)]
    assert a == b and len(set(a)) > 1


def test_cli_resumes_reads_back_and_refuses_mixed_settings(tmp_path, capsys):
    data = tmp_path / "chats.jsonl"
    data.write_text("".join(json.dumps({"messages": c}) + "\n" for c in CONVERSATIONS))
    recipe = tmp_path / "tiny_target.yaml"
    recipe.write_text("target: {name: tiny}\n")
    out = tmp_path / "regen"
    argv = ["regenerate", "--target-recipe", str(recipe), "--data", str(data), "--out", str(out),
            "--max-new-tokens", "3", "--batch-size", "2", "--shard-size", "2", "--no-progress",
            "--temperature", "1.0"]  # the random tiny target's greedy replies are blank lines
    assert main(argv + ["--max-shards", "1"]) == 0
    assert "run the same command again" in capsys.readouterr().out
    assert [p.name for p in sorted(out.glob("*.jsonl"))] == ["shard-00000.jsonl"]
    with pytest.raises(ValueError, match="data.allow_partial=true"):  # an incomplete folder is refused ...
        load_conversations(str(out))
    assert len(load_conversations(str(out), allow_partial=True)) == 2  # ... unless the user says so
    assert main(argv) == 0
    assert "wrote 5 conversations in 3 shards" in capsys.readouterr().out

    rows = [json.loads(line) for p in sorted(out.glob("shard-*.jsonl")) for line in p.read_text().splitlines()]
    convs = load_conversations(str(out))
    assert convs == [r["messages"] for r in rows if r["messages"][-1]["role"] == "assistant" and
                     all(m["content"] for m in r["messages"])]
    assert load_conversations(str(out), limit=3) == convs[:3]

    assert main(argv + ["--top-p", "0.5"]) == 2
    assert "other settings" in capsys.readouterr().err
