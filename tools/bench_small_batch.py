"""What the small-batch linear kernel does to a decode step and to speculative decoding, one process, on CPU.

    PYTHONPATH=. python3 tools/bench_small_batch.py [RUN] [--widths 1 2 4 8 16] [--repeats 9] \
        [--prompts 2] [--max-new-tokens 64] [--block-sizes 2 4 8 16] [--threads 2] [--out bench_small_batch.json]

Part 1 (always): one target forward of W tokens on a KV cache of a 40-token prompt, with F.linear and with the
small-batch kernel (specframe/decoding/small_batch.py), alternating, median of --repeats; printed as ms and as a
multiple of the 1-token F.linear forward (what a verify of W tokens costs in target steps).
Part 2 (with RUN, a trained run folder or checkpoint): target-only and speculative decoding of the first turns of
MT-Bench, HumanEval and GSM8K with each kernel at each block size: tokens per second of decode time, τ, and the
speedup over target-only decoding with the same kernel. Greedy outputs are compared with target-only decoding.
The target runs in float32 (the kernel only applies there). A benchmark, not a test: it asserts nothing.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from dflash_reference_parity import GSM8K, first_turn_prompts  # noqa: E402

from specframe.config import LINEAR_KERNELS  # noqa: E402

KERNELS = tuple(sorted(LINEAR_KERNELS))  # ("f_linear", "small_batch"): the reference kernel first


def forward_costs(target, widths: list[int], repeats: int) -> dict[str, dict[str, float]]:
    from specframe.decoding.small_batch import small_batch_linears
    from specframe.decoding.target_cache import forward_with_cache, new_cache

    model, P = target.model, 40
    V = int(model.config.vocab_size)
    cache = new_cache(model)
    with torch.inference_mode():
        forward_with_cache(model, (torch.arange(P).unsqueeze(0) + 100) % V, torch.arange(P).unsqueeze(0), cache)
        times: dict[str, dict[str, list[float]]] = {k: {str(w): [] for w in widths} for k in KERNELS}
        for r in range(repeats + 1):  # the first round warms up, untimed
            for w in widths:
                for kernel in (KERNELS if r % 2 else KERNELS[::-1]):
                    with small_batch_linears(*((model,) if kernel == "small_batch" else ())):
                        t0 = time.perf_counter()
                        forward_with_cache(model, torch.full((1, w), 300 % V), torch.arange(P, P + w).unsqueeze(0), cache,
                                           hidden_states=True)
                        dt = time.perf_counter() - t0
                    cache.crop(-w)
                    if r:
                        times[kernel][str(w)].append(dt * 1000)
    return {k: {w: statistics.median(v) for w, v in per.items()} for k, per in times.items()}


def decode_rates(target, drafter, vocab, prompts_per_benchmark: int, max_new: int, block_sizes: list[int]) -> dict:
    from specframe.decoding.engine import SpeculativeDecoder, eos_ids_of, target_only_decode

    eos = eos_ids_of(target)
    prompts = first_turn_prompts(target.tokenizer, prompts_per_benchmark, GSM8K if Path(GSM8K).is_file() else None)
    out: dict = {}
    for kernel in KERNELS:
        small = kernel == "small_batch"
        target_only_decode(target, prompts[0][1][:32], max_new_tokens=8, small_batch_kernel=small)  # warm-up
        base = [target_only_decode(target, ids, max_new_tokens=max_new, eos_ids=eos, small_batch_kernel=small)
                for _, ids in prompts]
        row = {"target_only": {"tokens_per_s": sum(b.decode_tokens for b in base) / sum(b.decode_seconds for b in base)}}
        for B in block_sizes:
            dec = SpeculativeDecoder.for_drafter(target, drafter, vocab, "single", block_size=B, eos_ids=eos,
                                                 small_batch_kernel=small)
            res = [dec.generate(ids, max_new_tokens=max_new) for _, ids in prompts]
            tps = sum(r.decode_tokens for r in res) / sum(r.decode_seconds for r in res)
            steps = sum(len(r.steps) for r in res)
            row[f"B={B}"] = {"tokens_per_s": tps, "tau": sum(s.committed for r in res for s in r.steps) / steps,
                             "speedup": tps / row["target_only"]["tokens_per_s"],
                             "ms_per_step": 1000 * sum(r.decode_seconds for r in res) / steps,
                             "greedy_identical": sum(r.tokens == b.tokens for r, b in zip(res, base)),
                             "responses": len(res)}
        out[kernel] = row
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("run", nargs="?")
    ap.add_argument("--widths", type=int, nargs="+", default=[1, 2, 4, 8, 16])
    ap.add_argument("--repeats", type=int, default=9)
    ap.add_argument("--prompts", type=int, default=2, help="first turns per benchmark (3 benchmarks)")
    ap.add_argument("--max-new-tokens", type=int, default=64)
    ap.add_argument("--block-sizes", type=int, nargs="+", default=[2, 4, 8, 16])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", default="bench_small_batch.json")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    from specframe.precision import cpu_capability
    from specframe.targets import TARGETS

    if args.run:
        from specframe.checkpoint import load_trained

        _, target, drafter, vocab = load_trained(args.run)  # loaded once: part 2 decodes with the same objects
        target.model.float()
        drafter = drafter.float()
    else:
        target = TARGETS.build("hf", {"model": "smollm2-135m-instruct", "dtype": "float32"}, where="target")
    report: dict = {"cpu_capability": cpu_capability(), "threads": args.threads, "run": args.run}
    costs = forward_costs(target, args.widths, args.repeats)
    one = costs["f_linear"]["1"]
    report["forward_ms"] = costs
    print(f"CPU capability {report['cpu_capability']}, {args.threads} threads; target forward of W tokens "
          f"(median of {args.repeats}), in ms and in 1-token F.linear forwards")
    print(f"{'W':>4}" + "".join(f"{k + ' ms':>16}{'x step':>8}" for k in KERNELS))
    for w in args.widths:
        print(f"{w:>4}" + "".join(f"{costs[k][str(w)]:>16.1f}{costs[k][str(w)] / one:>8.2f}" for k in KERNELS))
    if args.run:
        rates = decode_rates(target, drafter, vocab, args.prompts, args.max_new_tokens, args.block_sizes)
        report["decode"] = rates
        print(f"\ndecoding {3 * args.prompts} first turns, {args.max_new_tokens} new tokens: tok/s (speedup over "
              f"target-only with the same kernel), τ, greedy identical")
        for kernel, row in rates.items():
            print(f"{kernel:<12} target-only {row['target_only']['tokens_per_s']:.2f} tok/s")
            for B in args.block_sizes:
                r = row[f"B={B}"]
                print(f"{'':<12} B={B:<3} {r['tokens_per_s']:6.2f} tok/s ({r['speedup']:.2f}x)  τ {r['tau']:.3f}  "
                      f"{r['ms_per_step']:.0f} ms/step  identical {r['greedy_identical']}/{r['responses']}")
    Path(args.out).write_text(json.dumps(report, indent=2))
    print(f"written {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
