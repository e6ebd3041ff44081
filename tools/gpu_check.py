"""One prepared command for the day a GPU is available: prints a table and writes one JSON.

    python tools/gpu_check.py --out gpu_check.json            # on one H100/H200: Qwen3-8B shapes, < 8 minutes
    python tools/gpu_check.py --tiny --out /tmp/check.json    # CPU, tiny shapes: the same code (a test runs it)

Sections (each records its own error instead of stopping the others):
  1. attention: flex attention with the training BlockMask (compiled on CUDA) against dense SDPA with the same
     mask on the same inputs: max difference and time of each;
  2. training: bf16 steps of the real training step (`DraftTrainingModule.step`, AdamW) for a random-weight target
     of real shapes (Qwen3-8B) with a 5-layer drafter at 512 anchors x block 16 x 3,072 tokens: step time,
     supervised tokens/s, model FLOPs utilisation, peak memory and `specframe plan`'s estimate of it;
  3. the largest anchors (at 3,072 tokens) and length (at 512 anchors) whose step fits (CUDA only);
  4. flex attention's FLASH backend, where this torch and its kernels have one;
  5. real decoding with the oracle drafter against target-only decoding: τ, speedup and losslessness;
  6. the repository's CUDA tests (`pytest -m gpu`), their outcome.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import platform
import subprocess
import sys
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from specframe.plan import KNOWN_ARCHS, Arch  # noqa: E402
from specframe.targets import TARGETS  # noqa: E402

# Dense bf16 peak of one device, for model FLOPs utilisation.
PEAK_BF16 = {"H100": 989e12, "H200": 989e12, "H800": 989e12, "A100": 312e12, "L40S": 362e12, "B200": 2250e12}
TINY_ARCH = Arch(hidden=64, layers=4, heads=4, kv_heads=2, head_dim=16, intermediate=128, vocab=512, tied=True)


@dataclass(kw_only=True)
class Shapes:
    arch_name: str
    arch: Arch
    drafter_layers: int
    anchors: int
    block: int
    length: int
    batch: int
    steps: int
    decode_tokens: int
    search_fit: bool


def shapes(tiny: bool) -> Shapes:
    if tiny:
        return Shapes(arch_name="tiny", arch=TINY_ARCH, drafter_layers=2, anchors=8, block=4, length=64, batch=1,
                      steps=2, decode_tokens=12, search_fit=False)
    return Shapes(arch_name="qwen/qwen3-8b", arch=KNOWN_ARCHS["qwen/qwen3-8b"], drafter_layers=5, anchors=512,
                  block=16, length=3072, batch=1, steps=5, decode_tokens=256, search_fit=True)


# --------------------------------------------------------------------------------------------------
# A random-weight target of real shapes, registered like any other target
# --------------------------------------------------------------------------------------------------
@dataclass(kw_only=True)
class RandomShapeConfig:
    arch: str = "tiny"
    dtype: str = "bfloat16"
    device: str = "cpu"
    num_taps: int = 5


def build_random_target(cfg: RandomShapeConfig) -> Any:
    """A target with random weights and a real model's shapes (Qwen3-8B by default), for GPU timing only."""
    from transformers import AutoModelForCausalLM, LlamaConfig

    from specframe.data.tiny_tokenizer import tiny_tokenizer
    from specframe.targets.hf import HFTarget, default_tap_layers

    a = TINY_ARCH if cfg.arch == "tiny" else KNOWN_ARCHS[cfg.arch]
    common = dict(vocab_size=a.vocab, hidden_size=a.hidden, num_hidden_layers=a.layers, num_attention_heads=a.heads,
                  num_key_value_heads=a.kv_heads, intermediate_size=a.intermediate, tie_word_embeddings=a.tied,
                  max_position_embeddings=40960, bos_token_id=None, eos_token_id=0, pad_token_id=0)
    if a.qk_norm:
        from transformers import Qwen3Config

        conf: Any = Qwen3Config(head_dim=a.head_dim, rope_theta=1e6, **common)
    else:
        conf = LlamaConfig(head_dim=a.head_dim, **common)
    dtype = {"bfloat16": torch.bfloat16, "float32": torch.float32}[cfg.dtype]
    torch.manual_seed(0)
    with torch.device(cfg.device):
        model = AutoModelForCausalLM.from_config(conf, dtype=dtype)
    return HFTarget(model, tiny_tokenizer(), f"random({cfg.arch})", default_tap_layers(a.layers, cfg.num_taps))


if "random_shape" not in TARGETS.names():
    TARGETS.register("random_shape", config=RandomShapeConfig)(build_random_target)


def recipe_dict(s: Shapes, device: str, attention: str, precision: str) -> dict[str, Any]:
    return {
        "run": {"name": "gpu_check", "output_dir": "/tmp/gpu_check", "seed": 0},
        "data": {"train": "sharegpt", "max_length": s.length, "batch_size": s.batch, "num_anchors": s.anchors},
        "target": {"name": "random_shape", "arch": s.arch_name, "device": device,
                   "dtype": "bfloat16" if precision.startswith("bf16") else "float32", "num_taps": 5},
        "drafter": {"name": "block_diffusion", "num_layers": s.drafter_layers, "block_size": s.block,
                    "attention": attention},
        "loss": [{"name": "positional", "weight": 1.0, "gamma": 10}, {"name": "first_error_focal", "weight": 0.3},
                 {"name": "chain", "weight": 40.0}],
        "optim": {"lr": 6e-4, "chunk_blocks": 128},
        "trainer": {"max_steps": 10, "precision": precision, "accelerator": "gpu" if device == "cuda" else "cpu",
                    "devices": 1, "strategy": "auto"},
    }


def _sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def _peak(device: str) -> int | None:
    return int(torch.cuda.max_memory_allocated()) if device == "cuda" else None


# --------------------------------------------------------------------------------------------------
# Sections
# --------------------------------------------------------------------------------------------------
def check_attention(s: Shapes, device: str, compile_flex: bool) -> dict[str, Any]:
    from specframe.data.anchors import sample_anchors
    from specframe.drafters.attention import masked_attention

    a = s.arch
    B, S, N, K, h, d = s.batch, s.length, s.anchors, s.block, a.heads, a.head_dim
    dtype = torch.bfloat16 if device == "cuda" else torch.float32
    g = torch.Generator().manual_seed(0)
    loss_mask = torch.ones(B, S, dtype=torch.bool)
    loss_mask[:, : S // 8] = False
    anchors, valid = sample_anchors(loss_mask, N, g)
    anchors, valid = anchors.to(device), valid.to(device)
    ctx_valid = torch.ones(B, S, dtype=torch.bool, device=device)
    q = torch.randn(B, h, N * K, d, generator=g).to(device, dtype)
    k = torch.randn(B, h, S + N * K, d, generator=g).to(device, dtype)
    v = torch.randn(B, h, S + N * K, d, generator=g).to(device, dtype)

    def timed(backend: str) -> tuple[torch.Tensor, float]:
        out = masked_attention(q, k, v, anchors, valid, ctx_valid, K, backend=backend)  # warm-up / compile
        _sync(device)
        t0 = time.perf_counter()
        reps = 5 if device == "cuda" else 1
        for _ in range(reps):
            out = masked_attention(q, k, v, anchors, valid, ctx_valid, K, backend=backend)
        _sync(device)
        return out, (time.perf_counter() - t0) / reps

    import specframe.drafters.attention as att

    if compile_flex:  # the flex kernel is only fast compiled; the drafter leaves compiling to trainer.compile
        from torch.nn.attention import flex_attention as fa

        fa.flex_attention = torch.compile(fa.flex_attention, dynamic=False)
    dense, t_dense = timed("sdpa")
    flex, t_flex = timed("flex")
    diff = (dense.float() - flex.float()).abs().max().item()
    del att
    return {"shape": {"B": B, "heads": h, "queries": N * K, "keys": S + N * K, "head_dim": d},
            "dtype": str(dtype).replace("torch.", ""), "flex_compiled": compile_flex,
            "max_abs_diff_flex_vs_sdpa": diff, "sdpa_ms": 1000 * t_dense, "flex_ms": 1000 * t_flex,
            "flex_speedup": t_dense / t_flex if t_flex > 0 else None}


def check_flash_backend(s: Shapes, device: str) -> dict[str, Any]:
    from torch.nn.attention.flex_attention import create_block_mask, flex_attention

    if device != "cuda":
        return {"available": False, "why": "the FLASH backend of flex attention is CUDA only"}
    B, h, d, L = 1, s.arch.heads, s.arch.head_dim, 2048
    q = torch.randn(B, h, L, d, device=device, dtype=torch.bfloat16)

    def causal(b: Any, hh: Any, qi: Any, ki: Any) -> Any:
        return qi >= ki

    bm = create_block_mask(causal, B, None, L, L, device=device)
    try:
        fn = torch.compile(flex_attention)
        ref = fn(q, q, q, block_mask=bm)
        out = fn(q, q, q, block_mask=bm, kernel_options={"BACKEND": "FLASH"})
        return {"available": True, "max_abs_diff_vs_triton": (out.float() - ref.float()).abs().max().item()}
    except Exception as e:  # noqa: BLE001  (not built into this torch, or its kernels missing)
        return {"available": False, "why": f"{type(e).__name__}: {str(e).splitlines()[0][:300]}"}


def train_steps(s: Shapes, device: str, precision: str, overrides: dict[str, int] | None = None,
                steps: int | None = None, module: Any = None) -> tuple[dict[str, Any], Any]:
    from specframe.config import validate_recipe
    from specframe.module import DraftTrainingModule
    from specframe.plan import estimate

    shp = Shapes(**{**s.__dict__, **(overrides or {})})
    attention = "flex" if device == "cuda" else "sdpa"
    rd = recipe_dict(shp, device, attention, precision)
    if module is None:
        module = DraftTrainingModule(rd)
        module.drafter.to(device)
    else:  # same weights, new shapes: only data settings change
        module.recipe = validate_recipe(rd)
    opt = torch.optim.AdamW([p for p in module.drafter.parameters() if p.requires_grad], lr=6e-4)
    g = torch.Generator().manual_seed(0)
    B, S = shp.batch, shp.length
    batch = {"input_ids": torch.randint(0, shp.arch.vocab, (B, S), generator=g).to(device),
             "attention_mask": torch.ones(B, S, dtype=torch.long, device=device),
             "loss_mask": torch.ones(B, S, dtype=torch.long, device=device)}
    batch["loss_mask"][:, : S // 8] = 0
    mixed = precision.startswith("bf16-mixed")
    if device == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
    times, slots = [], 0
    n = steps or shp.steps
    for i in range(n + 1):  # the first step warms up (and compiles)
        _sync(device)
        t0 = time.perf_counter()
        with torch.autocast(device, dtype=torch.bfloat16, enabled=mixed):
            loss, _, parts = module.step(batch, torch.Generator().manual_seed(i))
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        _sync(device)
        if i:
            times.append(time.perf_counter() - t0)
            slots = int(parts.mask.sum())
    step_s = sum(times) / len(times)
    a = shp.arch
    P_t = sum(p.numel() for p in module.target.parameters())
    P_d = sum(p.numel() for p in module.drafter.parameters())
    T = shp.anchors * shp.block
    flops = (2 * P_t * B * S  # target forward
             + 6 * P_d * B * T  # drafter linear layers, forward + backward
             + 6 * B * a.heads * a.head_dim * T * (S / 2 + shp.block) * shp.drafter_layers  # attention (visible keys)
             + 8 * B * shp.anchors * (shp.block - 1) * a.hidden * a.vocab)  # LM head: fwd, recompute, bwd
    name = torch.cuda.get_device_name() if device == "cuda" else platform.processor() or "cpu"
    peak_flops = next((v for k, v in PEAK_BF16.items() if k in name), None)
    plan = estimate(validate_recipe(rd), devices=1, arch=a, strategy="single",
                    attention="flex" if device == "cuda" else "dense")
    peak = _peak(device)
    out = {"anchors": shp.anchors, "block": shp.block, "length": S, "batch": B, "drafter_layers": shp.drafter_layers,
           "precision": precision, "attention": attention, "step_s": step_s, "supervised_tokens_per_step": slots,
           "supervised_tokens_per_s": slots / step_s, "model_tflops_per_step": flops / 1e12,
           "mfu": (flops / step_s / peak_flops) if peak_flops else None, "peak_bytes": peak,
           "plan_estimate_bytes": plan.total, "plan_over_measured": (plan.total / peak) if peak else None,
           "loss": float(loss.detach())}
    return out, module


def largest_fit(s: Shapes, device: str, precision: str, module: Any, budget_s: float) -> dict[str, Any]:
    if device != "cuda" or not s.search_fit:
        return {"skipped": "CUDA only (an OOM on CPU is the host's)"}
    t_end = time.time() + budget_s
    found: dict[str, Any] = {}
    for key, values, fixed in (("anchors", [768, 1024, 1536, 2048, 3072], {}),
                               ("length", [4096, 6144, 8192, 12288, 16384], {})):
        best = s.anchors if key == "anchors" else s.length
        for v in values:
            if time.time() > t_end:
                found[f"{key}_stopped"] = "time budget"
                break
            try:
                train_steps(s, device, precision, {key: v, **fixed}, steps=1, module=module)
                best = v
            except torch.cuda.OutOfMemoryError:
                torch.cuda.empty_cache()
                break
        found[f"largest_{key}"] = best
    return found


def check_decoding(s: Shapes, device: str, target: Any) -> dict[str, Any]:
    from specframe.decoding.engine import SpeculativeDecoder, target_only_decode

    g = torch.Generator().manual_seed(1)
    prompt = torch.randint(1, s.arch.vocab, (64,), generator=g).tolist()
    base = target_only_decode(target, prompt, max_new_tokens=s.decode_tokens, eos_ids=set())
    base = target_only_decode(target, prompt, max_new_tokens=s.decode_tokens, eos_ids=set())  # warm
    oracle = SpeculativeDecoder.oracle(target, prompt + base.tokens, block_size=s.block, eos_ids=set())
    spec = oracle.generate(prompt, max_new_tokens=s.decode_tokens)
    return {"new_tokens": len(base.tokens), "tau_oracle": spec.tau, "lossless": spec.tokens == base.tokens,
            "target_only_s": base.decode_seconds, "oracle_s": spec.decode_seconds,
            "speedup": base.decode_seconds / spec.decode_seconds if spec.decode_seconds else None}


def run_gpu_tests() -> dict[str, Any]:
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-m", "gpu", "-p", "no:cacheprovider"],
                          cwd=ROOT, capture_output=True, text=True, timeout=240)
    tail = (proc.stdout or "").strip().splitlines()[-1:] or [""]
    return {"returncode": proc.returncode, "summary": tail[0]}


# --------------------------------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="tools/gpu_check.py", description=__doc__.split("\n")[0])
    p.add_argument("--tiny", action="store_true", help="tiny shapes (CPU is fine): the code path, not the figures")
    p.add_argument("--device", choices=("cuda", "cpu"), help="default: cuda when available")
    p.add_argument("--out", default="gpu_check.json", help="the JSON to write")
    p.add_argument("--no-pytest", action="store_true", help="skip section 6 (the CUDA tests)")
    args = p.parse_args(argv)
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    if device == "cpu" and not args.tiny:
        print("error: full shapes need CUDA; use --tiny on CPU", file=sys.stderr)
        return 2
    s = shapes(args.tiny)
    precision = "bf16-mixed"
    t_start = time.time()
    report: dict[str, Any] = {"device": torch.cuda.get_device_name() if device == "cuda" else "cpu",
                              "torch": torch.__version__, "shapes": s.arch_name, "sections": {}}

    def section(name: str, fn: Any) -> Any:
        t0 = time.time()
        try:
            result = fn()
        except Exception as e:  # noqa: BLE001  (recorded; the other sections still run)
            result = {"error": f"{type(e).__name__}: {e}", "traceback": traceback.format_exc()[-2000:]}
        if isinstance(result, tuple):
            result, extra = result
        else:
            extra = None
        result["seconds"] = round(time.time() - t0, 2)
        report["sections"][name] = result
        print(f"[{name}] " + ", ".join(f"{k}={_fmt(v)}" for k, v in result.items() if k != "traceback"), flush=True)
        return extra

    section("attention", lambda: check_attention(s, device, compile_flex=device == "cuda"))
    module = section("training", lambda: train_steps(s, device, precision))
    if module is not None:
        section("largest_fit", lambda: largest_fit(s, device, precision, module, budget_s=150))
    section("flex_flash_backend", lambda: check_flash_backend(s, device))
    if module is not None:
        section("decoding", lambda: check_decoding(s, device, module.target))
    if not args.no_pytest and device == "cuda":
        section("cuda_tests", run_gpu_tests)
    report["total_seconds"] = round(time.time() - t_start, 1)
    Path(args.out).write_text(json.dumps(report, indent=2))
    print(f"total {report['total_seconds']} s; wrote {args.out}")
    failed = [k for k, v in report["sections"].items() if "error" in v]
    return 1 if failed else 0


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.4g}" if math.isfinite(v) else str(v)
    if isinstance(v, dict):
        return "{" + ", ".join(f"{k}: {_fmt(x)}" for k, x in v.items()) + "}"
    return str(v)


if __name__ == "__main__":
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    sys.exit(main())
