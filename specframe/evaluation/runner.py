"""Evaluate a drafter by decoding for real: τ, acceptance histograms, speedup over target-only decoding.

Per benchmark and per response (a user turn; MT-Bench has two per question, the second asked after the
model's own first answer), in this order on the same prompt tokens:
  1. target-only decoding (the baseline: its time, and at temperature 0 the reference output),
  2. oracle decoding, optional: drafts are the baseline's own output (the τ ceiling at this block size),
  3. speculative decoding with the drafter and the test-time strategy.
Numbers (docs/evaluation.md): τ is the mean over responses of each response's committed tokens per verify
step; τ pooled is all committed tokens over all verify steps; speedup is target-only decode time per token over
speculative decode time per token (pooled over the benchmark's responses, prefill excluded).
"""
from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from specframe.atomic_files import write_text as atomic_write
from specframe.config import EvalConfig
from specframe.data.chat import render_prompt
from specframe.decoding.engine import (DecodeResult, SpeculativeDecoder, build_strategy, eos_ids_of,
                                       target_only_decode)
from specframe.evaluation.benchmarks import build_benchmark


@dataclass(kw_only=True)
class EvalSettings(EvalConfig):
    """An EvalConfig (the recipe's `eval:` section, with its checks) plus the switches of one evaluation run."""

    benchmark_options: dict[str, dict[str, Any]] = field(default_factory=dict)
    """Per-benchmark options, e.g. {"gsm8k": {"path": "test.jsonl"}}."""
    baseline: bool = True
    """Run target-only decoding too (needed for speedup and the losslessness check)."""
    oracle: bool = False
    """Also decode with the oracle drafter (the target's own greedy continuation): the τ ceiling."""
    seed: int = 0
    warmup: bool = True
    """One short untimed decode of each kind first (first calls pay for allocations and lazy set-up)."""
    progress: bool = True

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.oracle and self.temperature > 0:
            raise ValueError("the oracle drafts the target's greedy continuation: it is defined at temperature 0 "
                             "only (drop --oracle or use --temperature 0)")


@dataclass(kw_only=True)
class ResponseRecord:
    """One response: its speculative decode and, when run, the baseline and oracle beside it."""

    benchmark: str
    prompt_id: str
    turn: int
    prompt_tokens: int
    tokens: int  # generated tokens (speculative)
    stop_reason: str
    accepted: list[int]  # per verify step
    committed: list[int]
    widths: list[int]
    tau: float | None
    decode_seconds: float
    decode_tokens: int
    target_decode_seconds: float | None = None
    target_decode_tokens: int | None = None
    identical: bool | None = None  # temperature 0: speculative output == target-only output
    oracle_tau: float | None = None
    oracle_decode_seconds: float | None = None
    oracle_decode_tokens: int | None = None


def record_of(out: DecodeResult, *, benchmark: str, prompt_id: str, turn: int, base: DecodeResult | None = None,
              oracle: DecodeResult | None = None, greedy: bool = True) -> ResponseRecord:
    """The record of one speculative decode, with the baseline's and the oracle's numbers when they ran."""
    return ResponseRecord(
        benchmark=benchmark, prompt_id=prompt_id, turn=turn, prompt_tokens=out.prompt_length, tokens=len(out.tokens),
        stop_reason=out.stop_reason, accepted=[st.accepted for st in out.steps],
        committed=[st.committed for st in out.steps], widths=[st.width for st in out.steps], tau=out.tau,
        decode_seconds=out.decode_seconds, decode_tokens=out.decode_tokens,
        target_decode_seconds=base.decode_seconds if base else None,
        target_decode_tokens=base.decode_tokens if base else None,
        identical=(out.tokens == base.tokens) if base is not None and greedy else None,
        oracle_tau=oracle.tau if oracle else None,
        oracle_decode_seconds=oracle.decode_seconds if oracle else None,
        oracle_decode_tokens=oracle.decode_tokens if oracle else None,
    )


def response_text(tokenizer: Any, tokens: list[int], eos_ids: set[int]) -> str:
    return tokenizer.decode([t for t in tokens if t not in eos_ids], skip_special_tokens=True)


class Evaluator:
    """Runs benchmarks with one drafter and collects ResponseRecords and summaries."""

    def __init__(self, target: Any, drafter: nn.Module, vocab: Any, settings: EvalSettings):
        self.target, self.drafter, self.vocab, self.s = target, drafter, vocab, settings
        if settings.block_size == "auto":
            raise ValueError("block_size auto must be resolved first (specframe.evaluation.block_choice)")
        self.block_size = settings.block_size or drafter.block_size
        self.strategy = build_strategy(settings.strategy)
        self.eos = eos_ids_of(target)
        self.spec = SpeculativeDecoder.for_drafter(target, drafter, vocab, self.strategy, block_size=self.block_size,
                                                   eos_ids=self.eos, small_batch_kernel=settings.small_batch_kernel)
        self._warm = not settings.warmup

    def respond(self, prompt_ids: list[int], benchmark: str, prompt_id: str, turn: int,
                seed: int) -> tuple[ResponseRecord, DecodeResult]:
        """Target-only, oracle (optional) and speculative decoding of one prompt, in that order."""
        s = self.s
        base = oracle = None
        if s.baseline or s.oracle:
            base = target_only_decode(self.target, prompt_ids, max_new_tokens=s.max_new_tokens,
                                      temperature=s.temperature, seed=seed, eos_ids=self.eos,
                                      small_batch_kernel=self.s.small_batch_kernel)
        if s.oracle and base is not None:
            oracle = SpeculativeDecoder.oracle(self.target, prompt_ids + base.tokens, "single",
                                               block_size=self.block_size, eos_ids=self.eos).generate(
                prompt_ids, max_new_tokens=s.max_new_tokens)
        out = self.spec.generate(prompt_ids, max_new_tokens=s.max_new_tokens, temperature=s.temperature, seed=seed)
        rec = record_of(out, benchmark=benchmark, prompt_id=prompt_id, turn=turn, base=base, oracle=oracle,
                        greedy=s.temperature == 0)
        return rec, out

    def warm_up(self, prompt_ids: list[int]) -> None:
        """One short untimed decode of each kind (the first calls pay for allocations and lazy set-up)."""
        self._warm = True
        n = min(8, self.s.max_new_tokens)
        target_only_decode(self.target, prompt_ids, max_new_tokens=n, eos_ids=self.eos,
                           small_batch_kernel=self.s.small_batch_kernel)
        self.spec.generate(prompt_ids, max_new_tokens=n)

    def run_benchmark(self, name: str) -> list[ResponseRecord]:
        from tqdm.auto import tqdm

        s = self.s
        bench = build_benchmark(name, s.benchmark_options.get(name))
        prompts = bench.prompts(s.num_prompts)
        tok = self.target.tokenizer
        records: list[ResponseRecord] = []
        for i, prompt in enumerate(tqdm(prompts, desc=f"eval {bench.name}", disable=not s.progress, leave=False)):
            messages: list[dict[str, str]] = []
            for turn, text in enumerate(prompt.turns):
                messages.append({"role": "user", "content": text})
                ids = render_prompt(tok, messages)
                if not self._warm:
                    self.warm_up(ids)
                rec, out = self.respond(ids, bench.name, prompt.id, turn, seed=s.seed + 1000 * i + turn)
                records.append(rec)
                # The next turn follows the model's own answer; being lossless, it is the target's answer.
                messages.append({"role": "assistant", "content": response_text(tok, out.tokens, self.eos)})
        return records

    def run(self, on_benchmark: Any = None) -> dict[str, Any]:
        """Every benchmark in turn; `on_benchmark(report_so_far)` is called after each one finishes."""
        was_training = self.drafter.training
        self.drafter.eval()
        per_bench: dict[str, list[ResponseRecord]] = {}
        try:
            for name in self.s.benchmarks:
                per_bench[name] = self.run_benchmark(name)
                if on_benchmark is not None and len(per_bench) < len(self.s.benchmarks):
                    on_benchmark(self._report(per_bench))
        finally:
            self.drafter.train(was_training)
        return self._report(per_bench)

    def _report(self, per_bench: dict[str, list[ResponseRecord]]) -> dict[str, Any]:
        summaries = {name: summarize(recs, self.block_size) for name, recs in per_bench.items()}
        return {
            "settings": {**asdict(self.s), "block_size": self.block_size},  # linear_kernel: both decodings
            "summary": summaries,
            "overall": overall(summaries, [r for recs in per_bench.values() for r in recs], self.block_size),
            "responses": [asdict(r) for recs in per_bench.values() for r in recs],
        }


def _ratio(num: float, den: float) -> float | None:
    return num / den if den > 0 else None


def summarize(records: list[ResponseRecord], block_size: int) -> dict[str, Any]:
    """Aggregate numbers of a set of responses (see the module docstring for each definition)."""
    scored = [r for r in records if r.tau is not None]
    accepted = [a for r in records for a in r.accepted]
    steps = len(accepted)
    committed = sum(sum(r.committed) for r in records)
    hist = [0] * block_size
    for a in accepted:
        hist[a] += 1
    spec_tps = _ratio(sum(r.decode_tokens for r in records), sum(r.decode_seconds for r in records))
    out: dict[str, Any] = {
        "responses": len(records),
        "tau": sum(r.tau for r in scored) / len(scored) if scored else None,  # type: ignore[misc]
        "tau_pooled": _ratio(committed, steps),
        "verify_steps": steps,
        "decode_tokens": sum(r.decode_tokens for r in records),
        "accept_hist": hist,
        "slot_acceptance": [_ratio(sum(a >= k for a in accepted), steps) for k in range(1, block_size)],
        "verify_width": _ratio(sum(sum(r.widths) for r in records), steps),
        "spec_tokens_per_s": spec_tps,
    }
    based = [r for r in records if r.target_decode_seconds is not None]
    if based:
        target_tps = _ratio(sum(r.target_decode_tokens or 0 for r in based),
                            sum(r.target_decode_seconds or 0.0 for r in based))
        out["target_tokens_per_s"] = target_tps
        out["speedup"] = _ratio(spec_tps or 0.0, target_tps or 0.0) if spec_tps and target_tps else None
        checked = [r.identical for r in based if r.identical is not None]
        out["identical"] = f"{sum(checked)}/{len(checked)}" if checked else None
    oracled = [r for r in records if r.oracle_decode_seconds is not None]
    if oracled:
        o_scored = [r.oracle_tau for r in oracled if r.oracle_tau is not None]
        out["oracle_tau"] = sum(o_scored) / len(o_scored) if o_scored else None
        o_tps = _ratio(sum(r.oracle_decode_tokens or 0 for r in oracled),
                       sum(r.oracle_decode_seconds or 0.0 for r in oracled))
        out["oracle_speedup"] = _ratio(o_tps or 0.0, out["target_tokens_per_s"] or 0.0) if o_tps and out.get(
            "target_tokens_per_s") else None
    return out


def overall(summaries: dict[str, dict[str, Any]], records: list[ResponseRecord], block_size: int) -> dict[str, Any]:
    """τ averaged over benchmarks (the field's headline number) plus everything pooled over all responses."""
    taus = [s["tau"] for s in summaries.values() if s["tau"] is not None]
    pooled = summarize(records, block_size)
    return {**pooled, "tau_mean_over_benchmarks": sum(taus) / len(taus) if taus else None}


# -- reports ---------------------------------------------------------------------------------------------------
def _fmt(x: Any, digits: int = 3) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "-"
    if isinstance(x, float):
        return f"{x:.{digits}f}"
    return str(x)


def markdown(report: dict[str, Any], title: str = "Real-decoding evaluation") -> str:
    st = report["settings"]
    strat = ", ".join(f"{k}={v}" for k, v in st["strategy"].items())
    lines = [
        f"# {title}", "",
        f"block size {st['block_size']}, strategy {strat}, temperature {st['temperature']}, "
        f"max_new_tokens {st['max_new_tokens']}, {st['num_prompts']} prompts per benchmark, "
        f"linear kernel {st.get('linear_kernel', 'f_linear')}", "",
        "| benchmark | responses | τ | τ pooled | verify width | spec tok/s | target tok/s | speedup | "
        "oracle τ | oracle speedup | greedy identical |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    rows = list(report["summary"].items()) + [("all", report["overall"])]
    for name, s in rows:
        tau = s["tau_mean_over_benchmarks"] if name == "all" else s["tau"]
        lines.append(
            f"| {name} | {s['responses']} | {_fmt(tau)} | {_fmt(s['tau_pooled'])} | {_fmt(s['verify_width'], 1)} | "
            f"{_fmt(s['spec_tokens_per_s'], 1)} | {_fmt(s.get('target_tokens_per_s'), 1)} | "
            f"{_fmt(s.get('speedup'), 2)} | {_fmt(s.get('oracle_tau'))} | {_fmt(s.get('oracle_speedup'), 2)} | "
            f"{_fmt(s.get('identical'))} |"
        )
    B = st["block_size"]
    lines += ["", "τ of `all` is the mean of the benchmarks' τ; its other columns pool every response.", "",
              "## Accepted drafts per verify step (a; τ of a step = a + 1)", "",
              "| benchmark | " + " | ".join(f"a={a}" for a in range(B)) + " |",
              "|---|" + "---|" * B]
    for name, s in rows:
        lines.append(f"| {name} | " + " | ".join(str(c) for c in s["accept_hist"]) + " |")
    lines += ["", "## Per-slot acceptance P(a >= k)", "",
              "| benchmark | " + " | ".join(f"k={k}" for k in range(1, B)) + " |", "|---|" + "---|" * (B - 1)]
    for name, s in rows:
        lines.append(f"| {name} | " + " | ".join(_fmt(x) for x in s["slot_acceptance"]) + " |")
    choice = report.get("block_choice")
    if choice and choice.get("table"):
        lines += ["", f"## Block size: auto -> {choice['chosen']}", "",
                  f"Chosen by {choice['rule']}; {choice['pilot_prompts']} pilot prompts, "
                  f"{choice['pilot_max_new_tokens']} new tokens each.", "",
                  "| B | τ (pilot) | decoded tok/s (pilot) |", "|---|---|---|"]
        lines += [f"| {r['block_size']} | {r['tau']:.3f} | {r['tokens_per_second']:.1f} |" for r in choice["table"]]
    return "\n".join(lines) + "\n"


def report_tag(settings: dict[str, Any]) -> str:
    """A file name that tells eval runs apart: strategy, block size, temperature, prompts, tokens."""
    strat = settings["strategy"].get("name", "single")
    opts = "".join(f"_{k}{v}" for k, v in sorted(settings["strategy"].items()) if k != "name")
    return (f"{strat}{opts}_b{settings['block_size']}_t{settings['temperature']:g}_n{settings['num_prompts']}"
            f"_m{settings['max_new_tokens']}")


def write_partial(report: dict[str, Any], out_dir: Path) -> Path:
    """<out_dir>/<tag>.partial.json: the benchmarks finished so far (a later failure keeps them). Never read as
    a finished evaluation: `write_report` removes it when the whole report is written."""
    path = out_dir / f"{report_tag(report['settings'])}.partial.json"
    atomic_write(path, json.dumps({**report, "complete": False}, indent=2))
    return path


def write_report(report: dict[str, Any], out_dir: Path, title: str) -> tuple[Path, Path]:
    """Write <out_dir>/<tag>.json and .md atomically; returns both paths."""
    tag = report_tag(report["settings"])
    json_path, md_path = out_dir / f"{tag}.json", out_dir / f"{tag}.md"
    atomic_write(json_path, json.dumps(report, indent=2))
    atomic_write(md_path, markdown(report, title))
    (out_dir / f"{tag}.partial.json").unlink(missing_ok=True)
    return json_path, md_path


@torch.no_grad()
def decode_tau(target: Any, drafter: nn.Module, vocab: Any, prompts: list[list[int]], *, max_new_tokens: int,
               temperature: float = 0.0, strategy: Any = None, block_size: int | None = None,
               seed: int = 0, small_batch_kernel: bool = True) -> dict[str, Any]:
    """τ_real of a few prompts (no baseline): mean over responses, pooled, and per-slot acceptance."""
    dec = SpeculativeDecoder.for_drafter(target, drafter, vocab, strategy, block_size=block_size,
                                         small_batch_kernel=small_batch_kernel)
    records = []
    for i, ids in enumerate(prompts):
        out = dec.generate(ids, max_new_tokens=max_new_tokens, temperature=temperature, seed=seed + i)
        records.append(record_of(out, benchmark="", prompt_id=str(i), turn=0))
    return summarize(records, dec.block_size)
