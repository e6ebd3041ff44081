"""`auto` precision: bfloat16 only where the device computes it natively, float32 elsewhere.

On a CPU without bf16 instructions (AVX2-only, e.g. many AMD EPYC and laptop CPUs) PyTorch emulates bf16
matmuls and they run about 8x slower than float32 (docs/results.md); on CPUs with AVX-512 BF16 or AMX, and on
CUDA devices with bf16 support, bf16 is the faster choice. Recipes say `auto` for the target dtype
(`target.dtype`), the training precision (`trainer.precision`) and the evaluation dtype (`eval.dtype`);
each is resolved here, once per process, and the choice is logged with its reason.
"""
from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import torch

log = logging.getLogger(__name__)

AUTO = "auto"
BF16_CPU_FLAGS = ("avx512_bf16", "amx_bf16")
"""/proc/cpuinfo flags that mean the CPU computes bf16 natively."""
BF16_CPU_CAPABILITIES = ("AVX512_BF16", "AMX")
"""Prefixes of torch.backends.cpu.get_cpu_capability() that mean the same."""


@dataclass(frozen=True)
class Bf16Support:
    native: bool
    reason: str


def cpu_flags() -> set[str]:
    """The CPU's feature flags from /proc/cpuinfo (empty where there is none, e.g. macOS)."""
    path = Path("/proc/cpuinfo")
    try:
        text = path.read_text()
    except OSError:
        return set()
    for line in text.splitlines():
        if line.startswith("flags"):
            return set(line.split(":", 1)[1].split())
    return set()


def cpu_capability() -> str:
    """What torch's CPU kernels dispatch to: DEFAULT, AVX2, AVX512, AVX512_BF16, AMX, ..."""
    try:
        return str(torch.backends.cpu.get_cpu_capability())
    except (AttributeError, RuntimeError):
        return "unknown"


def probe_bf16(device: str = "cpu") -> Bf16Support:
    """Does `device` compute bf16 natively? The answer and a one-line reason for the run log."""
    kind = torch.device(device).type
    if kind == "cuda":
        if torch.cuda.is_available() and torch.cuda.is_bf16_supported():
            return Bf16Support(True, f"CUDA device {torch.cuda.get_device_name()} supports bf16")
        return Bf16Support(False, "CUDA device without bf16 support")
    if kind != "cpu":
        return Bf16Support(False, f"device type {kind!r}: bf16 support unknown, float32 is the safe choice")
    cap = cpu_capability()
    forced = os.environ.get("ATEN_CPU_CAPABILITY", "").strip()
    if forced and not cap.upper().startswith(BF16_CPU_CAPABILITIES):
        # The user capped torch's kernels below bf16 (e.g. to time an AVX2 machine on an AVX-512 one): honour it.
        return Bf16Support(False, f"ATEN_CPU_CAPABILITY={forced} caps torch's CPU kernels at {cap}, below native "
                                  "bf16: float32")
    flags = cpu_flags() & set(BF16_CPU_FLAGS)
    if cap.upper().startswith(BF16_CPU_CAPABILITIES) or flags:
        why = f"torch CPU capability {cap}" + (f", cpu flags {' '.join(sorted(flags))}" if flags else "")
        return Bf16Support(True, f"CPU computes bf16 natively ({why})")
    return Bf16Support(False, f"CPU has no native bf16 (torch CPU capability {cap}; no avx512_bf16/amx_bf16 flag): "
                              f"bf16 would be emulated, several times slower than float32")


@lru_cache(maxsize=None)
def _logged(what: str, choice: str, reason: str) -> None:
    log.warning("%s auto -> %s: %s", what, choice, reason)  # warning: shown without --verbose


def resolve_dtype(name: str | None, device: str = "cpu", what: str = "dtype") -> str | None:
    """'auto' -> 'bfloat16' or 'float32' for `device`; any other name (or None) is returned unchanged."""
    if name != AUTO:
        return name
    support = probe_bf16(device)
    choice = "bfloat16" if support.native else "float32"
    _logged(what, choice, support.reason)
    return choice


def resolve_precision(precision: str, device: str = "cpu") -> str:
    """Lightning precision 'auto' -> 'bf16-mixed' where bf16 is native, '32-true' elsewhere."""
    if precision != AUTO:
        return precision
    support = probe_bf16(device)
    choice = "bf16-mixed" if support.native else "32-true"
    _logged("trainer.precision", choice, support.reason)
    return choice


def default_device(accelerator: str = "auto") -> str:
    """The device a Lightning `accelerator` setting trains on (cuda where available under 'auto')."""
    if accelerator in ("gpu", "cuda") or (accelerator == "auto" and torch.cuda.is_available()):
        return "cuda"
    return "cpu"
