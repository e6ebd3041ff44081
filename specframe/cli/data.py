"""`specframe regenerate` and `specframe cache-features`: commands that write data for training.

    specframe regenerate --target smollm2-135m-instruct --data sharegpt --limit 3000 --out data/regenerated/x
    specframe cache-features RECIPE [OVERLAY.yaml ...] [key=value ...] --out DIR [--logits-topk K]

What they write is described in specframe/data/regenerate.py and specframe/data/feature_cache.py.
"""
from __future__ import annotations

import argparse
import dataclasses
import math
import sys
from pathlib import Path
from typing import Any

from specframe.cli.recipe_args import add_recipe_arguments, recipe_from_args
from specframe.data.regenerate import DEFAULT_TARGET


# ------------------------------------------------------------------------------------------ specframe regenerate
def add_regenerate_arguments(parser: argparse.ArgumentParser) -> None:
    which = parser.add_mutually_exclusive_group()
    which.add_argument("--target", default=None,
                       help=f"the hf target's `model`: hub id, local folder, .gguf file or '{DEFAULT_TARGET}' "
                            f"(default: {DEFAULT_TARGET})")
    which.add_argument("--target-recipe", default=None, metavar="RECIPE",
                       help="take the target (name and options) from this recipe instead")
    parser.add_argument("--data", default="sharegpt", help="conversation source, as a recipe's data.train")
    parser.add_argument("--limit", type=int, default=None, help="use the first N conversations")
    parser.add_argument("--out", required=True, help="output folder (shards + manifest.json)")
    parser.add_argument("--max-new-tokens", type=int, default=128)
    parser.add_argument("--temperature", type=float, default=0.0, help="0: greedy")
    parser.add_argument("--top-p", type=float, default=1.0)
    parser.add_argument("--seed", type=int, default=0, help="row i samples with seed + i (temperature > 0)")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--shard-size", type=int, default=256)
    parser.add_argument("--dtype", choices=["auto", "float32", "bfloat16", "float16"], default=None,
                        help="target weights dtype (default: auto with --target, i.e. bfloat16 where the device "
                             "computes it natively, else float32; the recipe's with --target-recipe)")
    parser.add_argument("--turns", choices=["first", "all"], default="first",
                        help="first: answer only the first user turn (default); all: every user turn")
    parser.add_argument("--max-prompt-tokens", type=int, default=2048)
    parser.add_argument("--max-shards", type=int, default=None,
                        help="write at most N new shards, then stop (rerun the command to continue)")
    parser.add_argument("--device", default="auto", help="auto (cuda if available), cpu, cuda, cuda:1, ...")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def _device(args: argparse.Namespace) -> str:
    from specframe.precision import default_device

    device = getattr(args, "device", "auto") or "auto"
    return default_device() if device == "auto" else device


def load_target(args: argparse.Namespace) -> tuple[Any, str | None]:
    """Build the target from --target or --target-recipe; returns it and the dtype it was loaded with."""
    from specframe.precision import resolve_dtype
    from specframe.targets import TARGETS

    if args.target_recipe:
        from specframe.config import load_recipe

        recipe = load_recipe(args.target_recipe)
        name, options = recipe.target.name, dict(recipe.target.options)
        entry = TARGETS.get(name, where="target")
        fields = {f.name for f in dataclasses.fields(entry.config)} if entry.config else set()
        if args.dtype and "dtype" in fields:
            options["dtype"] = args.dtype
        if "dtype" in options:  # record the dtype that ran, not 'auto'
            options["dtype"] = resolve_dtype(options["dtype"], _device(args), what="target.dtype")
        target = TARGETS.build(name, options, where=f"{args.target_recipe}: target")
        return target, options.get("dtype")
    dtype = resolve_dtype(args.dtype or "auto", _device(args), what="target.dtype")
    return TARGETS.build("hf", {"model": args.target or DEFAULT_TARGET, "dtype": dtype}, where="--target"), dtype


def run_regenerate(args: argparse.Namespace) -> int:
    import torch

    from specframe.data.regenerate import RegenerateSettings, ResumeMismatchError, regenerate
    from specframe.data.sources import load_conversations

    settings = RegenerateSettings(
        max_new_tokens=args.max_new_tokens, temperature=args.temperature, top_p=args.top_p, seed=args.seed,
        turns=args.turns, batch_size=args.batch_size, shard_size=args.shard_size,
        max_prompt_tokens=args.max_prompt_tokens)
    issues = settings.problems()
    if args.max_shards is not None and args.max_shards < 1:
        issues.append(f"--max-shards must be >= 1, got {args.max_shards}")
    if issues:
        print("error: " + "; ".join(issues), file=sys.stderr)
        return 2
    try:
        conversations = load_conversations(args.data, limit=args.limit)
    except (ValueError, FileNotFoundError, RuntimeError) as e:
        print(f"error: --data {args.data!r}: {e}", file=sys.stderr)
        return 2
    if not conversations:
        print(f"error: the data source {args.data!r} gave no conversations", file=sys.stderr)
        return 2
    target, dtype = load_target(args)
    device = args.device if args.device != "auto" else ("cuda" if torch.cuda.is_available() else "cpu")
    target.model.to(device)
    try:
        manifest = regenerate(target.model, target.tokenizer, conversations, args.out, settings,
                              target_name=target.name, data=args.data, limit=args.limit, dtype=dtype,
                              max_shards=args.max_shards, progress=not args.no_progress)
    except ResumeMismatchError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if manifest["complete"]:
        print(f"wrote {manifest['settings']['num_rows']} conversations in {manifest['num_shards']} shards to "
              f"{args.out} ({manifest['rows_without_reply']} without a reply). Train on it with "
              f"`data.train: {args.out}`.")
    else:
        print(f"stopped with {manifest['missing_shards']} of {manifest['num_shards']} shards still to write; "
              "run the same command again to continue.")
    return 0


# -------------------------------------------------------------------------------------- specframe cache-features
def add_cache_arguments(parser: argparse.ArgumentParser) -> None:
    add_recipe_arguments(parser)
    parser.add_argument("--out", required=True, help="cache folder (created; an unfinished one is resumed)")
    parser.add_argument("--logits-topk", type=int, default=0,
                        help="also store the target's K largest next-token logits per position (0: none)")
    parser.add_argument("--shard-size", type=int, default=256, help="rows per shard file (default 256)")
    parser.add_argument("--dtype", choices=["bfloat16", "float32"], default="bfloat16",
                        help="storage dtype of the hidden states (default bfloat16)")
    parser.add_argument("--batch-size", type=int, default=None, help="rows per target forward (default data.batch_size)")
    parser.add_argument("--device", default=None, help="where the target runs (default: cuda if available, else cpu)")


def run_cache_features(args: argparse.Namespace) -> int:
    from specframe.data.feature_cache import build_cache

    # The recipe may already point at a cache (even this one, unfinished): caching never reads one.
    args.rest = [*args.rest, "data.features_cache=null"]
    recipe = recipe_from_args(args, output_dir=False)
    m = build_cache(recipe, args.out, logits_topk=args.logits_topk, shard_size=args.shard_size, dtype=args.dtype,
                    batch_size=args.batch_size, device=args.device)
    rate = f", {m['tokens_computed'] / m['seconds']:,.0f} tok/s this run" if m["tokens_computed"] else " (already complete)"
    print(f"cache: {args.out}  {m['rows']['total']} rows ({m['rows']['train']} train / {m['rows']['val']} held-out), "
          f"{m['tokens']:,} tokens, {m['supervised_tokens']:,} supervised{rate}")
    print(f"disk: {m['bytes'] / 2**20:,.1f} MiB = {m['bytes_per_token']:,.0f} bytes/token, "
          f"{m['bytes_per_supervised_token']:,.0f} bytes/supervised token "
          f"({m['dtype']}, {len(m['tap_layers'])} taps x {m['hidden_size']}, top-k {m['logits_topk']})")
    if m["mean_topk_mass"] is not None and not math.isnan(m["mean_topk_mass"]):
        print(f"top-{m['logits_topk']} logits keep {m['mean_topk_mass']:.1%} of the target's probability on average")
    print(f"train from it: specframe train {args.recipe} ... data.features_cache={args.out}")
    return 0


# ---------------------------------------------------------------------------------------- specframe pack-answers
def add_pack_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("folder", help="a complete `specframe regenerate --turns first` folder")
    parser.add_argument("--out", required=True, help="answers file to write (.jsonl.gz)")


def run_pack_answers(args: argparse.Namespace) -> int:
    from specframe.data.answers import pack_answers

    try:
        header = pack_answers(args.folder, args.out)
    except (ValueError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    size = Path(args.out).stat().st_size
    print(f"wrote {header['rows']} answers ({size / 2**10:,.0f} KiB, no prompt text) to {args.out}. Train on them "
          f"with `data.train: {header['data']}` and `data.answers: {args.out}`.")
    return 0


COMMANDS = [
    ("regenerate", "rewrite assistant turns with the target's own responses", add_regenerate_arguments,
     run_regenerate),
    ("pack-answers", "keep only the target's replies of a regenerate folder, keyed by prompt", add_pack_arguments,
     run_pack_answers),
    ("cache-features", "run the target once and store its features on disk", add_cache_arguments, run_cache_features),
]
"""(name, help, add_arguments, run) of each command of this family; cli/__init__.py registers them."""
