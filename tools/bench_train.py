"""Drafter-training throughput: specframe's Lightning path vs the same step in a bare PyTorch loop.

    python tools/bench_train.py                       # SmolLM2-135M target, quickstart drafter, 2 CPU threads
    python tools/bench_train.py --steps 12 --draft-vocab 8192 --precision bf16-mixed
    python tools/bench_train.py --recipe recipes/quickstart.yaml --overrides data.batch_size=4

Each mode runs in its own subprocess (so peak RSS is per mode) on the same batches in the same order with
the same anchors. Throughput is supervised slots (predictions that carry loss) per second, averaged over the
steps after --warmup. Prints a table and writes a JSON (default runs/bench/train.json). Report the ratio, not
the absolute numbers: our machines are shared and noisy.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def _recipe(args: argparse.Namespace):
    from specframe.config import compose, validate_recipe

    overrides = [f"trainer.precision={args.precision}", f"trainer.max_steps={args.steps}", "trainer.progress_bar=false",
                 "run.output_dir=runs/bench/tmp", "trainer.val_every_n_steps=100000", "trainer.save_every_n_steps=100000",
                 "run.resume=false", *args.overrides]
    if args.draft_vocab:
        overrides.append(f"drafter.draft_vocab_size={args.draft_vocab}")
    return validate_recipe(compose(args.recipe, [], overrides))


def _batches(recipe: Any, tokenizer: Any, n: int) -> tuple[list[dict[str, torch.Tensor]], Any]:
    from specframe.data.datamodule import ChatDataModule

    dm = ChatDataModule(recipe.data, tokenizer, seed=recipe.run.seed)
    dm.setup("fit")
    out = []
    for b in dm.train_dataloader():
        out.append(b)
        if len(out) == n:
            break
    return out, dm


def run_mode(args: argparse.Namespace) -> dict[str, Any]:
    torch.set_num_threads(args.threads)
    recipe = _recipe(args)
    from specframe.module import DraftTrainingModule

    module = DraftTrainingModule(recipe.resolved)
    batches, dm = _batches(recipe, module.target.tokenizer, args.steps)
    coverage = None
    if module.vocab.reduced:
        from specframe.vocab_fit import coverage as heldout_coverage, fit_draft_vocab

        fit_draft_vocab(module.vocab, dm.train_rows)
        coverage = heldout_coverage(module.vocab, dm.val_rows)  # on conversations the vocabulary never saw
    times: list[float] = []
    slots: list[int] = []
    if args.mode == "lightning":
        times, slots = _lightning(module, batches, recipe)
    else:
        times, slots = _bare(module, batches, recipe)
    w = args.warmup
    t, s = sum(times[w:]), sum(slots[w:])
    return {"mode": args.mode, "steps_timed": len(times) - w, "seconds": t, "supervised_slots": s,
            "slots_per_s": s / t, "step_s": t / max(1, len(times) - w),
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            "draft_vocab": args.draft_vocab, "coverage": coverage, "precision": args.precision}


def _lightning(module: Any, batches: list[dict[str, torch.Tensor]], recipe: Any) -> tuple[list[float], list[int]]:
    import lightning as L

    times: list[float] = []
    slots: list[int] = []

    class Timer(L.Callback):
        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
            self.t0 = time.perf_counter()

        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
            times.append(time.perf_counter() - self.t0)
            slots.append(int(trainer.callback_metrics.get("train/supervised_slots", torch.tensor(0)).item()))

    t = recipe.trainer
    trainer = L.Trainer(max_steps=len(batches), precision=t.precision, gradient_clip_val=t.gradient_clip_val,
                        accelerator="cpu", devices=1, logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False, callbacks=[Timer()],
                        num_sanity_val_steps=0, limit_val_batches=0)
    loader = torch.utils.data.DataLoader(batches, batch_size=None, shuffle=False)
    trainer.fit(module, train_dataloaders=loader)
    return times, slots


def _bare(module: Any, batches: list[dict[str, torch.Tensor]], recipe: Any) -> tuple[list[float], list[int]]:
    """The same computation with no Lightning: `module.step` (target pass, anchors, drafter, chunked head + loss)
    and AdamW in a plain loop, so the difference is what Lightning adds."""
    drafter = module.drafter
    opt = torch.optim.AdamW([p for p in drafter.parameters() if p.requires_grad], lr=recipe.optim.lr)
    bf16 = recipe.trainer.precision.startswith("bf16")
    module.train()
    module.target.eval()

    times, slots = [], []
    for step, batch in enumerate(batches):
        t0 = time.perf_counter()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            # the module's own step (target pass, alignment, drafter, objective) and its per-step anchors
            loss, _, parts = module.step(batch, module.train_generator(step))
        loss.backward()
        torch.nn.utils.clip_grad_norm_(drafter.parameters(), recipe.trainer.gradient_clip_val or 1e9)
        opt.step()
        opt.zero_grad(set_to_none=True)
        times.append(time.perf_counter() - t0)
        slots.append(int(parts.mask.sum()))
    return times, slots


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--recipe", default=str(ROOT / "recipes/quickstart.yaml"))
    p.add_argument("--overrides", nargs="*", default=[])
    p.add_argument("--steps", type=int, default=12)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--precision", default="bf16-mixed")
    p.add_argument("--draft-vocab", type=int, default=None)
    p.add_argument("--modes", nargs="+", default=["lightning", "bare"])
    p.add_argument("--out", default="runs/bench/train.json")
    p.add_argument("--mode", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.mode:  # child process: one mode, result as JSON on the last stdout line
        print(json.dumps(run_mode(args)))
        return
    results = []
    for mode in args.modes:
        cmd = [sys.executable, __file__, "--mode", mode, "--recipe", args.recipe, "--steps", str(args.steps),
               "--warmup", str(args.warmup), "--threads", str(args.threads), "--precision", args.precision]
        if args.draft_vocab:
            cmd += ["--draft-vocab", str(args.draft_vocab)]
        if args.overrides:
            cmd += ["--overrides", *args.overrides]
        print(f"running {mode} ...", flush=True)
        proc = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "PYTHONWARNINGS": "ignore"})
        if proc.returncode != 0:
            sys.stderr.write(proc.stderr[-4000:])
            raise SystemExit(f"{mode} failed")
        results.append(json.loads(proc.stdout.strip().splitlines()[-1]))
    print()
    print(f"| mode | steps | step s | supervised slots/s | peak RSS MB |")
    print(f"|---|---|---|---|---|")
    for r in results:
        print(f"| {r['mode']} | {r['steps_timed']} | {r['step_s']:.2f} | {r['slots_per_s']:.0f} | {r['peak_rss_mb']:.0f} |")
    by = {r["mode"]: r for r in results}
    report: dict[str, Any] = {"results": results, "precision": args.precision, "draft_vocab": args.draft_vocab,
                              "threads": args.threads}
    if "lightning" in by and "bare" in by:
        ratio = by["lightning"]["slots_per_s"] / by["bare"]["slots_per_s"]
        report["lightning_over_bare"] = ratio
        print(f"\nframework / bare throughput: {ratio:.3f}")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
