"""The expected-streak family: a naive per-block reference, and the identities between its named settings."""
from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import torch

from specframe.errors import ConfigError
from specframe.interfaces import SlotChunk
from specframe.losses import LOSS_TERMS
from specframe.losses.streak import StreakSetting, expected_streak_loss

N, L, V = 4, 5, 9


def make_inputs(seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(N, L, V, generator=g)
    target = torch.randn(N, L, V, generator=g) * 2
    labels = torch.randint(0, V, (N, L), generator=g)
    labels[3, 2] = -1  # a label outside a reduced draft vocabulary stops the streak
    mask = torch.tensor([[1, 1, 1, 1, 0], [1, 0, 1, 1, 1], [0, 0, 0, 0, 0], [1, 1, 1, 1, 1]], dtype=torch.bool)
    block_valid = torch.tensor([True, True, True, True])
    return logits, target, labels, mask, block_valid


def chunk_of(x, target, labels, mask, block_valid):
    return SlotChunk(logits=x, labels=labels, mask=mask, block_valid=block_valid, target_logits=target)


def run_term(name, opts, logits, target, labels, mask, block_valid):
    x = logits.clone().requires_grad_(True)
    v = LOSS_TERMS.build(name, opts)(chunk_of(x, target, labels, mask, block_valid))
    loss = v.numerator / v.denominator
    loss.backward()
    return loss.detach(), x.grad, v


def naive(logits, target, labels, mask, block_valid, *, acceptance, detach, alpha, norm):
    """Per block, from the definitions: E = Σ_m Π_{i<=m} ã_i, w_i = Σ_{m>=i} Π_{l<=m} ã_l."""
    x = logits.clone().requires_grad_(True)
    q = torch.softmax(x, -1)
    p = torch.softmax(target, -1)
    num, den = 0.0, 0.0
    for b in range(N):
        if not block_valid[b] or not mask[b].any():
            continue
        a = []
        for j in range(L):
            if not mask[b, j] or (acceptance == "label_prob" and labels[b, j] < 0):
                break
            a.append(q[b, j, labels[b, j]] if acceptance == "label_prob" else torch.minimum(p[b, j], q[b, j]).sum())
        at = [(1 - alpha) * ai + alpha for ai in a]
        prods = []
        for m in range(len(at)):
            prod = torch.tensor(1.0)
            for i in range(m + 1):
                prod = prod * at[i]
            prods.append(prod)
        w = [sum(float(prods[m].detach()) for m in range(i, len(prods))) for i in range(len(prods))]
        val = sum(w[i] * -torch.log(a[i]) for i in range(len(a))) if detach else -sum(prods)
        if norm == "block_size":
            val = val / L
        num = num + val
        den += sum(w) if norm == "weight_sum" else 1
    loss = num / den
    loss.backward()
    return loss.detach(), x.grad


SETTINGS = [(acc, det, alpha, norm) for acc in ("label_prob", "overlap") for det in (False, True)
            for alpha in (0.0, 0.5) for norm in ("block_size", "batch", "weight_sum")]


@pytest.mark.parametrize("acceptance,detach,alpha,norm", SETTINGS)
def test_family_matches_naive_reference(acceptance, detach, alpha, norm):
    logits, target, labels, mask, block_valid = make_inputs()
    x = logits.clone().requires_grad_(True)
    setting = StreakSetting(acceptance=acceptance, detach_weights=detach, smoothing=alpha, normalisation=norm)
    v = expected_streak_loss(chunk_of(x, target, labels, mask, block_valid), setting)
    (v.numerator / v.denominator).backward()
    ref, ref_grad = naive(logits, target, labels, mask, block_valid, acceptance=acceptance, detach=detach,
                          alpha=alpha, norm=norm)
    torch.testing.assert_close(v.numerator.detach() / v.denominator, ref.float(), rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(x.grad, ref_grad, rtol=1e-4, atol=1e-7)
    assert x.grad[2].abs().sum() == 0  # a block with no supervised slot gets nothing
    if norm != "weight_sum":
        assert float(v.denominator) == 3  # ... and is not counted


def test_expected_streak_closed_form():
    # Every slot's label probability 1/2: E = 1/2 + 1/4 + 1/8 + 1/16 + 1/32.
    logits = torch.zeros(1, L, 2)
    v = LOSS_TERMS.build("streak", {})(SlotChunk(logits=logits, labels=torch.zeros(1, L, dtype=torch.long),
                                                 mask=torch.ones(1, L, dtype=torch.bool),
                                                 block_valid=torch.ones(1, dtype=torch.bool)))
    assert float(v.numerator / v.denominator) == pytest.approx(-(1 - 0.5 ** L))


def _original_chain():
    """The chain term as first written (before it moved onto the family), kept as the reference."""
    path = Path(__file__).with_name("_chain_reference.py")
    spec = importlib.util.spec_from_file_location("_chain_reference", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod.chain_reference


@pytest.mark.parametrize("seed", [0, 1])
def test_chain_is_unchanged(seed):
    inputs = make_inputs(seed)
    value, grad, v = run_term("chain", {}, *inputs)
    logits, target, labels, mask, block_valid = inputs
    x = logits.clone().requires_grad_(True)
    num, den = _original_chain()(chunk_of(x, target, labels, mask, block_valid))
    (num / den).backward()
    assert torch.equal(v.numerator.detach(), num.detach()) and torch.equal(v.denominator, den)
    torch.testing.assert_close(grad, x.grad, rtol=0, atol=0)


def test_chain_is_streak_over_block_size():
    inputs = make_inputs(1)
    chain, g_chain, _ = run_term("chain", {}, *inputs)
    streak, g_streak, _ = run_term("streak", {}, *inputs)
    torch.testing.assert_close(chain, streak / L)
    torch.testing.assert_close(g_chain, g_streak / L)
    same, g_same, _ = run_term("streak", {"normalisation": "block_size"}, *inputs)
    torch.testing.assert_close(same, chain)
    torch.testing.assert_close(g_same, g_chain)


def test_dpace_without_smoothing_has_the_gradient_of_streak():
    inputs = make_inputs(2)
    streak, g_streak, _ = run_term("streak", {}, *inputs)
    dpace0, g_dpace0, _ = run_term("dpace_no_smoothing", {}, *inputs)
    torch.testing.assert_close(g_dpace0, g_streak, rtol=1e-5, atol=1e-7)
    assert not torch.allclose(dpace0, streak)  # same gradient, different value
    via_options, g_via, _ = run_term("dpace", {"smoothing": 0.0}, *inputs)
    torch.testing.assert_close(g_via, g_streak, rtol=1e-5, atol=1e-7)
    # smoothing changes the weights, so the gradient is no longer that of -E
    _, g_dpace, _ = run_term("dpace", {}, *inputs)
    assert not torch.allclose(g_dpace, g_streak, atol=1e-5)


def test_detached_overlap_streak_has_the_gradient_of_the_soft_streak():
    inputs = make_inputs(3)
    _, g_soft, _ = run_term("streak_overlap", {}, *inputs)
    _, g_detached, _ = run_term("streak_overlap", {"detach_weights": True}, *inputs)
    torch.testing.assert_close(g_detached, g_soft, rtol=1e-5, atol=1e-7)


def test_named_settings_are_the_family_members_they_claim():
    inputs = make_inputs(4)
    dpace, g_dpace, _ = run_term("dpace", {}, *inputs)
    same, g_same, _ = run_term("streak", {"detach_weights": True, "smoothing": 0.5}, *inputs)
    torch.testing.assert_close(dpace, same)
    torch.testing.assert_close(g_dpace, g_same)
    wn, g_wn, v_wn = run_term("dpace_weight_norm", {}, *inputs)
    _, _, v_dpace = run_term("dpace", {}, *inputs)
    # same numerator as dpace, divided by Σ w instead of the number of blocks (so the two gradients are parallel)
    torch.testing.assert_close(v_wn.numerator, v_dpace.numerator)
    assert float(v_wn.denominator) > float(v_dpace.denominator)
    torch.testing.assert_close(g_wn * v_wn.denominator, g_dpace * v_dpace.denominator)
    ov, g_ov, _ = run_term("streak_overlap", {"smoothing": 0.5, "detach_weights": True,
                                              "normalisation": "weight_sum"}, *inputs)
    assert torch.isfinite(ov) and torch.isfinite(g_ov).all()


def test_streak_overlap_declares_target_logits_and_others_do_not():
    assert LOSS_TERMS.get("streak_overlap").obj.requires == frozenset({"target_logits"})
    for name in ("streak", "chain", "dpace", "dpace_no_smoothing", "dpace_weight_norm"):
        assert LOSS_TERMS.get(name).obj.requires == frozenset()


@pytest.mark.parametrize("name,opts,match", [
    ("streak", {"smoothing": 1.0}, "smoothing"),
    ("dpace", {"normalisation": "mean"}, "normalisation"),
    ("streak_overlap", {"top_k": 0}, "top_k"),
    ("dpace", {"smothing": 0.3}, "did you mean .smoothing."),
])
def test_bad_options_are_config_errors(name, opts, match):
    with pytest.raises(ConfigError, match=match):
        LOSS_TERMS.build(name, opts, where="loss[0]")
