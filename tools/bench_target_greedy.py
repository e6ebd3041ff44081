"""A cached training step with greedy labels from the cache's top-1 ids (now) vs from dense [B, S, V] logits (before).

    PYTHONPATH=. python3 tools/bench_target_greedy.py [--recipe recipes/quickstart.yaml] [--repeats 6] \
        [--out bench_target_greedy.json] [overrides ...]

The recipe must use `target_greedy_labels` and a features cache (`data.features_cache: auto` reads the cache a
previous `specframe train` of the same recipe built; it is not built here). One process, the same module and
batches; the two ways alternate, one untimed step first. "dense logits" additionally builds the -inf-filled
logits tensor from the cached top-1 and shifts it, as every step did before `target_greedy` existed. Prints
the medians and their ratio and writes a JSON. A benchmark, not a test: it asserts nothing about time.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--recipe", default=str(ROOT / "recipes" / "quickstart.yaml"))
    ap.add_argument("--repeats", type=int, default=6)
    ap.add_argument("--out", default="bench_target_greedy.json")
    ap.add_argument("overrides", nargs="*")
    args = ap.parse_args(argv)
    from specframe.config import load_recipe
    from specframe.data.auto_cache import auto_cache_folder
    from specframe.data.datamodule import ChatDataModule
    from specframe.module import DraftTrainingModule
    from specframe.precision import cpu_capability

    recipe = load_recipe(args.recipe, ["run.output_dir=/tmp/bench_target_greedy", *args.overrides])
    cache = recipe.data.features_cache
    if cache == "auto":
        cache = str(auto_cache_folder(recipe))
        recipe = load_recipe(args.recipe, ["run.output_dir=/tmp/bench_target_greedy", *args.overrides,
                                           f"data.features_cache={cache}"])
    if not cache:
        ap.error("the recipe has no features cache (data.features_cache)")
    torch.manual_seed(recipe.run.seed)
    module = DraftTrainingModule(recipe.resolved, recipe=recipe)
    if not module.needs_greedy:
        ap.error("the recipe does not use target_greedy_labels")
    data = ChatDataModule(recipe.data, module.target.tokenizer, seed=recipe.run.seed)
    data.setup("fit")
    batches = iter(data.train_dataloader())
    batches = [next(batches) for _ in range(4)]
    opt = torch.optim.AdamW([p for p in module.drafter.parameters() if p.requires_grad], lr=1e-3)

    def step(batch: dict, seed: int) -> float:
        t0 = time.perf_counter()
        loss, _, _ = module.step(batch, torch.Generator().manual_seed(seed))
        loss.backward()
        opt.step()
        opt.zero_grad()
        return time.perf_counter() - t0

    step(batches[0], 0)  # warm-up, untimed
    seconds: dict[str, list[float]] = {"top-1 ids": [], "dense logits": []}
    for rep in range(args.repeats):
        for mode in (("top-1 ids", "dense logits") if rep % 2 else ("dense logits", "top-1 ids")):
            module.needs_logits = mode == "dense logits"  # the old path also built (and shifted) the dense logits
            seconds[mode].append(step(batches[rep % len(batches)], rep))
    med = {k: statistics.median(v) for k, v in seconds.items()}
    ratio = med["dense logits"] / med["top-1 ids"]
    print(f"CPU capability {cpu_capability()}, {torch.get_num_threads()} threads, cache {cache}")
    print(f"{'labels from':<14}{'median s/step':>15}")
    for k, v in med.items():
        print(f"{k:<14}{v:>15.2f}")
    print(f"ratio dense / top-1: {ratio:.2f}")
    Path(args.out).write_text(json.dumps({"cpu_capability": cpu_capability(), "recipe": args.recipe,
                                          "overrides": args.overrides, "seconds": seconds, "median": med,
                                          "ratio_dense_over_top1": ratio}, indent=2))
    print(f"written {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
