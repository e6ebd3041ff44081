"""What `specframe validate` (and `train`, before any model loads) checks about a recipe's training data.

Local files and folders are read in full, without a tokenizer: they exist, are files (or a folder of shards),
are UTF-8 (else the byte offset), parse (else file and line), and hold enough usable conversations (else how
many were skipped and why). The built-in `sharegpt` source is only located; a hub dataset is not touched.
"""
from __future__ import annotations

import io
import os
from pathlib import Path
from typing import Any

from specframe.data import sources


def check_data(cfg: Any) -> list[str]:
    """One issue per problem with `cfg.train` (a DataConfig); [] when training can read it."""
    train = cfg.train
    if not isinstance(train, str):
        return [f"data.train: expected a source name or path, got {train!r}"]
    if train == "sharegpt":
        try:
            sources.sharegpt_package_path()
        except FileNotFoundError as e:
            return [f"data.train: {e}"]
        return []
    path = Path(train).expanduser()
    lowered = train.lower()
    if lowered.endswith((".json", ".jsonl")) or path.exists():
        if not path.exists():
            return [f"data.train: {path} does not exist"]
        if path.is_dir() and lowered.endswith((".json", ".jsonl")):
            return [f"data.train: {path} is a folder, not a file (a folder of *.jsonl shards must not be named "
                    ".json/.jsonl)"]
        if not os.access(path, os.R_OK):
            return [f"data.train: {path} is not readable"]
        if path.is_dir():
            shards = sorted(path.glob("*.jsonl"))
            if not shards:
                return [f"data.train: {path} holds no *.jsonl files (expected shard-00000.jsonl, ...)"]
            partial = sources.partial_folder_issue(path)
            if partial and not cfg.allow_partial:
                return [f"data.train: {partial}"]
            return _check_records(shards, cfg)
        if not lowered.endswith((".json", ".jsonl")):
            return [f"data.train: {path} is an existing path but not a .json or .jsonl file"]
        return _check_records([path], cfg)
    if train.startswith(("/", "./", "../", "~")) or train.count("/") >= 2:  # a local path, not a hub owner/name
        return [f"data.train: {path} does not exist (make it first, e.g. `specframe regenerate ... --out {train}`)"]
    return []  # a hub dataset id, or an unknown name that load_conversations explains


def _check_records(files: list[Path], cfg: Any) -> list[str]:
    total = usable = 0
    reasons: dict[str, int] = {}
    for path in files:
        raw = path.read_bytes()
        if not raw.strip():
            return [f"data.train: {path} is empty"]
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as e:
            line = raw.count(b"\n", 0, e.start) + 1
            return [f"data.train: {path} is not UTF-8: byte offset {e.start} (line {line}) is "
                    f"{raw[e.start:e.start + 1]!r} ({e.reason}); re-encode the file as UTF-8"]
        try:
            records = _records(path, text)
        except ValueError as e:
            return [f"data.train: {e}"]
        for turns in records:
            total += 1
            why = sources.skip_reason(turns)
            if why is None:
                usable += 1
            else:
                reasons[why] = reasons.get(why, 0) + 1
    where = files[0] if len(files) == 1 else files[0].parent
    need = cfg.val_conversations + 1
    if cfg.limit is not None:
        usable = min(usable, cfg.limit)
    if usable < max(2, need):
        skipped = f"; {sources.skipped_summary(reasons, total, where)}" if reasons else ""
        return [f"data.train: {where} gives {usable} usable conversation(s) (of {total} records); a run needs at "
                f"least {max(2, need)} (data.val_conversations={cfg.val_conversations} held out, plus one to "
                f"train on){skipped}"]
    return []


def _records(path: Path, text: str) -> list[Any]:
    """The raw turn lists of a .json (ShareGPT array) or .jsonl file; ValueError names file and line."""
    if path.suffix.lower() == ".json":
        return [r.get("conversations", r.get("messages")) if isinstance(r, dict) else None
                for r in sources._iter_json_array(path)]
    out = []
    for lineno, row in sources._jsonl_rows(path, io.StringIO(text)):
        if isinstance(row, dict) and ("messages" in row or "conversations" in row):
            out.append(row["messages"] if "messages" in row else row["conversations"])
        elif isinstance(row, list):
            out.append(row)
        else:
            keys = sorted(row) if isinstance(row, dict) else type(row).__name__
            raise ValueError(f"{path}:{lineno}: expected an object with a 'messages' (OpenAI) or 'conversations' "
                             f"(ShareGPT) list, found {keys}")
    return out
