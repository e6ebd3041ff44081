"""Real-decoding parity with the reference: `dflash_generate` and specframe's engine on the same exported weights.

    PYTHONPATH=. python3 tools/dflash_reference_parity.py RUN [--prompts 7] [--max-new-tokens 48] \
        [--out parity.json]

The run's drafter is exported for the reference (`specframe export --engine reference`), both decoders get the
SmolLM2 (or the run's) target in float32, temperature 0, the same chat-rendered prompts (first turns of
MT-Bench, HumanEval and GSM8K), the same EOS ids and budget. Printed: per prompt, whether the generated tokens
are identical and whether the tokens committed per verify step are identical (ours: accepted + 1, cut at EOS or
the budget; the reference's `acceptance_lengths`). Needs `pip install --no-deps dflash==0.1.0`.
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import torch

GSM8K = "/work/shared/data/gsm8k/test.jsonl"


def first_turn_prompts(tokenizer, per_benchmark: int, gsm8k_path: str | None) -> list[tuple[str, list[int]]]:
    from specframe.data.chat import render_prompt
    from specframe.evaluation.benchmarks import build_benchmark

    out = []
    for name, opts in (("mt_bench", {}), ("humaneval", {}), ("gsm8k", {"path": gsm8k_path} if gsm8k_path else {})):
        for i, p in enumerate(build_benchmark(name, opts).prompts(per_benchmark)):
            out.append((f"{name}/{i}", render_prompt(tokenizer, [{"role": "user", "content": p.turns[0]}])))
    return out


def load_pair(run: str, out_dir: Path):
    """(target in float32, our drafter, vocab, the reference's drafter from our export)."""
    from specframe.checkpoint import load_trained
    from specframe.export.reference import load_reference
    from specframe.export.writer import export_dflash
    from specframe.targets import TARGETS

    recipe, target, drafter, vocab = load_trained(run)
    if "dtype" in recipe["target"]:  # e.g. a bfloat16 SmolLM2 in training: rebuilt in float32 for parity
        options = {k: v for k, v in recipe["target"].items() if k != "name"}
        target = TARGETS.build(recipe["target"]["name"], {**options, "dtype": "float32"}, where="target")
    export_dflash(run, out_dir, engine="reference", force=True)
    return target, drafter.float(), vocab, load_reference(out_dir)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("run")
    ap.add_argument("--prompts", type=int, default=7, help="first turns per benchmark (3 benchmarks)")
    ap.add_argument("--max-new-tokens", type=int, default=48)
    ap.add_argument("--gsm8k", default=GSM8K if Path(GSM8K).is_file() else None)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", default="dflash_reference_parity.json")
    ap.add_argument("--dump-prompts", help="also write the prompts' token ids here (for tools/vllm_cpu_dflash.py)")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    from specframe.decoding.engine import SpeculativeDecoder, eos_ids_of
    from specframe.export.reference import reference_generate

    with tempfile.TemporaryDirectory() as tmp:
        target, drafter, vocab, ref = load_pair(args.run, Path(tmp) / "export")
    eos = eos_ids_of(target)
    ours_dec = SpeculativeDecoder.for_drafter(target, drafter, vocab, "single", eos_ids=eos)
    prompts = first_turn_prompts(target.tokenizer, args.prompts, args.gsm8k)
    if args.dump_prompts:
        Path(args.dump_prompts).write_text(json.dumps([ids for _, ids in prompts]))
    rows = []
    print(f"{'prompt':<14}{'tokens':>7}{'steps':>6}  same tokens  same per-step  τ ours  τ ref")
    for pid, ids in prompts:
        t0 = time.perf_counter()
        ours = ours_dec.generate(ids, max_new_tokens=args.max_new_tokens, temperature=0.0)
        theirs = reference_generate(ref, target, ids, max_new_tokens=args.max_new_tokens, eos_ids=eos)
        ours_steps = [s.committed for s in ours.steps]
        row = {"prompt": pid, "tokens": len(ours.tokens), "same_tokens": ours.tokens == theirs["tokens"],
               "same_per_step": ours_steps == theirs["per_step"], "ours_per_step": ours_steps,
               "reference_per_step": theirs["per_step"], "tau_ours": ours.tau,
               "tau_reference": (sum(theirs["per_step"]) / len(theirs["per_step"])) if theirs["per_step"] else None,
               "seconds": time.perf_counter() - t0}
        rows.append(row)
        print(f"{pid:<14}{row['tokens']:>7}{len(ours_steps):>6}  {str(row['same_tokens']):<11}  "
              f"{str(row['same_per_step']):<13}  {row['tau_ours'] or 0:.3f}  {row['tau_reference'] or 0:.3f}")
    n = len(rows)
    same_t = sum(r["same_tokens"] for r in rows)
    same_s = sum(r["same_per_step"] for r in rows)
    steps = sum(len(r["ours_per_step"]) for r in rows)
    same_each = sum(a == b for r in rows for a, b in zip(r["ours_per_step"], r["reference_per_step"]))
    summary = {"run": args.run, "max_new_tokens": args.max_new_tokens, "prompts": n, "identical_tokens": same_t,
               "identical_per_step": same_s, "steps": steps, "steps_identical": same_each,
               "dtype": "float32", "temperature": 0.0, "rows": rows}
    Path(args.out).write_text(json.dumps(summary, indent=2))
    print(f"\nidentical tokens {same_t}/{n}; identical committed-per-step sequences {same_s}/{n} "
          f"({same_each}/{steps} steps); written {args.out}")
    return 0 if same_t == n and same_s == n else 1


if __name__ == "__main__":
    sys.exit(main())
