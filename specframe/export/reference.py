"""Running the reference implementation (`dflash==0.1.0`) beside ours, for parity checks and benchmarks.

    from specframe.export.reference import load_reference, reference_generate
    ref = load_reference(export_folder)             # dflash.DFlashDraftModel, float32, eval
    out = reference_generate(ref, target, prompt_ids, max_new_tokens=48, eos_ids={2})

The reference's `dflash_generate` times itself with torch.cuda.synchronize(); on a CPU machine that call
fails, so `reference_generate` swaps its clock for time.perf_counter while it runs (same loop, same outputs).
"""
from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch

INSTALL_HINT = "pip install --no-deps dflash==0.1.0"


def _module() -> Any:
    try:
        import dflash.model as m
    except ImportError as e:
        raise ImportError(f"the reference implementation is not installed: {INSTALL_HINT}") from e
    return m


def load_reference(folder: str | Path, dtype: torch.dtype = torch.float32) -> Any:
    return _module().DFlashDraftModel.from_pretrained(str(folder), dtype=dtype).eval()


@contextlib.contextmanager
def _cpu_clock(m: Any) -> Iterator[None]:
    saved = m._cuda_time

    def clock() -> float:
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        return time.perf_counter()

    m._cuda_time = clock
    try:
        yield
    finally:
        m._cuda_time = saved


def reference_generate(ref: Any, target: Any, prompt_ids: list[int], *, max_new_tokens: int,
                       eos_ids: set[int], block_size: int | None = None) -> dict[str, Any]:
    """Greedy `dflash_generate`: generated tokens (the prefill's first included) and tokens produced per step."""
    m = _module()
    device = next(target.model.parameters()).device
    ids = torch.tensor([prompt_ids], device=device)
    with _cpu_clock(m):
        out = m.dflash_generate(ref, target.model, ids, max_new_tokens, sorted(eos_ids) or None, temperature=0.0,
                                block_size=block_size, return_stats=True)
    return {"tokens": out.output_ids[0, len(prompt_ids):].tolist(), "per_step": list(out.acceptance_lengths),
            "time_per_output_token": out.time_per_output_token}
