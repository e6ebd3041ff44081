"""Contract tests driven by the loss-term registry: every entry, built-in or plugin, gets them for free.

Plugins are picked up automatically: every package under the repository's `plugins/` folder is imported at
collection time (and installed `specframe.plugins` entry points are loaded), before the registry is listed.
With `plugins/` deleted the built-ins are tested alone. A plugin anywhere else is named on the command line with
`--specframe-plugin` (tests/conftest.py imports it before collection), for example from the plugin's folder:

    python3 -m pytest -q /path/to/specframe/tests/unit/losses/test_loss_contract.py \
        /path/to/specframe/tests/unit/test_contracts.py --specframe-plugin slot1_boost.py -k slot1_boost
"""
from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import torch

from specframe.interfaces import LABELS, TARGET_HIDDEN, TARGET_LOGITS, LossValue, SlotChunk
from specframe.losses import LOSS_TERMS
from specframe.plugins import import_plugin, import_plugins

REPO_ROOT = Path(__file__).resolve().parents[3]


def load_repo_plugins() -> list[str]:
    folder = REPO_ROOT / "plugins"
    found = sorted(p.parent.name for p in folder.glob("*/__init__.py")) if folder.is_dir() else []
    return [import_plugin(f"plugins.{name}") for name in found] + import_plugins([])


PLUGINS = load_repo_plugins()
NAMES = LOSS_TERMS.names()
N, L, V = 6, 5, 13


def make_chunk(seed: int, logits: torch.Tensor | None = None) -> SlotChunk:
    g = torch.Generator().manual_seed(seed)
    target = torch.randn(N, L, V, generator=g) * 2
    if logits is None:
        logits = torch.randn(N, L, V, generator=g) * 2
    labels = torch.randint(0, V, (N, L), generator=g)
    labels[1, 1] = -1  # not in the draft vocabulary
    mask = torch.rand(N, L, generator=g) < 0.8
    mask[0] = True
    mask[2] = False  # a block with no supervised slot
    block_valid = torch.ones(N, dtype=torch.bool)
    block_valid[3] = False  # padding block
    return SlotChunk(logits=logits, labels=labels, mask=mask, block_valid=block_valid, target_logits=target)


def rows(chunk: SlotChunk, sl: slice, logits: torch.Tensor) -> SlotChunk:
    return SlotChunk(logits=logits[sl], labels=chunk.labels[sl], mask=chunk.mask[sl],
                     block_valid=chunk.block_valid[sl], target_logits=chunk.target_logits[sl])


def test_repo_plugins_are_in_the_registry():
    if (REPO_ROOT / "plugins" / "label_smoothing").is_dir():
        assert "label_smoothed_ce" in NAMES


@pytest.mark.parametrize("name", NAMES)
def test_entry_metadata(name):
    entry = LOSS_TERMS.get(name)
    assert entry.summary, f"{name}: the first docstring line is what `specframe list` prints"
    assert entry.config is None or dataclasses.is_dataclass(entry.config)
    requires = getattr(entry.obj, "requires", None)
    assert isinstance(requires, frozenset) and requires <= {TARGET_LOGITS, TARGET_HIDDEN, LABELS}


@pytest.mark.parametrize("name", NAMES)
def test_builds_from_defaults_and_gives_a_finite_differentiable_value(name):
    term = LOSS_TERMS.build(name, {})
    chunk = make_chunk(0)
    logits = chunk.logits.clone().requires_grad_(True)
    target = chunk.target_logits.clone().requires_grad_(True)
    c = SlotChunk(logits=logits, labels=chunk.labels, mask=chunk.mask, block_valid=chunk.block_valid,
                  target_logits=target)
    v = term(c)
    assert isinstance(v, LossValue)
    assert v.numerator.shape == () and v.denominator.shape == ()
    assert torch.isfinite(v.numerator) and torch.isfinite(v.denominator) and float(v.denominator) > 0
    assert not v.denominator.requires_grad
    (v.numerator / v.denominator).backward()
    assert torch.isfinite(logits.grad).all() and logits.grad.abs().sum() > 0
    assert logits.grad[3].abs().sum() == 0  # a padding block gets nothing
    assert target.grad is None or target.grad.abs().sum() == 0  # the frozen target gets nothing


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("empty", ["no_supervised_slot", "padding_only"])
def test_a_chunk_with_nothing_to_supervise_gives_zero(name, empty):
    """A chunk may hold no slot the term averages over (a micro-batch of short answers, a term that looks at one
    slot). It must then return numerator 0, finite and without gradient, and a denominator >= 0 (usually 0): the
    objective counts a term whose denominator over the whole step is 0 as 0 for that step."""
    term = LOSS_TERMS.build(name, {})
    chunk = make_chunk(3)
    logits = chunk.logits.clone().requires_grad_(True)
    mask = torch.zeros_like(chunk.mask) if empty == "no_supervised_slot" else chunk.mask
    block_valid = torch.zeros_like(chunk.block_valid) if empty == "padding_only" else chunk.block_valid
    v = term(SlotChunk(logits=logits, labels=chunk.labels, mask=mask, block_valid=block_valid,
                       target_logits=chunk.target_logits))
    assert v.numerator.detach().item() == 0.0 and v.denominator.item() >= 0.0
    assert not v.denominator.requires_grad
    if v.numerator.requires_grad:
        v.numerator.backward()
        assert logits.grad is None or (logits.grad == 0).all()


@pytest.mark.parametrize("name", NAMES)
def test_additive_over_chunks(name):
    """The objective sums numerators and denominators over chunks of blocks: splitting must not change them."""
    term = LOSS_TERMS.build(name, {})
    chunk = make_chunk(1)
    whole = term(chunk)
    halves = [term(rows(chunk, sl, chunk.logits)) for sl in (slice(0, 2), slice(2, N))]
    torch.testing.assert_close(sum(h.numerator for h in halves), whole.numerator)
    torch.testing.assert_close(sum(h.denominator for h in halves), whole.denominator)


DIVERGENCES = [n for n in NAMES if LOSS_TERMS.get(n).meta.get("divergence")]


@pytest.mark.parametrize("name", DIVERGENCES)
def test_divergences_vanish_at_the_target_and_are_positive_elsewhere(name):
    term = LOSS_TERMS.build(name, {})
    chunk = make_chunk(2)
    same = term(make_chunk(2, logits=chunk.target_logits.clone()))
    assert abs(float(same.numerator / same.denominator)) < 1e-5
    for seed in range(3):
        v = term(make_chunk(seed))
        assert float(v.numerator / v.denominator) > 0


def test_divergence_entries_are_declared():
    assert {"forward_kl", "reverse_kl", "jsd", "tv", "lk_alpha", "lk_lambda"} <= set(DIVERGENCES)
