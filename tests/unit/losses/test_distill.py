"""Distillation terms against a naive per-slot reference: values, gradients, zero at q == p, top-k mass."""
from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from torch.utils.checkpoint import checkpoint

from specframe.errors import ConfigError
from specframe.interfaces import SlotChunk
from specframe.losses import LOSS_TERMS

NAMES = ["forward_kl", "reverse_kl", "jsd", "tv", "lk_alpha", "lk_lambda"]
N, L, V = 3, 4, 11


def make_inputs(seed: int = 0, scale: float = 2.0):
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(N, L, V, generator=g) * scale
    target = torch.randn(N, L, V, generator=g) * scale
    labels = torch.randint(0, V, (N, L), generator=g)
    mask = torch.tensor([[1, 1, 1, 0], [1, 0, 1, 1], [1, 1, 1, 1]], dtype=torch.bool)
    block_valid = torch.tensor([True, True, False])
    return logits, target, labels, mask, block_valid


def run_term(name, opts, logits, target, labels, mask, block_valid):
    term = LOSS_TERMS.build(name, opts)
    x = logits.clone().requires_grad_(True)
    v = term(SlotChunk(logits=x, labels=labels, mask=mask, block_valid=block_valid, target_logits=target))
    loss = v.numerator / v.denominator
    loss.backward()
    return loss.detach(), x.grad, term


def naive_slot(name: str, t: torch.Tensor, q_logits: torch.Tensor, T: float, top_k: int | None, eta: float):
    """One slot, written from the definitions: t, q_logits are [V]."""
    p = torch.softmax(t / T, dim=0)
    q = torch.softmax(q_logits / T, dim=0)
    if top_k is not None:
        keep = torch.zeros(V, dtype=torch.bool)
        keep[torch.argsort(t, descending=True)[:top_k]] = True
        p = torch.where(keep, p, torch.zeros_like(p))
        p = p / p.sum()
    else:
        keep = torch.ones(V, dtype=torch.bool)
    fkl = sum(p[v] * torch.log(p[v] / q[v]) for v in range(V) if p[v] > 0)
    tv = 0.5 * (p - q).abs().sum()
    if name == "forward_kl":
        return fkl
    if name == "reverse_kl":
        qr = torch.where(keep, q, torch.zeros_like(q))
        qr = qr / qr.sum()
        return sum(qr[v] * torch.log(qr[v] / p[v]) for v in range(V) if keep[v])
    if name == "jsd":
        m = (p + q) / 2
        return 0.5 * sum(p[v] * torch.log(p[v] / m[v]) for v in range(V) if p[v] > 0) + 0.5 * sum(
            q[v] * torch.log(q[v] / m[v]) for v in range(V))
    if name == "tv":
        return tv
    if name == "lk_alpha":
        return -torch.log(1 - tv)
    if name == "lk_lambda":
        lam = math.exp(-eta * float((1 - tv).detach()))
        return lam * fkl + (1 - lam) * tv
    raise AssertionError(name)


def naive_loss(name, logits, target, mask, block_valid, T=1.0, top_k=None, eta=3.0):
    x = logits.clone().requires_grad_(True)
    total, count = 0.0, 0
    for b in range(N):
        for j in range(L):
            if mask[b, j] and block_valid[b]:
                total = total + naive_slot(name, target[b, j], x[b, j], T, top_k, eta)
                count += 1
    loss = total / count
    loss.backward()
    return loss.detach(), x.grad


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("opts", [{}, {"temperature": 1.7}, {"top_k": 3}, {"temperature": 0.6, "top_k": 5}])
def test_matches_naive_reference(name, opts):
    inputs = make_inputs()
    value, grad, _ = run_term(name, opts, *inputs)
    logits, target, _, mask, block_valid = inputs
    ref_value, ref_grad = naive_loss(name, logits, target, mask, block_valid, T=opts.get("temperature", 1.0),
                                     top_k=opts.get("top_k"))
    torch.testing.assert_close(value, ref_value.float(), rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(grad, ref_grad, rtol=1e-4, atol=1e-6)
    assert grad[2].abs().sum() == 0 and grad[0, 3].abs().sum() == 0  # invalid block, unsupervised slot


def test_lk_lambda_eta_changes_the_mix():
    inputs = make_inputs(1)
    logits, target, _, mask, block_valid = inputs
    value, _, _ = run_term("lk_lambda", {"eta": 0.5}, *inputs)
    ref, _ = naive_loss("lk_lambda", logits, target, mask, block_valid, eta=0.5)
    torch.testing.assert_close(value, ref.float(), rtol=1e-5, atol=1e-6)
    # eta = 0 gives lambda = 1: plain forward KL
    kl0, _, _ = run_term("lk_lambda", {"eta": 0.0}, *inputs)
    fkl, _, _ = run_term("forward_kl", {}, *inputs)
    torch.testing.assert_close(kl0, fkl)


@pytest.mark.parametrize("name", NAMES)
def test_zero_when_draft_equals_target_and_positive_otherwise(name):
    logits, target, labels, mask, block_valid = make_inputs(2)
    same, _, _ = run_term(name, {}, target.clone(), target, labels, mask, block_valid)
    assert abs(float(same)) < 1e-5
    for seed in range(3):
        logits, target, labels, mask, block_valid = make_inputs(seed)
        value, _, _ = run_term(name, {"temperature": 1.3}, logits, target, labels, mask, block_valid)
        assert float(value) > 1e-3


def test_tv_is_one_minus_acceptance_rate():
    """TV equals the rejection probability of speculative sampling, estimated by sampling."""
    g = torch.Generator().manual_seed(0)
    t, d = torch.randn(V, generator=g), torch.randn(V, generator=g)
    value, _, _ = run_term("tv", {}, d.view(1, 1, V), t.view(1, 1, V), torch.zeros(1, 1, dtype=torch.long),
                           torch.ones(1, 1, dtype=torch.bool), torch.ones(1, dtype=torch.bool))
    p, q = torch.softmax(t, 0), torch.softmax(d, 0)
    x = torch.multinomial(q, 200_000, replacement=True, generator=g)
    accept = (torch.rand(x.shape, generator=g) < (p[x] / q[x]).clamp(max=1)).float().mean()
    assert abs(float(value) - (1 - float(accept))) < 0.01


def test_top_k_kept_mass_is_reported_once_per_slot():
    logits, target, labels, mask, block_valid = make_inputs(3)
    term = LOSS_TERMS.build("forward_kl", {"top_k": 4})
    supervised = mask & block_valid.unsqueeze(1)
    expected = torch.softmax(target, -1).topk(4, dim=-1).values.sum(-1)[supervised].mean()
    x = logits.clone().requires_grad_(True)

    def fn(h):
        v = term(SlotChunk(logits=h, labels=labels, mask=mask, block_valid=block_valid, target_logits=target))
        return v.numerator

    # Checkpointing recomputes the term during backward: that call must not be counted twice.
    checkpoint(fn, x, use_reentrant=False).backward()
    metrics = term.pop_metrics()
    assert metrics["topk_mass"] == pytest.approx(float(expected), rel=1e-6)
    assert 0 < metrics["topk_mass"] < 1
    assert term.pop_metrics() == {}  # reset after reading
    no_topk = LOSS_TERMS.build("tv", {})
    no_topk(SlotChunk(logits=logits, labels=labels, mask=mask, block_valid=block_valid, target_logits=target))
    assert no_topk.pop_metrics() == {}


def test_top_k_covering_the_vocabulary_equals_full_distribution():
    inputs = make_inputs(4)
    full, g_full, _ = run_term("jsd", {}, *inputs)
    topv, g_topv, _ = run_term("jsd", {"top_k": V}, *inputs)
    torch.testing.assert_close(full, topv)
    torch.testing.assert_close(g_full, g_topv)


def test_missing_target_logits_is_a_clear_error():
    logits, _, labels, mask, block_valid = make_inputs()
    term = LOSS_TERMS.build("tv", {})
    with pytest.raises(RuntimeError, match="target logits"):
        term(SlotChunk(logits=logits, labels=labels, mask=mask, block_valid=block_valid))


@pytest.mark.parametrize("opts,match", [({"temperature": 0}, "temperature"), ({"top_k": 0}, "top_k"),
                                        ({"eta": -1}, "eta"), ({"topk": 5}, "did you mean 'top_k'")])
def test_bad_options_are_config_errors(opts, match):
    with pytest.raises(ConfigError, match=match):
        LOSS_TERMS.build("lk_lambda", opts, where="loss[0]")


@pytest.mark.parametrize("name", NAMES)
def test_declares_target_logits(name):
    assert "target_logits" in LOSS_TERMS.get(name).obj.requires


def test_terms_run_inside_the_training_module_and_log_kept_mass():
    """The module asks the tiny target for logits, the terms give finite values, only the drafter gets gradients."""
    from omegaconf import OmegaConf

    from specframe.config import compose
    from specframe.module import DraftTrainingModule

    loss = ("loss=[{name: positional}, {name: tv, top_k: 8}, {name: lk_lambda}, {name: streak_overlap}, "
            "{name: dpace}]")
    root = Path(__file__).resolve().parents[3]
    cfg = compose(root / "recipes/block_diffusion/smollm2_full.yaml", [root / "recipes/debug/tiny.yaml"], [loss])
    module = DraftTrainingModule(OmegaConf.to_container(cfg, resolve=True))
    assert module.needs_logits
    g = torch.Generator().manual_seed(0)
    batch = {"input_ids": torch.randint(0, 256, (2, 40), generator=g),
             "attention_mask": torch.ones(2, 40, dtype=torch.long),
             "loss_mask": torch.cat([torch.zeros(2, 10), torch.ones(2, 30)], 1).long()}
    total, per_term, _ = module.step(batch, torch.Generator().manual_seed(1))
    total.backward()
    assert torch.isfinite(total) and all(torch.isfinite(v) for v in per_term.values())
    assert all(p.grad is None for p in module.target.parameters())
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in module.drafter.parameters())
    metrics = module.term_metrics("train")
    assert list(metrics) == ["train/topk_mass/tv"] and 0 < metrics["train/topk_mass/tv"] < 1
