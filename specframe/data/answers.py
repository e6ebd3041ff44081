"""Target answers kept apart from the prompts they answer (`data.answers`), so that they can be shipped.

`specframe regenerate` writes whole conversations: the dataset's prompts with the target's replies. Prompts are
third-party text; the replies are ours (the target's greedy output under our settings). An answers file keeps only
the replies, keyed by the row of the source conversation they answer and a hash of its prompt:

    {"format": "specframe-answers", "version": 1, "target": ..., "data": ..., "settings": {...}}   (header line)
    {"row": 17, "key": "3f2a9c0d1e4b5a67", "answer": "..."}                                       (one per row)

gzip-compressed jsonl. At load time `join_answers` puts each reply after its prompt (system turn, if any, and
first user turn), read from the same source; a row whose prompt hash differs (another version of the data) is
dropped and counted, never joined to the wrong prompt.

    specframe regenerate --data sharegpt --limit 2000 --max-prompt-tokens 160 --out data/regen
    specframe pack-answers data/regen --out answers.jsonl.gz
    # recipe: data: {train: sharegpt, answers: answers.jsonl.gz}

No answers file is shipped with the package yet (docs/results.md §0: regenerated answers were not shown to raise
τ_real at CPU budgets).
"""
from __future__ import annotations

import gzip
import hashlib
import json
import logging
from pathlib import Path
from typing import Any

from specframe.atomic_files import atomic_path
from specframe.data.sources import _iter_jsonl

log = logging.getLogger(__name__)

FORMAT = "specframe-answers"
VERSION = 1


def prompt_of(conversation: list[dict[str, str]]) -> list[dict[str, str]]:
    """The turns a first-turn reply answers: a leading system turn, if any, and the first user turn."""
    head = [m for m in conversation[:1] if m["role"] == "system"]
    first_user = next((m for m in conversation if m["role"] == "user"), None)
    return head + ([first_user] if first_user is not None else [])


def prompt_key(conversation: list[dict[str, str]]) -> str:
    """A short hash of `prompt_of(conversation)` (roles and text): identifies the prompt without storing it."""
    canon = json.dumps([[m["role"], m["content"]] for m in prompt_of(conversation)], ensure_ascii=False)
    return hashlib.sha256(canon.encode("utf-8")).hexdigest()[:16]


def resolve_answers(path_text: str) -> Path:
    """The answers file at `path_text`; FileNotFoundError saying how to make one otherwise."""
    path = Path(path_text).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"answers file {path_text!r} does not exist; write one with "
                                "`specframe regenerate ... --turns first` then `specframe pack-answers`")
    return path


def read_answers(path: str | Path) -> tuple[dict[str, Any], dict[int, tuple[str, str]]]:
    """(header, {row: (key, answer)}) of an answers file; ValueError naming the file and line on bad content."""
    path = Path(path)
    rows: dict[int, tuple[str, str]] = {}
    with gzip.open(path, "rt", encoding="utf-8") as handle:
        try:
            header = json.loads(handle.readline())
        except (json.JSONDecodeError, OSError, EOFError) as e:
            raise ValueError(f"{path}: not a gzip jsonl answers file ({e})") from None
        if not isinstance(header, dict) or header.get("format") != FORMAT:
            raise ValueError(f"{path}: line 1 is not a {FORMAT} header (write the file with "
                             "`specframe pack-answers`)")
        if header.get("version") != VERSION:
            raise ValueError(f"{path}: answers format version {header.get('version')}, this specframe reads {VERSION}")
        for number, line in enumerate(handle, start=2):
            if not line.strip():
                continue
            try:
                item = json.loads(line)
                rows[int(item["row"])] = (str(item["key"]), str(item["answer"]))
            except (json.JSONDecodeError, KeyError, TypeError, ValueError) as e:
                raise ValueError(f"{path}: line {number}: not an answer row ({e})") from None
    return header, rows


def pack_answers(regenerated: str | Path, out: str | Path) -> dict[str, Any]:
    """Write the answers file of a complete `specframe regenerate --turns first` folder; returns its header."""
    folder = Path(regenerated)
    manifest_path = folder / "manifest.json"
    if not manifest_path.is_file():
        raise FileNotFoundError(f"{folder} has no manifest.json: not a `specframe regenerate` folder")
    manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    settings = manifest.get("settings", {})
    if not manifest.get("complete"):
        raise ValueError(f"{folder} is unfinished (manifest.json: complete=false); rerun `specframe regenerate`")
    if settings.get("turns") != "first":
        raise ValueError(f"{folder} answers {settings.get('turns')!r} turns; an answers file holds first-turn "
                         "replies only (regenerate with --turns first)")
    header = {"format": FORMAT, "version": VERSION, "target": settings.get("target"), "data": settings.get("data"),
              "settings": settings}
    count = 0
    with atomic_path(Path(out)) as tmp, gzip.open(tmp, "wt", encoding="utf-8", compresslevel=9) as handle:
        handle.write(json.dumps(header, ensure_ascii=False) + "\n")
        for shard in manifest["shards"]:
            for _, row in _iter_jsonl(folder / shard):
                replies = [m["content"] for m in row["messages"] if m["role"] == "assistant" and m["content"]]
                if not replies:
                    continue
                item = {"row": row["id"], "key": prompt_key(row["messages"]), "answer": replies[0]}
                handle.write(json.dumps(item, ensure_ascii=False) + "\n")
                count += 1
    header["rows"] = count
    return header


def join_answers(conversations: list[list[dict[str, str]]], path: str | Path, source: str | None = None
                 ) -> list[list[dict[str, str]]]:
    """The conversations that have an answer, each as its prompt followed by that answer, in row order.

    Rows past the end of `conversations` (a smaller `data.limit`) are not used; a row whose prompt hash does not
    match is dropped and counted in one warning.
    """
    header, answers = read_answers(path)
    if source is not None and header.get("data") not in (None, source):
        log.warning("answers file %s was made from data %r; joining it with %r (rows whose prompt differs are "
                    "dropped)", path, header.get("data"), source)
    joined, mismatched = [], 0
    for row in sorted(answers):
        if row >= len(conversations):
            break
        key, answer = answers[row]
        conversation = conversations[row]
        if prompt_key(conversation) != key:
            mismatched += 1
            continue
        joined.append(prompt_of(conversation) + [{"role": "assistant", "content": answer}])
    log.warning("answers %s: %d of the %d conversations read have a target answer%s", Path(path).name, len(joined),
                len(conversations), f"; {mismatched} dropped (prompt differs from the one answered)" if mismatched
                else "")
    return joined
