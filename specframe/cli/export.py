"""`specframe export RUN_OR_CKPT --out DIR [--engine vllm|sglang|reference] [--dtype ...] [--force]`."""
from __future__ import annotations

import argparse

from specframe.export.engines import ENGINES


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("run", help="run folder (uses checkpoints/best*.ckpt, else last.ckpt) or a .ckpt file")
    p.add_argument("--out", required=True, help="folder to write (must not exist unless --force)")
    p.add_argument("--engine", choices=ENGINES, default="vllm",
                   help="who will serve it: what it cannot represent is refused (default: vllm)")
    p.add_argument("--dtype", choices=["float32", "bfloat16", "float16"], default="float32",
                   help="weights dtype in model.safetensors (default: float32)")
    p.add_argument("--force", action="store_true", help="replace an existing --out folder")


def run(args: argparse.Namespace) -> int:
    from specframe.export.writer import export_dflash

    files = export_dflash(args.run, args.out, engine=args.engine, dtype=args.dtype, force=args.force)
    print(f"exported for {args.engine}: {args.out}")
    for f in files:
        print(f"  {f.name:<22} {f.stat().st_size:>12,d} bytes")
    print("key set and shapes checked against the DFlash format; serving commands in README.md")
    return 0


COMMANDS = [("export", "write a trained drafter in the DFlash format for vLLM, SGLang or the reference",
             add_arguments, run)]
