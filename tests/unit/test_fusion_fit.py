"""`drafter.init_fusion_from_features`: fc columns divided by the RMS of their feature (specframe/fusion_fit.py)."""
from __future__ import annotations

import pytest
import torch

from specframe.fusion_fit import feature_rms, fit_fusion_scale


def test_every_feature_gets_the_same_say_after_scaling():
    torch.manual_seed(0)
    rms = torch.ones(12)
    rms[3] = 1000.0  # a massive-activation dimension
    rms[7] = 0.01
    fc = torch.nn.Linear(12, 5, bias=False)
    before = fc.weight.clone()
    seen = fit_fusion_scale(fc, rms)
    x = torch.randn(4096, 12) * rms  # features at those scales
    contribution = (fc.weight.unsqueeze(0) * x.unsqueeze(1)).pow(2).mean((0, 1)).sqrt() / before.pow(2).mean(0).sqrt()
    assert torch.allclose(contribution, contribution.median().expand(12), rtol=0.1)  # naive reference: equal say
    assert seen["max_rms"] == 1000.0 and seen["median_rms"] == 1.0
    assert torch.equal(fc.weight[:, 0], before[:, 0])  # the median feature keeps its weights


def test_wrong_width_is_refused():
    with pytest.raises(ValueError, match="fusion layer takes 6"):
        fit_fusion_scale(torch.nn.Linear(6, 2), torch.ones(5))


def test_feature_rms_counts_valid_positions_only():
    class Target:
        def __call__(self, ids, valid):
            hidden = torch.full((*ids.shape, 3), 2.0)
            hidden[~valid] = 1e6  # padding must not count
            return type("Out", (), {"hidden": hidden})()

    rows = [{"input_ids": [1, 2, 3], "loss_mask": [0, 1, 1], "index": 0},
            {"input_ids": [4], "loss_mask": [1], "index": 1}]
    assert torch.allclose(feature_rms(Target(), rows), torch.full((3,), 2.0))
