"""The small-batch linear path: same numbers as F.linear (up to rounding), only where it applies, and undone on exit."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from specframe.decoding.engine import SpeculativeDecoder, target_only_decode
from specframe.decoding.small_batch import MAX_ROWS, small_batch_linear, small_batch_linears, takes_small_batch_path


@pytest.mark.parametrize("shape", [(1, 24), (3, 24), (1, 5, 24), (2, 8, 24), (MAX_ROWS, 24), (MAX_ROWS + 1, 24)])
@pytest.mark.parametrize("bias", [False, True])
def test_equals_f_linear(shape, bias):
    g = torch.Generator().manual_seed(0)
    x, w = torch.randn(*shape, generator=g), torch.randn(40, 24, generator=g)
    b = torch.randn(40, generator=g) if bias else None
    out = small_batch_linear(x, w, b)
    assert out.shape == (*shape[:-1], 40) and out.is_contiguous()
    torch.testing.assert_close(out, F.linear(x, w, b), rtol=1e-5, atol=1e-5)


def test_one_row_is_computed_as_a_two_column_product(monkeypatch):
    """The target-only baseline's 1-token steps take the fast 2-column product, not a matrix-vector one."""
    seen = []
    real_mm = torch.mm
    monkeypatch.setattr(torch, "mm", lambda a, b: seen.append(tuple(b.shape)) or real_mm(a, b))
    x, w = torch.randn(1, 1, 24), torch.randn(40, 24)
    out = small_batch_linear(x, w)
    assert seen == [(24, 2)] and out.shape == (1, 1, 40)
    torch.testing.assert_close(out, F.linear(x, w), rtol=1e-5, atol=1e-5)


def test_path_taken_only_for_few_float32_rows_without_grad():
    w = torch.randn(8, 4)
    assert takes_small_batch_path(torch.randn(MAX_ROWS, 4), w)
    assert takes_small_batch_path(torch.randn(1, 2, 4), w)
    assert not takes_small_batch_path(torch.randn(MAX_ROWS + 1, 4), w)  # prefill and training batches
    assert not takes_small_batch_path(torch.randn(2, 4, dtype=torch.float64), w.double())
    assert not takes_small_batch_path(torch.randn(2, 4).bfloat16(), w.bfloat16())
    assert not takes_small_batch_path(torch.randn(2, 4, requires_grad=True), w)  # autograd keeps F.linear
    with torch.no_grad():
        assert takes_small_batch_path(torch.randn(2, 4), nn.Parameter(w))


def test_gradients_unchanged_inside_the_context():
    layer = nn.Linear(6, 3)
    x = torch.randn(2, 6, requires_grad=True)
    with small_batch_linears(layer):
        layer(x).sum().backward()
    assert x.grad is not None and layer.weight.grad is not None


def test_context_routes_every_linear_and_restores_them():
    model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Sequential(nn.Linear(8, 2, bias=False)))
    layers = [m for m in model.modules() if isinstance(m, nn.Linear)]
    x = torch.randn(3, 4)
    before = model(x)
    with small_batch_linears(model, None) as n:
        assert n == 2 and all("forward" in vars(m) for m in layers)
        torch.testing.assert_close(model(x), before, rtol=1e-5, atol=1e-6)
        with small_batch_linears(model) as inner:  # nested: left to the outer block
            assert inner == 0
        assert all("forward" in vars(m) for m in layers)
    assert all("forward" not in vars(m) for m in layers)
    with pytest.raises(RuntimeError, match="boom"), small_batch_linears(model):
        raise RuntimeError("boom")
    assert all("forward" not in vars(m) for m in layers)  # restored after an error too


def test_decoding_output_is_the_same_with_and_without(target, prompts, references, fitted_drafter):
    """Greedy output equals the target's with either kernel, and so do the drafts (rounding never flips one here)."""
    for p, ref in zip(prompts, references):
        base = target_only_decode(target, p, max_new_tokens=16, eos_ids=set(), small_batch_kernel=False)
        assert base.tokens == ref[:16]
        runs = [SpeculativeDecoder.for_drafter(target, fitted_drafter, small_batch_kernel=flag)
                .generate(p, max_new_tokens=16) for flag in (True, False)]
        assert runs[0].tokens == runs[1].tokens == target_only_decode(target, p, max_new_tokens=16).tokens
        assert [s.draft for s in runs[0].steps] == [s.draft for s in runs[1].steps]
