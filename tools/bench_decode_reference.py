"""Decode speed of specframe's engine against the reference's `dflash_generate`, same weights, one process.

    PYTHONPATH=. python3 tools/bench_decode_reference.py RUN [--prompts 3] [--max-new-tokens 64] \
        [--dtype float32] [--threads 2] [--kernel small_batch|f_linear] [--out bench_decode_reference.json]

Both decode the same chat-rendered prompts (first turns of MT-Bench, HumanEval, GSM8K) with the run's drafter
(exported for the reference) and the run's target in --dtype, greedy, the same EOS ids and budget; each prompt is
decoded by both, alternating which goes first, after one untimed warm-up each. Printed: generated tokens per
second of wall time (prefill included) per engine and the ratio ours / reference; the JSON holds every row.
Both engines run their linear layers with the same --kernel (specframe/decoding/small_batch.py): by default
the small-batch CPU kernel that specframe's engine uses, applied to the reference's drafter and the target too.
A benchmark, not a test: it asserts nothing about time.
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from dflash_reference_parity import GSM8K, first_turn_prompts  # noqa: E402

from specframe.config import LINEAR_KERNELS  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("run")
    ap.add_argument("--prompts", type=int, default=3, help="first turns per benchmark (3 benchmarks)")
    ap.add_argument("--max-new-tokens", type=int, default=64)
    ap.add_argument("--dtype", choices=["float32", "bfloat16"], default="float32")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--gsm8k", default=GSM8K if Path(GSM8K).is_file() else None)
    ap.add_argument("--kernel", choices=LINEAR_KERNELS, default="small_batch")
    ap.add_argument("--out", default="bench_decode_reference.json")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    from specframe.checkpoint import load_trained
    from specframe.decoding.engine import SpeculativeDecoder, eos_ids_of
    from specframe.decoding.small_batch import small_batch_linears
    from specframe.export.reference import load_reference, reference_generate
    from specframe.export.writer import export_drafter
    from specframe.targets import TARGETS

    recipe, target, drafter, vocab = load_trained(args.run)
    if "dtype" in recipe["target"]:
        options = {k: v for k, v in recipe["target"].items() if k != "name"}
        target = TARGETS.build(recipe["target"]["name"], {**options, "dtype": args.dtype}, where="target")
    dtype = getattr(torch, args.dtype)
    drafter = drafter.to(dtype)
    with tempfile.TemporaryDirectory() as tmp:
        export_drafter(drafter, target, vocab, Path(tmp) / "x", engine="reference", dtype=args.dtype)
        ref = load_reference(Path(tmp) / "x", dtype=dtype)
    eos = eos_ids_of(target)
    small = args.kernel == "small_batch"
    dec = SpeculativeDecoder.for_drafter(target, drafter, vocab, "single", eos_ids=eos, small_batch_kernel=small)
    prompts = first_turn_prompts(target.tokenizer, args.prompts, args.gsm8k)

    def ours(ids):
        t0 = time.perf_counter()
        out = dec.generate(ids, max_new_tokens=args.max_new_tokens)
        return len(out.tokens), time.perf_counter() - t0, out.tau

    def theirs(ids):
        t0 = time.perf_counter()
        with small_batch_linears(*((target.model, ref) if small else ())):
            out = reference_generate(ref, target, ids, max_new_tokens=args.max_new_tokens, eos_ids=eos)
        steps = out["per_step"]
        return len(out["tokens"]), time.perf_counter() - t0, (sum(steps) / len(steps) if steps else None)

    ours(prompts[0][1][:32])  # warm-up, untimed
    theirs(prompts[0][1][:32])
    rows = []
    for i, (pid, ids) in enumerate(prompts):
        order = (("ours", ours), ("reference", theirs)) if i % 2 == 0 else (("reference", theirs), ("ours", ours))
        row = {"prompt": pid}
        for name, fn in order:
            n, sec, tau = fn(ids)
            row[name] = {"tokens": n, "seconds": sec, "tokens_per_s": n / sec, "tau": tau}
        rows.append(row)
    total = {k: (sum(r[k]["tokens"] for r in rows), sum(r[k]["seconds"] for r in rows)) for k in ("ours", "reference")}
    tps = {k: n / s for k, (n, s) in total.items()}
    ratio = tps["ours"] / tps["reference"]
    print(f"{'prompt':<14}{'ours tok/s':>11}{'ref tok/s':>11}{'ratio':>8}{'τ ours':>8}{'τ ref':>8}")
    for r in rows:
        print(f"{r['prompt']:<14}{r['ours']['tokens_per_s']:>11.2f}{r['reference']['tokens_per_s']:>11.2f}"
              f"{r['ours']['tokens_per_s'] / r['reference']['tokens_per_s']:>8.3f}"
              f"{r['ours']['tau'] or 0:>8.3f}{r['reference']['tau'] or 0:>8.3f}")
    print(f"{'all':<14}{tps['ours']:>11.2f}{tps['reference']:>11.2f}{ratio:>8.3f}")
    Path(args.out).write_text(json.dumps({"run": args.run, "dtype": args.dtype, "threads": args.threads,
                                          "kernel": args.kernel,
                                          "max_new_tokens": args.max_new_tokens, "tokens_per_s": tps,
                                          "ratio_ours_over_reference": ratio, "rows": rows}, indent=2))
    print(f"written {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
