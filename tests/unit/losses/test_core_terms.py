"""The paper's loss terms (ce, positional, first_error_focal, chain) against naive per-block references.

Each reference below is written with plain Python loops over blocks and slots, straight from method.md §4,
and is differentiated by autograd like the real term: values AND gradients w.r.t. the logits must agree.
"""
from __future__ import annotations

import math

import pytest
import torch
from torch import Tensor

from specframe.interfaces import SlotChunk
from specframe.losses import LOSS_TERMS

V = 7  # vocabulary
L = 5  # slots 1..K-1 of a block of K = 6


# -- naive references ------------------------------------------------------------------------------
def _logp(logits: Tensor, n: int, j: int, v: int) -> Tensor:
    return torch.log_softmax(logits[n, j].float(), dim=-1)[v]


def ref_ce(logits, labels, mask, valid):
    num, den = logits.sum() * 0, 0.0
    for n in range(logits.shape[0]):
        for j in range(logits.shape[1]):
            if valid[n] and mask[n, j] and labels[n, j] >= 0:
                num = num - _logp(logits, n, j, int(labels[n, j]))
                den += 1
    return num, den


def ref_positional(logits, labels, mask, valid, shape: str, gamma: float):
    n_slots = logits.shape[1]

    def w(k: int) -> float:  # slot k = 1..K-1
        if shape == "exp":
            return math.exp(-(k - 1) / gamma)
        if shape == "linear":
            return 1 - (k - 1) / n_slots  # n_slots = B - 1
        return 1.0

    num, den = logits.sum() * 0, 0.0
    for n in range(logits.shape[0]):
        for j in range(n_slots):
            if valid[n] and mask[n, j] and labels[n, j] >= 0:
                num = num + w(j + 1) * -_logp(logits, n, j, int(labels[n, j]))
                den += w(j + 1)
    return num, den


def ref_focal(logits, labels, mask, valid, phi: float):
    num, den = logits.sum() * 0, 0.0
    for n in range(logits.shape[0]):
        if not valid[n]:
            continue
        for j in range(logits.shape[1]):
            if not mask[n, j]:
                break  # end of the supervised prefix: the target could not accept past it
            if int(logits[n, j].argmax()) != int(labels[n, j]):
                if labels[n, j] >= 0:  # a label the drafter cannot produce cannot be learned: skip the block
                    lp = _logp(logits, n, j, int(labels[n, j]))
                    num = num + (1 - lp.exp()) ** phi * -lp
                    den += 1
                break
    return num, den


def ref_chain(logits, labels, mask, valid):
    n_slots = logits.shape[1]
    num, den = logits.sum() * 0, 0.0
    for n in range(logits.shape[0]):
        if not valid[n] or not any(bool(m) for m in mask[n]):
            continue
        den += 1
        prod, R = 1.0, 0.0
        for j in range(n_slots):
            if not mask[n, j] or labels[n, j] < 0:
                break  # the product stops at the first slot the target could not accept
            prod = prod * _logp(logits, n, j, int(labels[n, j])).exp()
            R = R + prod
        num = num - R / n_slots
    return num, den


# case -> (registry name, options, reference(logits, labels, mask, block_valid) -> (numerator, denominator))
REFERENCES = {
    "ce": ("ce", {}, ref_ce),
    "positional_exp": ("positional", {"gamma": 3.0}, lambda *a: ref_positional(*a, "exp", 3.0)),
    "positional_linear": ("positional", {"shape": "linear"}, lambda *a: ref_positional(*a, "linear", 10.0)),
    "positional_flat": ("positional", {"shape": "flat"}, lambda *a: ref_positional(*a, "flat", 10.0)),
    "focal_phi0": ("first_error_focal", {}, lambda *a: ref_focal(*a, 0.0)),
    "focal_phi2": ("first_error_focal", {"phi": 2.0}, lambda *a: ref_focal(*a, 2.0)),
    "focal_phi05": ("first_error_focal", {"phi": 0.5}, lambda *a: ref_focal(*a, 0.5)),
    "chain": ("chain", {}, ref_chain),
}


# -- chunks ----------------------------------------------------------------------------------------
def _force(logits: Tensor, n: int, j: int, token: int, margin: float = 4.0) -> None:
    """Make `token` the argmax of slot (n, j)."""
    logits[n, j, token] = logits[n, j].max() + margin


# One block per edge case: (loss mask of slots 1..5, block_valid, per-slot drafter outcome, what the terms do).
# Outcome per slot: "+" argmax equals the label, "x" argmax differs, "-" label is -1 (not draftable), "." random.
EDGE_BLOCKS = [
    ("11111", True, "++x..", "error at slot 3 after two correct slots: focal j* = slot 3"),
    ("11111", True, "+++++", "no error: focal contributes nothing and its denominator excludes the block"),
    ("00000", True, ".....", "all slots masked: no term counts the block"),
    ("11000", True, "++xx.", "cut by the sequence end after 2 slots: chain stops, errors lie beyond focal's prefix"),
    ("11100", True, "+x...", "cut after 3 slots, error at slot 2 inside the prefix"),
    ("00000", False, ".....", "padding block with nothing supervised (what the objective produces)"),
    ("11111", False, "x....", "padding block whose mask is on: block_valid alone must exclude it"),
    ("11111", True, "+-...", "-1 label at slot 2: ce excludes it, chain stops, focal's j* lands on it and skips"),
    ("11111", True, "x.-..", "-1 label at slot 3, but slot 1 is already wrong: focal counts slot 1"),
    ("10111", True, "+.x..", "a gap in the loss mask: chain stops at it, focal looks only before it"),
]


def edge_chunk() -> SlotChunk:
    """The EDGE_BLOCKS as a chunk."""
    g = torch.Generator().manual_seed(1)
    n = len(EDGE_BLOCKS)
    logits = torch.randn(n, L, V, generator=g)
    labels = torch.randint(0, V, (n, L), generator=g)
    for b, (_, _, outcome, _) in enumerate(EDGE_BLOCKS):
        for j, o in enumerate(outcome):
            if o == "+":
                _force(logits, b, j, int(labels[b, j]))
            elif o == "x":
                _force(logits, b, j, (int(labels[b, j]) + 1) % V)
            elif o == "-":
                labels[b, j] = -1
    mask = torch.tensor([[c == "1" for c in m] for m, _, _, _ in EDGE_BLOCKS])
    valid = torch.tensor([v for _, v, _, _ in EDGE_BLOCKS])
    return SlotChunk(logits=logits.requires_grad_(True), labels=labels, mask=mask, block_valid=valid)


def random_chunk(seed: int, n: int = 12) -> SlotChunk:
    """Random blocks with streaks of correct slots, gaps, cut blocks, -1 labels and padding blocks."""
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(n, L, V, generator=g) * 2
    labels = torch.randint(0, V, (n, L), generator=g)
    agree = torch.rand(n, L, generator=g) < 0.6
    for b in range(n):
        for j in range(L):
            if agree[b, j]:
                _force(logits, b, j, int(labels[b, j]), margin=float(torch.rand(1, generator=g)) * 3)
    cut = torch.randint(0, L + 1, (n,), generator=g)
    mask = torch.arange(L).unsqueeze(0) < cut.unsqueeze(1)
    mask &= torch.rand(n, L, generator=g) > 0.1  # occasional gaps
    labels = labels.masked_fill(torch.rand(n, L, generator=g) < 0.1, -1)
    valid = torch.rand(n, generator=g) > 0.15
    return SlotChunk(logits=logits.requires_grad_(True), labels=labels, mask=mask, block_valid=valid)


def fresh(chunk: SlotChunk) -> SlotChunk:
    """The same chunk with a new leaf for the logits (cached properties are per instance)."""
    return SlotChunk(logits=chunk.logits.detach().clone().requires_grad_(True), labels=chunk.labels,
                     mask=chunk.mask, block_valid=chunk.block_valid)


def compare(case: str, chunk: SlotChunk) -> tuple[float, float]:
    name, opts, ref = REFERENCES[case]
    term = LOSS_TERMS.build(name, opts)
    a = fresh(chunk)
    got = term(a)
    b = fresh(chunk)
    want_num, want_den = ref(b.logits, b.labels, b.mask, b.block_valid)
    torch.testing.assert_close(got.numerator.detach(), want_num.detach().float(), atol=1e-5, rtol=1e-5)
    assert float(got.denominator) == pytest.approx(want_den, rel=1e-6, abs=1e-6)  # float32 sums
    assert not got.denominator.requires_grad or got.denominator.grad_fn is None
    if want_den > 0:
        g_got, = torch.autograd.grad(got.numerator / got.denominator, a.logits, allow_unused=True)
        g_got = torch.zeros_like(a.logits) if g_got is None else g_got
        if want_num.requires_grad:
            g_want, = torch.autograd.grad(want_num / want_den, b.logits)
        else:
            g_want = torch.zeros_like(b.logits)
        assert torch.isfinite(g_got).all()
        torch.testing.assert_close(g_got, g_want, atol=1e-6, rtol=1e-5)
    return float(got.numerator.detach()), float(got.denominator)


@pytest.mark.parametrize("case", sorted(REFERENCES))
def test_edge_cases_match_reference(case: str) -> None:
    compare(case, edge_chunk())


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("case", sorted(REFERENCES))
def test_random_chunks_match_reference(case: str, seed: int) -> None:
    compare(case, random_chunk(seed))


# -- the edge cases spelled out (the reference could share a misreading with the code) -------------
def test_edge_denominators() -> None:
    chunk = edge_chunk()
    ce = LOSS_TERMS.build("ce", {})(fresh(chunk))
    # supervised slots of real blocks, minus the two -1 labels: 5+5+0+2+3+4+4+4 (blocks 0,1,2,3,4,7,8,9)
    assert float(ce.denominator) == 5 + 5 + 0 + 2 + 3 + 4 + 4 + 4
    focal = LOSS_TERMS.build("first_error_focal", {})(fresh(chunk))
    assert float(focal.denominator) == 3  # blocks 0, 4, 8 (1: no error, 3/9: error outside the prefix, 7: -1)
    chain = LOSS_TERMS.build("chain", {})(fresh(chunk))
    assert float(chain.denominator) == 7  # real blocks with a supervised slot: all but 2 (empty), 5 and 6 (padding)


def test_flat_positional_equals_ce() -> None:
    chunk = random_chunk(3)
    a, b = fresh(chunk), fresh(chunk)
    ce = LOSS_TERMS.build("ce", {})(a)
    flat = LOSS_TERMS.build("positional", {"shape": "flat"})(b)
    torch.testing.assert_close(ce.numerator / ce.denominator, flat.numerator / flat.denominator)
    ga, = torch.autograd.grad(ce.numerator / ce.denominator, a.logits)
    gb, = torch.autograd.grad(flat.numerator / flat.denominator, b.logits)
    torch.testing.assert_close(ga, gb)


def test_positional_exp_weights_decay_from_one() -> None:
    from specframe.losses.positional import PositionalConfig, slot_weights

    w = slot_weights(15, PositionalConfig(gamma=10.0))
    torch.testing.assert_close(w, torch.exp(-torch.arange(15.0) / 10))
    assert w[0] == 1.0 and (w[1:] < w[:-1]).all()
    lin = slot_weights(15, PositionalConfig(shape="linear"))
    assert lin[0] == 1.0 and lin[-1] == pytest.approx(1 / 15) and (lin > 0).all()


def test_focal_gradient_only_at_first_error() -> None:
    chunk = fresh(edge_chunk())
    out = LOSS_TERMS.build("first_error_focal", {"phi": 2.0})(chunk)
    g, = torch.autograd.grad(out.numerator, chunk.logits)
    touched = (g.abs().sum(-1) > 0).nonzero().tolist()
    assert touched == [[0, 2], [4, 1], [8, 0]]


def test_focal_phi_downweights_confident_errors() -> None:
    chunk = fresh(edge_chunk())
    plain = LOSS_TERMS.build("first_error_focal", {"phi": 0.0})(chunk)
    focused = LOSS_TERMS.build("first_error_focal", {"phi": 2.0})(chunk)
    assert 0 < float(focused.numerator.detach()) < float(plain.numerator.detach())


def test_chain_is_expected_streak_over_block_size() -> None:
    # one block, p_j = 1/2 on every slot: R = (1/2 + 1/4 + ... + 1/2^L) / L
    logits = torch.zeros(1, L, 2)
    chunk = SlotChunk(logits=logits, labels=torch.zeros(1, L, dtype=torch.long),
                      mask=torch.ones(1, L, dtype=torch.bool),
                      block_valid=torch.tensor([True]))
    out = LOSS_TERMS.build("chain", {})(chunk)
    R = sum(0.5 ** k for k in range(1, L + 1)) / L
    assert float(out.numerator) == pytest.approx(-R, rel=1e-6) and float(out.denominator) == 1


def test_perfect_drafter_has_zero_ce_and_full_chain() -> None:
    labels = torch.randint(0, V, (3, L))
    logits = torch.nn.functional.one_hot(labels, V).float() * 60
    chunk = SlotChunk(logits=logits, labels=labels, mask=torch.ones(3, L, dtype=torch.bool),
                      block_valid=torch.ones(3, dtype=torch.bool))
    ce = LOSS_TERMS.build("ce", {})(chunk)
    assert float(ce.numerator) == pytest.approx(0, abs=1e-5)
    chain = LOSS_TERMS.build("chain", {})(chunk)
    assert float(chain.numerator / chain.denominator) == pytest.approx(-1.0, abs=1e-5)
    focal = LOSS_TERMS.build("first_error_focal", {})(chunk)
    assert float(focal.denominator) == 0 and float(focal.numerator) == 0
