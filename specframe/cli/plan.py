"""`specframe plan RECIPE [OVERLAY.yaml ...] [key=value ...] [--gpus N --gpu-mem GiB]`: will the recipe fit?

The estimate itself is specframe/plan.py; docs/scaling.md explains every term.
"""
from __future__ import annotations

import argparse
import json
import math

from specframe.cli.recipe_args import add_recipe_arguments, recipe_from_args
from specframe.errors import ConfigError
from specframe.plan import GiB, advise, estimate, shape_of, target_arch


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_recipe_arguments(p)
    p.add_argument("--gpus", type=int, help="devices to plan for (default: trainer.devices, else 1)")
    p.add_argument("--gpu-mem", type=float, help="memory of one device in GiB, e.g. 80 (H100) or 141 (H200)")
    p.add_argument("--target-config", help="the target's config.json when its shape is not known offline")
    p.add_argument("--json", action="store_true", help="print the plan as JSON")


def _fmt(n: int) -> str:
    return f"{n / GiB:8.2f} GiB"


def run(args: argparse.Namespace) -> int:
    recipe = recipe_from_args(args, output_dir=False, features_cache=False)
    if args.gpus is not None and args.gpus < 1:
        raise ConfigError(f"--gpus: expected a positive number of devices, got {args.gpus}")
    if args.gpu_mem is not None and not (args.gpu_mem > 0 and math.isfinite(args.gpu_mem)):
        raise ConfigError(f"--gpu-mem: expected GiB > 0, got {args.gpu_mem}")
    arch = target_arch(recipe, args.target_config)
    plan = estimate(recipe, devices=args.gpus, arch=arch)
    budget = int(args.gpu_mem * GiB) if args.gpu_mem else None
    fits = None if budget is None else plan.total <= budget
    advice = advise(recipe, plan, budget, arch) if budget is not None and not fits else []
    if args.json:
        print(json.dumps({"devices": plan.devices, "strategy": plan.strategy, "precision": plan.precision,
                          "bytes": plan.items, "total_bytes": plan.total, "fits": fits, "advice": advice,
                          "target_params": plan.target_params, "drafter_params": plan.drafter_params,
                          "cache_bytes_per_token": plan.cache_bytes_per_token}, indent=2))
        return 0 if fits is not False else 1
    sh = shape_of(recipe)
    print(f"plan for {args.recipe}: target {plan.target_params / 1e9:.2f} B parameters, drafter "
          f"{plan.drafter_params / 1e6:.1f} M trainable; {plan.devices} device(s), strategy {plan.strategy}, "
          f"precision {plan.precision}")
    print(f"per device: batch {sh['B']} x length {sh['S']}, {sh['N']} anchors x block {sh['K']}, "
          f"head chunk {sh['chunk']} blocks")
    for k, v in plan.items.items():
        print(f"  {k:<50}{_fmt(v)}")
    print(f"  {'total per device':<50}{_fmt(plan.total)}")
    for n in plan.notes:
        print(f"  note: {n}")
    print(f"feature cache on disk: {plan.cache_bytes_per_token:,} bytes per token "
          f"(+ 8 bytes per top-k logit kept)")
    if budget is not None:
        print(f"fits in {args.gpu_mem:g} GiB: {'yes' if fits else 'NO'}"
              + (f" ({(budget - plan.total) / GiB:.1f} GiB spare)" if fits else ""))
        if advice:
            print("what makes it fit:")
            for a in advice:
                print(f"  {a}")
    return 0 if fits is not False else 1



COMMANDS = [
    ("plan", "estimate per-device memory before anything loads; what makes a recipe fit", add_arguments, run),
]
"""(name, help, add_arguments, run) of each command of this family; cli/__init__.py registers them."""
