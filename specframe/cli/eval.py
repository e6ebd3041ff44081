"""`specframe eval`: decode for real with a trained drafter; print and save τ, acceptance and speedup.

    specframe eval runs/quickstart --benchmarks mt_bench humaneval gsm8k --num-prompts 8 --max-new-tokens 128
    specframe eval runs/quickstart/checkpoints/last.ckpt --strategy self_selection --strategy-opt num_drafts=4
    specframe eval runs/quickstart --oracle            # also the ceiling: drafts = the target's own output
    specframe eval runs/quickstart --parity            # τ_sim vs τ_real on the same blocks

Defaults come from the recipe's `eval:` section, then these flags. Results go to RUN/eval/<tag>.json and .md.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import yaml

from specframe.config import EVAL_DTYPES, LINEAR_KERNELS
from specframe.errors import ConfigError

# torch is imported inside the functions: `specframe --help` and `validate` build this parser too.


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("path", help="run folder (uses checkpoints/best*.ckpt, else last.ckpt) or a .ckpt file")
    p.add_argument("--benchmarks", nargs="+", help="benchmark names (specframe.evaluation.benchmarks) or .jsonl files")
    p.add_argument("--num-prompts", type=int, help="prompts per benchmark")
    p.add_argument("--max-new-tokens", type=int, help="tokens generated per response")
    p.add_argument("--temperature", type=float, help="0: greedy (default); > 0: lossless speculative sampling")
    p.add_argument("--block-size", type=_block_size,
                   help="block size B at decode time (default: the drafter's); auto: the fastest on pilot prompts")
    p.add_argument("--strategy", help="test-time strategy: single or self_selection (`specframe list strategies`)")
    p.add_argument("--strategy-opt", action="append", default=[], metavar="KEY=VALUE",
                   help="strategy option, e.g. num_drafts=4 (repeatable)")
    p.add_argument("--oracle", action="store_true", help="also decode with the oracle drafter (τ ceiling)")
    p.add_argument("--no-baseline", action="store_true", help="skip target-only decoding (no speedup)")
    p.add_argument("--parity", action="store_true", help="also print τ_sim vs τ_real on the same blocks")
    p.add_argument("--dtype", choices=EVAL_DTYPES, help="dtype of target and drafter (default: the target's)")
    p.add_argument("--linear-kernel", choices=LINEAR_KERNELS,
                   help="linear layers while decoding, both decodings alike: small_batch (default; CPU float32, "
                        "<= 16 rows) or f_linear")
    p.add_argument("--device", default="auto", help="cpu, cuda, cuda:1, ... (default: cuda if available)")
    p.add_argument("--gsm8k-path", help="GSM8K jsonl (default: $SPECFRAME_GSM8K or the shared copy)")
    p.add_argument("--threads", type=int, help="torch CPU threads (a small target decodes faster on fewer)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", help="output folder (default: RUN/eval)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")


def _block_size(text: str) -> int | str:
    if text == "auto":
        return text
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer >= 2 or auto, got {text!r}") from None


def parse_options(items: list[str], where: str) -> dict[str, Any]:
    """['num_drafts=4', 'draft_temperature=1.5'] -> {'num_drafts': 4, 'draft_temperature': 1.5}."""
    out: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"{where}: expected KEY=VALUE, got {item!r}")
        out[key.strip()] = yaml.safe_load(value)
    return out


def settings_from(args: argparse.Namespace, recipe_eval: dict[str, Any]) -> Any:
    """The recipe's `eval:` section with the given flags as overrides, checked as `specframe validate` checks it."""
    from dataclasses import asdict

    from specframe.config import build_eval_config
    from specframe.evaluation.runner import EvalSettings

    section = dict(recipe_eval or {})
    strategy = dict(section.get("strategy") or {"name": "single"})
    if args.strategy and args.strategy != strategy.get("name"):
        strategy = {"name": args.strategy}
    strategy.update(parse_options(args.strategy_opt, "--strategy-opt"))
    flags = {"benchmarks": args.benchmarks, "num_prompts": args.num_prompts, "max_new_tokens": args.max_new_tokens,
             "temperature": args.temperature, "block_size": args.block_size, "dtype": args.dtype,
             "linear_kernel": args.linear_kernel}
    section.update({k: v for k, v in flags.items() if v is not None}, strategy=strategy)
    if args.no_baseline:
        section["speedup"] = False
    ecfg = build_eval_config(section, "eval")  # the one eval configuration and its checks
    options = {"gsm8k": {"path": args.gsm8k_path}} if args.gsm8k_path else {}
    try:
        return EvalSettings(**asdict(ecfg), benchmark_options=options, baseline=ecfg.speedup, oracle=args.oracle,
                            seed=args.seed, progress=not args.no_progress)
    except ValueError as e:
        raise ConfigError(f"specframe eval: {e}") from None


def preflight(settings: Any) -> None:
    """Everything about the settings that can fail without a model: the strategy and each benchmark's prompts
    (read now; hub benchmarks are only looked up, never downloaded here). Raises one ConfigError listing all."""
    from specframe.decoding.engine import build_strategy
    from specframe.evaluation.benchmarks import BENCHMARKS, build_benchmark

    issues: list[str] = []
    try:
        build_strategy(dict(settings.strategy), where="--strategy")
    except ConfigError as e:
        issues.extend(e.issues)
    for name in settings.benchmarks:
        try:
            bench = build_benchmark(name, settings.benchmark_options.get(name))
            if not (name in BENCHMARKS and BENCHMARKS.get(name).meta.get("hub")):
                bench.prompts(1)
        except ConfigError as e:
            issues.extend(e.issues)
        except Exception as e:  # missing file, unreadable rows, a missing optional package
            first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            issues.append(f"benchmark {name!r}: {first}")
    if issues:
        raise ConfigError(issues)


def place(trained: Any, dtype_name: str | None, device_name: str) -> tuple[Any, Any]:
    """Move target and drafter to one device and one dtype (speedups compare like with like)."""
    import torch

    target, drafter = trained.target, trained.drafter
    device = torch.device("cuda" if device_name == "auto" and torch.cuda.is_available() else
                          "cpu" if device_name == "auto" else device_name)
    from specframe.precision import resolve_dtype

    dtype_name = resolve_dtype(dtype_name, device.type, what="eval dtype")
    dtype = getattr(torch, dtype_name) if dtype_name else next(target.model.parameters()).dtype
    target.model.to(device=device, dtype=dtype)
    drafter.to(device=device, dtype=dtype)
    trained.vocab.to(device)
    return target, drafter


def run(args: argparse.Namespace) -> int:
    import torch

    from specframe.checkpoint import load_checkpoint, load_trained, resolve_checkpoint, run_folder_of
    from specframe.evaluation.runner import Evaluator, markdown, write_partial, write_report

    if args.threads:
        torch.set_num_threads(args.threads)
    ckpt = resolve_checkpoint(args.path)
    checkpoint = load_checkpoint(ckpt)  # weights_only: a planted pickle is refused here
    recipe = (checkpoint.get("hyper_parameters") or {}).get("config") or {}
    settings = settings_from(args, recipe.get("eval", {}) if isinstance(recipe, dict) else {})
    preflight(settings)  # a typo or a missing prompt file fails now, not after the model loaded
    trained = load_trained(ckpt, checkpoint=checkpoint)
    target, drafter = place(trained, settings.dtype, args.device)
    dtype = next(target.model.parameters()).dtype
    print(f"checkpoint {ckpt} | target {target.name} | {dtype} on {next(drafter.parameters()).device}")
    title = f"Real-decoding evaluation of {ckpt}"
    out_dir = Path(args.out) if args.out else run_folder_of(ckpt) / "eval"
    extra = {"checkpoint": str(ckpt), "dtype": str(dtype).replace("torch.", "")}
    if settings.block_size == "auto":  # chosen by timing pilot prompts; the table goes into every report
        settings, block_choice = _choose_block(settings, target, drafter, trained.vocab)
        extra["block_choice"] = block_choice

    def finished(partial: dict[str, Any]) -> None:
        path = write_partial({**partial, **extra}, out_dir)
        print(f"{', '.join(partial['summary'])}: done, saved to {path}", flush=True)

    report = Evaluator(target, drafter, trained.vocab, settings).run(on_benchmark=finished)
    report.update(extra)
    if "block_choice" in extra:
        report["settings"]["block_size_requested"] = "auto"
    if args.parity:
        report["parity"] = _parity(args, settings, target, drafter, trained.vocab)
    json_path, md_path = write_report(report, out_dir, title)
    print(markdown(report, title))
    if args.parity:
        from specframe.evaluation.parity import format_parity

        print(format_parity(report["parity"]))
    print(f"\nwrote {json_path} and {md_path}")
    return 0


def _choose_block(settings: Any, target: Any, drafter: Any, vocab: Any) -> tuple[Any, dict[str, Any]]:
    """Resolve block_size auto by timing pilot prompts (the ones after the evaluated ones)."""
    import dataclasses

    from specframe.decoding.engine import build_strategy, eos_ids_of
    from specframe.evaluation.block_choice import choose_block_size, format_choice

    chosen, entry = choose_block_size(target, drafter, vocab, build_strategy(settings.strategy),
                                      benchmarks=settings.benchmarks, options=settings.benchmark_options,
                                      skip=settings.num_prompts, max_new_tokens=settings.max_new_tokens,
                                      eos_ids=eos_ids_of(target),
                                      small_batch_kernel=settings.small_batch_kernel)
    print(format_choice(entry))
    return dataclasses.replace(settings, block_size=chosen), entry


def _parity(args: argparse.Namespace, settings: Any, target: Any, drafter: Any, vocab: Any) -> dict[str, Any]:
    """Parity on the first turn of each benchmark's prompts."""
    from specframe.data.chat import render_prompt
    from specframe.evaluation.benchmarks import build_benchmark
    from specframe.evaluation.parity import parity_report

    prompts = []
    for name in settings.benchmarks:
        for prompt in build_benchmark(name, settings.benchmark_options.get(name)).prompts(settings.num_prompts):
            prompts.append(render_prompt(target.tokenizer, [{"role": "user", "content": prompt.turns[0]}]))
    rep = parity_report(target, drafter, vocab, prompts, max_new_tokens=settings.max_new_tokens)
    return json.loads(json.dumps(rep))


COMMANDS = [("eval", "decode for real on benchmarks: τ_real, speedup, parity with τ_sim", add_arguments, run)]
"""(name, help, add_arguments, run); cli/__init__.py registers it."""
