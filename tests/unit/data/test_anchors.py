"""Anchor sampling details (the per-sequence meaning of num_anchors is in tests/unit/drafters/test_invariants.py)."""
from __future__ import annotations

import torch

from specframe.data.anchors import eligible_anchors, sample_anchors


def _mask(rows: list[str]) -> torch.Tensor:
    return torch.tensor([[c == "1" for c in r] for r in rows])


def test_eligible_needs_the_loss_mask_at_i_and_i_plus_1() -> None:
    m = _mask(["0110111", "1111111", "1010101", "0000000"])
    assert eligible_anchors(m).int().tolist() == [
        [0, 1, 0, 0, 1, 1, 0],  # the last position never: its slot 1 would fall off the sequence
        [1, 1, 1, 1, 1, 1, 0],
        [0, 0, 0, 0, 0, 0, 0],  # no two consecutive supervised tokens
        [0, 0, 0, 0, 0, 0, 0],
    ]


def test_eligible_accepts_integer_masks() -> None:
    assert torch.equal(eligible_anchors(_mask(["0111"]).long()), eligible_anchors(_mask(["0111"])))


def test_more_anchors_than_positions_pads_to_n() -> None:
    m = _mask(["0111"])
    anchors, valid = sample_anchors(m, 10, torch.Generator().manual_seed(0))
    assert anchors.shape == (1, 10) and valid.shape == (1, 10)
    assert anchors[valid].tolist() == [1, 2] and valid.sum() == 2
    assert (anchors[~valid] == 0).all()


def test_every_eligible_position_when_n_covers_them() -> None:
    m = _mask(["0011111000111100"])
    anchors, valid = sample_anchors(m, 7, torch.Generator().manual_seed(3))
    assert anchors[valid].tolist() == [2, 3, 4, 5, 10, 11, 12]


def test_outputs_follow_the_mask_device_and_dtypes() -> None:
    m = _mask(["011111", "001111"])
    anchors, valid = sample_anchors(m, 2, torch.Generator().manual_seed(0))
    assert anchors.dtype == torch.long and valid.dtype == torch.bool
    assert anchors.device == m.device and valid.device == m.device


def test_default_generator_still_samples_eligible_positions() -> None:
    m = _mask(["0000111111110000"])
    anchors, valid = sample_anchors(m, 3)
    assert valid.all() and all(4 <= a <= 10 for a in anchors[0].tolist())
