"""`block_size: auto` at evaluation: pick the decode-time block size from measured decoding speed.

A verify step over B tokens costs more than a one-token step, and how much more depends on the machine: on 2 CPU
cores a 16-token verify of SmolLM2 costs about twice a 1-token step, a 4-token one little more than one step
(docs/results.md). Drafted slot k is only useful when slots 1..k-1 were accepted, so a weak drafter gains from a
small block and a strong one from a large block. Neither τ nor the cost alone decides; their ratio does.

The choice is made by measurement, not by a model of the cost: for every candidate B (powers of two from 2 up
to the drafter's block size), decode a few **pilot** prompts with that block and time it; the block with the most
tokens per second of decoding wins. The pilot prompts are the prompts right after the evaluated ones in each
benchmark (prompt num_prompts, num_prompts + 1, ...), so the choice never looks at a prompt it is then scored
on. The measured table goes into the report: the choice is transparent and can be repeated with `--block-size`.

Changing the block does not change what τ_real means (committed tokens per verify step at temperature 0, target
output identical); it changes only how many drafts each step offers.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

AUTO = "auto"


@dataclass(frozen=True, kw_only=True)
class PilotRow:
    block_size: int
    tokens: int
    steps: int
    seconds: float

    @property
    def tokens_per_second(self) -> float:
        return self.tokens / self.seconds if self.seconds > 0 else 0.0

    @property
    def tau(self) -> float:
        return self.tokens / self.steps if self.steps else 0.0


def candidate_block_sizes(max_block: int) -> list[int]:
    """2, 4, 8, ... up to and including the drafter's block size."""
    sizes, b = [], 2
    while b < max_block:
        sizes.append(b)
        b *= 2
    return sizes + [max_block]


def pilot_prompts(target: Any, benchmarks: list[str], options: dict[str, dict[str, Any]], skip: int,
                  per_benchmark: int = 1) -> list[list[int]]:
    """First turns of the prompts after the first `skip` of each benchmark (those are the evaluated ones)."""
    from specframe.data.chat import render_prompt
    from specframe.evaluation.benchmarks import build_benchmark

    out = []
    for name in benchmarks:
        prompts = build_benchmark(name, options.get(name)).prompts(skip + per_benchmark)[skip:]
        for p in prompts:
            out.append(render_prompt(target.tokenizer, [{"role": "user", "content": p.turns[0]}]))
    return out


def measure(target: Any, drafter: Any, vocab: Any, strategy: Any, prompts: list[list[int]], sizes: list[int],
            max_new_tokens: int, eos_ids: set[int], small_batch_kernel: bool = True) -> list[PilotRow]:
    """Greedy speculative decoding of every pilot prompt at every block size; decode time only (no prefill)."""
    from specframe.decoding.engine import SpeculativeDecoder

    rows = []
    for i, B in enumerate(sizes):
        dec = SpeculativeDecoder.for_drafter(target, drafter, vocab, strategy, block_size=B, eos_ids=eos_ids,
                                             small_batch_kernel=small_batch_kernel)
        if i == 0 and prompts:  # untimed warm-up: first calls pay for allocations
            dec.generate(prompts[0], max_new_tokens=min(8, max_new_tokens))
        tokens = steps = 0
        seconds = 0.0
        for ids in prompts:
            out = dec.generate(ids, max_new_tokens=max_new_tokens)
            tokens += sum(s.committed for s in out.steps)
            steps += len(out.steps)
            seconds += out.decode_seconds
        rows.append(PilotRow(block_size=B, tokens=tokens, steps=steps, seconds=seconds))
    return rows


def best(rows: list[PilotRow]) -> int:
    """The block size with the most decoded tokens per second (ties: the larger block)."""
    if not rows:
        raise ValueError("no pilot measurement to choose a block size from")
    return max(rows, key=lambda r: (round(r.tokens_per_second, 6), r.block_size)).block_size


def choose_block_size(target: Any, drafter: Any, vocab: Any, strategy: Any, *, benchmarks: list[str],
                      options: dict[str, dict[str, Any]], skip: int, max_new_tokens: int, eos_ids: set[int],
                      per_benchmark: int = 1, small_batch_kernel: bool = True) -> tuple[int, dict[str, Any]]:
    """(chosen block size, a report entry with the measured table)."""
    sizes = candidate_block_sizes(int(drafter.block_size))
    prompts = pilot_prompts(target, benchmarks, options, skip, per_benchmark)
    if not prompts:
        return int(drafter.block_size), {"chosen": int(drafter.block_size), "reason": "no pilot prompt left"}
    was_training = drafter.training
    drafter.eval()
    try:
        rows = measure(target, drafter, vocab, strategy, prompts, sizes, max_new_tokens, eos_ids, small_batch_kernel)
    finally:
        drafter.train(was_training)
    chosen = best(rows)
    table = [{"block_size": r.block_size, "tau": round(r.tau, 4), "tokens_per_second": round(r.tokens_per_second, 3),
              "tokens": r.tokens, "steps": r.steps, "seconds": round(r.seconds, 4)} for r in rows]
    return chosen, {"chosen": chosen, "pilot_prompts": len(prompts), "pilot_max_new_tokens": max_new_tokens,
                    "rule": "most decoded tokens/s over the pilot prompts (prompts after the evaluated ones)",
                    "table": table}


def format_choice(entry: dict[str, Any]) -> str:
    lines = [f"block size auto -> {entry['chosen']} ({entry.get('reason') or entry.get('rule')})"]
    for r in entry.get("table", []):
        lines.append(f"  B={r['block_size']:>3}  τ {r['tau']:.3f}  {r['tokens_per_second']:.1f} tok/s")
    return "\n".join(lines)
