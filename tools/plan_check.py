"""Check `specframe plan`'s memory estimate against a real training step on CPU: estimate vs measured peak.

    python tools/plan_check.py RECIPE [OVERLAY.yaml ...] [key=value ...] [--steps 2] [--json OUT.json]

It builds the recipe's module (target + drafter) and runs `--steps` optimiser steps exactly as training does
(the same `module.step`, autocast for bf16-mixed, AdamW), single process, and reads the process's peak resident
memory (Linux VmHWM, reset once the module is built). Measured = the module's weights and the batch, counted tensor by
tensor, + the rise of the resident set above them during the steps; the estimate has no Python or library
baseline either. Large allocations go straight to mmap
(MALLOC_MMAP_THRESHOLD_) so that freed activations leave the resident set at once, as they leave a GPU's
allocator. Prints a table and writes a JSON.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

MMAP = "65536"


def _status(key: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"{key} not in /proc/self/status (Linux only)")


def _reset_peak() -> None:
    Path("/proc/self/clear_refs").write_text("5")  # VmHWM := VmRSS


def measure(recipe, steps: int) -> dict[str, int]:
    import torch

    from specframe.data.datamodule import ChatDataModule
    from specframe.module import DraftTrainingModule

    torch.manual_seed(0)
    module = DraftTrainingModule(recipe.resolved)
    data = ChatDataModule(recipe.data, module.target.tokenizer, seed=recipe.run.seed)
    data.setup("fit")
    batch = next(iter(data.train_dataloader()))
    opt = module.configure_optimizers()["optimizer"]
    # What the module holds, counted exactly (the resident set also holds Python objects of the data rows).
    held = sum(t.numel() * t.element_size() for t in [*module.parameters(), *module.buffers()])
    held += sum(t.numel() * t.element_size() for t in batch.values())
    rss0 = _status("VmRSS") - held
    _reset_peak()
    mixed = recipe.trainer.precision.startswith("bf16-mixed")
    for i in range(steps):
        gen = torch.Generator().manual_seed(i)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=mixed):
            loss, _, _ = module.step(batch, gen)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
    peak = _status("VmHWM")
    return {"held_bytes": held, "peak_bytes": peak - rss0, "batch_shape": list(batch["input_ids"].shape)}


def main(argv: list[str] | None = None) -> int:
    if os.environ.get("MALLOC_MMAP_THRESHOLD_") != MMAP:  # glibc reads it at start: re-execute with it set
        os.environ["MALLOC_MMAP_THRESHOLD_"] = MMAP
        os.execv(sys.executable, [sys.executable, *sys.argv] if argv is None else [sys.executable, __file__, *argv])
    p = argparse.ArgumentParser(prog="tools/plan_check.py", description=__doc__.split("\n")[0])
    p.add_argument("recipe")
    p.add_argument("rest", nargs="*")
    p.add_argument("--steps", type=int, default=2)
    p.add_argument("--json", help="write the figures here")
    p.add_argument("--plugin", action="append", default=[])
    args = p.parse_args(argv)
    from specframe.plan import GiB, estimate
    from specframe.resources import recipe_from_files

    overlays = [r for r in args.rest if r.endswith((".yaml", ".yml")) and "=" not in r]
    recipe = recipe_from_files(args.recipe, overlays, [r for r in args.rest if r not in overlays], args.plugin,
                               output_dir=False)
    plan = estimate(recipe, devices=1, strategy="single")
    t0 = time.time()
    m = measure(recipe, args.steps)
    ratio = plan.total / m["peak_bytes"]
    print(f"{'term':<52}{'estimate':>12}")
    for k, v in plan.items.items():
        print(f"{k:<52}{v / GiB:>10.3f} GiB")
    print(f"{'total (estimate)':<52}{plan.total / GiB:>10.3f} GiB")
    print(f"{'measured: module weights + batch (counted)':<52}{m['held_bytes'] / GiB:>10.3f} GiB")
    print(f"{'measured: peak over ' + str(args.steps) + ' steps (VmHWM delta)':<52}{m['peak_bytes'] / GiB:>10.3f} GiB")
    print(f"estimate / measured = {ratio:.3f}   (batch {m['batch_shape']}, {time.time() - t0:.0f} s)")
    out = {"recipe": args.recipe, "overrides": args.rest, "estimate_bytes": plan.items,
           "estimate_total_bytes": plan.total, **m, "ratio": ratio}
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
