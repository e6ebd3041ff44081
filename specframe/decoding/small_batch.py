"""Linear layers for the few rows of a decode step on CPU: `W @ x.T` instead of `x @ W.T`.

A decode step multiplies every weight matrix by 1 to 16 rows (one token, or the anchor and its drafts). On a
CPU, float32, with the MKL that PyTorch ships, `F.linear` takes about twice as long for 2-16 rows as for one
row: measured on SmolLM2-135M's 211 weight matrices (2 AVX2 cores), 75 ms for 1 row, 129 ms for 2, 149 ms for
4 and 134 ms for 8, while the transposed product `(W @ x.T).T` took 74, 65, 69 and 82 ms. The weights are
read from memory once either way; the 2-16-row path of `F.linear` is the slow one. Since speculative decoding
pays only if verifying B tokens costs about what generating one does, this is the difference between a verify
step costing 2x a target step and costing about 1x (`python3 tools/bench_small_batch.py`).

One row is the other slow case, and it is the target-only baseline's every step: a matrix-vector product
(`F.linear`, `torch.mm` or `torch.mv` alike) streams the weights slower than a 2-column product does. On 2
AVX-512 cores, a 1-token SmolLM2 forward took 59.6 ms with `F.linear` and 38.7 ms when each one-row product
is computed as a 2-column one (the row twice) and one column kept; 2 tokens took 35.1 ms. So one row takes
that path too: target-only decoding, which runs under the same context, no longer pays for the slow
matrix-vector product, so the speedup of speculative decoding over it is not flattered by a slow baseline.

`small_batch_linears(*modules)` routes every `nn.Linear` inside the modules through `small_batch_linear`
while the context is open; outside it nothing changes. Only float32 CPU inputs of at most `MAX_ROWS` rows with
no gradient take the transposed product; anything else calls `F.linear` as before. The result differs from
`F.linear`'s only by float rounding (summation order), as two batch sizes of `F.linear` already do; the
lossless property of speculative decoding does not depend on it, and `specframe eval` checks greedy identity
against target-only decoding, which runs under the same context.
"""
from __future__ import annotations

import contextlib
import types
from collections.abc import Iterator

import torch
import torch.nn.functional as F
from torch import Tensor, nn

MAX_ROWS = 16
"""Rows up to which the transposed product is used (measured faster for 2..16 rows; prefill keeps F.linear)."""

_MARK = "_specframe_small_batch"


def takes_small_batch_path(x: Tensor, weight: Tensor) -> bool:
    """True when `small_batch_linear` uses the transposed product for this input."""
    if x.device.type != "cpu" or x.dtype != torch.float32 or weight.dtype != torch.float32 or x.dim() == 0:
        return False
    if torch.is_grad_enabled() and (x.requires_grad or weight.requires_grad):
        return False
    rows = x.numel() // max(x.shape[-1], 1)
    return 1 <= rows <= MAX_ROWS


def small_batch_linear(x: Tensor, weight: Tensor, bias: Tensor | None = None) -> Tensor:
    """`F.linear(x, weight, bias)`, computed as `(weight @ x.T).T` for a few float32 rows on CPU."""
    if not takes_small_batch_path(x, weight):
        return F.linear(x, weight, bias)
    rows = x.reshape(-1, x.shape[-1])
    n = rows.shape[0]
    if n == 1:  # one row: a 2-column product, then keep one (see the module docstring)
        rows = rows.repeat(2, 1)
    out = torch.mm(weight, rows.t()).t()[:n]
    if bias is not None:
        out = out + bias
    return out.contiguous().view(*x.shape[:-1], weight.shape[0])


def _forward(self: nn.Linear, x: Tensor) -> Tensor:
    return small_batch_linear(x, self.weight, self.bias)


@contextlib.contextmanager
def small_batch_linears(*modules: nn.Module | None) -> Iterator[int]:
    """Route the `nn.Linear` layers of `modules` through `small_batch_linear` inside the block.

    Yields how many layers were routed. Nested or repeated use is safe: a layer already routed by an enclosing
    block is left to that block, which restores it.
    """
    patched: list[nn.Linear] = []
    try:
        for module in modules:
            if module is None:
                continue
            for layer in module.modules():
                if isinstance(layer, nn.Linear) and not getattr(layer, _MARK, False):
                    layer.forward = types.MethodType(_forward, layer)  # type: ignore[method-assign]
                    setattr(layer, _MARK, True)
                    patched.append(layer)
        yield len(patched)
    finally:
        for layer in patched:
            del layer.forward  # the instance attribute: the class's forward shows through again
            delattr(layer, _MARK)
