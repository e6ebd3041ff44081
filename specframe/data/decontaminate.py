"""Never train on benchmark prompts: drop training conversations whose user turns match an evaluation prompt.

τ_real is measured on MT-Bench, HumanEval and GSM8K prompts (specframe/evaluation/prompt_sets.py). A drafter
that saw those prompts, or the target's answers to them, in training would be measured on its training data.
ShareGPT is scraped chat logs and does contain pasted benchmark questions, so every training source is checked
(`data.exclude_benchmarks`, default on), regenerated or not: the check looks at the user turns, which
regeneration keeps.

A conversation is dropped when one of its user turns
  - shares a run of `NGRAM` consecutive words with a benchmark prompt (the usual n-gram decontamination test;
    catches a question pasted inside a longer message), or
  - equals a benchmark prompt shorter than `NGRAM` words, after normalisation.
Words are lower-cased runs of letters and digits, so whitespace, punctuation and code indentation do not matter.
"""
from __future__ import annotations

import logging
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

log = logging.getLogger(__name__)

NGRAM = 13
"""Words in a shared run that counts as a match (13, as in the GPT-3 decontamination study)."""
DEFAULT_BENCHMARKS = ("mt_bench", "humaneval", "gsm8k")
_WORD = re.compile(r"[^\W_]+", re.UNICODE)


def words(text: str) -> list[str]:
    return _WORD.findall(text.lower())


def _ngrams(ws: Sequence[str], n: int) -> Iterable[tuple[str, ...]]:
    return (tuple(ws[i:i + n]) for i in range(len(ws) - n + 1))


@dataclass
class BenchmarkIndex:
    """The benchmark prompts as n-grams (long prompts) and whole word sequences (short ones)."""

    n: int = NGRAM
    grams: dict[tuple[str, ...], str] = field(default_factory=dict)
    short: dict[tuple[str, ...], str] = field(default_factory=dict)
    sources: dict[str, int] = field(default_factory=dict)
    """Benchmark name -> number of prompt turns indexed."""

    def add(self, benchmark: str, prompt_id: str, text: str) -> None:
        ws = words(text)
        if not ws:
            return
        if len(ws) < self.n:
            self.short.setdefault(tuple(ws), prompt_id)
        else:
            for g in _ngrams(ws, self.n):
                self.grams.setdefault(g, prompt_id)
        self.sources[benchmark] = self.sources.get(benchmark, 0) + 1

    def match(self, text: str) -> str | None:
        """The id of a benchmark prompt that `text` contains (or is), else None."""
        ws = words(text)
        if tuple(ws) in self.short:
            return self.short[tuple(ws)]
        if len(ws) >= self.n:
            for g in _ngrams(ws, self.n):
                hit = self.grams.get(g)
                if hit is not None:
                    return hit
        return None


def _loaders() -> dict[str, Callable[[], list[Any]]]:
    from specframe.evaluation.prompt_sets import gsm8k_prompts, humaneval_prompts, mt_bench_prompts

    return {"mt_bench": mt_bench_prompts, "humaneval": humaneval_prompts, "gsm8k": gsm8k_prompts}


def benchmark_index(benchmarks: Sequence[str] = DEFAULT_BENCHMARKS, n: int = NGRAM) -> BenchmarkIndex:
    """Index every prompt turn of the named benchmarks (all prompts, not only the ones evaluated).

    A benchmark whose data is not installed cannot be checked: it is skipped with a warning that names it (and
    it cannot be evaluated on this machine either).
    """
    loaders = _loaders()
    unknown = [b for b in benchmarks if b not in loaders]
    if unknown:
        raise ValueError(f"cannot decontaminate against {unknown}: known benchmarks are {sorted(loaders)}")
    index = BenchmarkIndex(n=n)
    for name in benchmarks:
        try:
            prompts = loaders[name]()
        except (FileNotFoundError, RuntimeError, ImportError) as e:
            log.warning("benchmark check: %s prompts are not available here, not checked (%s)", name, e)
            continue
        for p in prompts:
            for turn in p.turns:
                index.add(name, p.id, turn)
                if name == "humaneval":  # the bare stub too, as it would appear pasted without our wrapper
                    index.add(name, p.id, p.reference or "")
    return index


def drop_benchmark_conversations(conversations: Sequence[Any], index: BenchmarkIndex
                                 ) -> tuple[list[Any], list[tuple[int, str]]]:
    """(kept conversations, [(position, matched prompt id)] of the dropped ones)."""
    kept, dropped = [], []
    for i, conv in enumerate(conversations):
        hit = None
        for m in conv:
            if m.get("role") == "user":
                hit = index.match(m.get("content") or "")
                if hit:
                    break
        if hit:
            dropped.append((i, hit))
        else:
            kept.append(conv)
    return kept, dropped
