"""Tests of the label-smoothing plugin: the reference math, the edge cases, and loading it from a recipe."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch

import plugins.label_smoothing  # noqa: F401  (registers label_smoothed_ce)
from specframe.errors import ConfigError
from specframe.interfaces import SlotChunk
from specframe.losses import LOSS_TERMS

ROOT = Path(__file__).resolve().parents[2]


def make_chunk(logits: torch.Tensor) -> SlotChunk:
    labels = torch.tensor([[1, 2, -1], [0, 3, 3]])  # -1: a label the drafter cannot produce
    mask = torch.tensor([[True, True, True], [True, False, True]])
    return SlotChunk(logits=logits, labels=labels, mask=mask, block_valid=torch.tensor([True, True]))


def test_matches_a_naive_reference_in_value_and_gradient():
    logits = torch.randn(2, 3, 5, generator=torch.Generator().manual_seed(0)).requires_grad_(True)
    chunk = make_chunk(logits)
    v = LOSS_TERMS.build("label_smoothed_ce", {"smoothing": 0.2})(chunk)
    (v.numerator / v.denominator).backward()
    x = logits.detach().clone().requires_grad_(True)
    total, count = 0.0, 0
    for b, j in [(0, 0), (0, 1), (1, 0), (1, 2)]:  # supervised slots with a draftable label
        logq = torch.log_softmax(x[b, j], -1)
        total = total + 0.8 * -logq[chunk.labels[b, j]] + 0.2 * -logq.mean()
        count += 1
    (total / count).backward()
    torch.testing.assert_close(v.numerator / v.denominator, (total / count).detach())
    torch.testing.assert_close(logits.grad, x.grad)


def test_zero_smoothing_is_plain_ce():
    logits = torch.randn(2, 3, 5, generator=torch.Generator().manual_seed(1))
    ls = LOSS_TERMS.build("label_smoothed_ce", {"smoothing": 0.0})(make_chunk(logits))
    ce = LOSS_TERMS.build("ce", {})(make_chunk(logits))
    torch.testing.assert_close(ls.numerator, ce.numerator)
    assert float(ls.denominator) == float(ce.denominator) == 4


def test_bad_smoothing_is_a_config_error():
    with pytest.raises(ConfigError, match="smoothing must be in"):
        LOSS_TERMS.build("label_smoothed_ce", {"smoothing": 1.5}, where="loss[0]")


def test_recipe_validates_and_a_misspelt_plugin_fails_with_its_traceback(tmp_path):
    recipe = ROOT / "recipes/plugins/smollm2_label_smoothing.yaml"
    ok = subprocess.run([sys.executable, "-m", "specframe.cli", "validate", str(recipe)], cwd=ROOT,
                        capture_output=True, text=True)
    assert ok.returncode == 0, ok.stderr
    assert "label_smoothed_ce" in ok.stdout
    bad = subprocess.run([sys.executable, "-m", "specframe.cli", "validate", str(recipe),
                          "plugins=[plugins.label_smoothin]"], cwd=ROOT, capture_output=True, text=True)
    assert bad.returncode == 3
    assert "Traceback (most recent call last)" in bad.stderr
    assert "No module named 'plugins.label_smoothin'" in bad.stderr
    assert "plugin 'plugins.label_smoothin' failed to import" in bad.stderr
