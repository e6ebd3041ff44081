"""The `specframe` command: one module per command family, this file only assembles them.

    specframe train RECIPE [OVERLAY.yaml ...] [key=value ...] [--plugin MODULE]   (cli/train.py)
    specframe validate RECIPE [OVERLAY.yaml ...] [key=value ...]                  (cli/train.py)
    specframe list [drafters|targets|losses|alignments|strategies|benchmarks]     (cli/train.py)
    specframe eval RUN_OR_CHECKPOINT [--benchmarks ...]                           (cli/eval.py)
    specframe regenerate ... / specframe cache-features ...                       (cli/data.py)
    specframe plan RECIPE [--gpus N --gpu-mem GiB]                                (cli/plan.py)
    specframe export RUN_OR_CHECKPOINT --out DIR [--engine vllm|sglang|reference]  (cli/export.py)

The library never imports this package (tests/unit/test_architecture.py checks it). `python -m specframe`
runs the same `main`.
"""
from __future__ import annotations

import argparse
import logging
import sys

from specframe.cli import data, eval as eval_cmd, export, plan, train
from specframe.errors import ConfigError, PluginImportError, RunError

FAMILIES = (train, eval_cmd, export, data, plan)
"""Each module's `COMMANDS` lists (name, help, add_arguments, run); they appear in this order in `--help`."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="specframe", description=__doc__.split("\n")[0])
    parser.add_argument("-v", "--verbose", action="store_true")
    sub = parser.add_subparsers(dest="command", required=True)
    for family in FAMILIES:
        for name, help_text, add_arguments, run in family.COMMANDS:
            p = sub.add_parser(name, help=help_text)
            add_arguments(p)
            p.set_defaults(func=run)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args, unknown = parser.parse_known_args(argv)
    # `train RECIPE --plugin X key=value`: argparse ends `rest` at the option; the overrides after it belong there.
    if unknown and hasattr(args, "rest") and not any(u.startswith("-") for u in unknown):
        args.rest = [*args.rest, *unknown]
    elif unknown:
        parser.error(f"unrecognized arguments: {' '.join(unknown)}")
    if args.verbose:
        logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        return int(args.func(args) or 0)
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except RunError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    except PluginImportError as e:
        import traceback

        traceback.print_exception(e.__cause__ or e, file=sys.stderr)
        print(f"\nerror: {e}", file=sys.stderr)
        return 3
