"""Reduced draft vocabulary: id maps, fitting from data, and training that honours it."""
from __future__ import annotations

import json

import pytest
import torch

from specframe.interfaces import SlotChunk
from specframe.metrics import accepted_prefix
from specframe.vocab import DraftVocab
from specframe.vocab_fit import fit_draft_vocab


def test_full_vocabulary_is_the_identity() -> None:
    v = DraftVocab(10)
    ids = torch.tensor([[0, 9, 3]])
    assert not v.reduced
    assert torch.equal(v.to_draft(ids), ids) and torch.equal(v.to_target(ids), ids)
    w = torch.randn(10, 4)
    assert v.restrict_rows(w) is w


def test_reduced_vocabulary_maps_both_ways_and_marks_missing_tokens() -> None:
    v = DraftVocab(10, size=3)
    v.set_ids(torch.tensor([7, 2, 5]))
    assert v.reduced
    assert v.to_draft(torch.tensor([7, 2, 5, 0])).tolist() == [0, 1, 2, -1]
    assert v.to_target(torch.tensor([0, 1, 2])).tolist() == [7, 2, 5]
    w = torch.arange(10.0).unsqueeze(1)
    assert v.restrict_rows(w).squeeze(1).tolist() == [7.0, 2.0, 5.0]
    assert v.restrict(torch.arange(10.0)).tolist() == [7.0, 2.0, 5.0]


def test_set_ids_rejects_wrong_count_or_duplicates() -> None:
    v = DraftVocab(10, size=3)
    with pytest.raises(ValueError, match="3 distinct ids"):
        v.set_ids(torch.tensor([1, 1, 2]))
    with pytest.raises(ValueError):
        v.set_ids(torch.tensor([1, 2]))


def test_fit_picks_the_most_frequent_supervised_tokens_and_reports_coverage() -> None:
    rows = [
        {"input_ids": [1, 1, 1, 2, 2, 3, 9, 9, 9, 9], "loss_mask": [1, 1, 1, 1, 1, 1, 0, 0, 0, 0]},
        {"input_ids": [4, 1, 2], "loss_mask": [1, 1, 1]},
    ]
    v = DraftVocab(10, size=2)
    report = fit_draft_vocab(v, rows)
    # supervised counts: 1 -> 4, 2 -> 3, 3 -> 1, 4 -> 1 (token 9 is never supervised)
    assert sorted(v.ids.tolist()) == [1, 2]
    assert report["coverage"] == pytest.approx(7 / 9)
    assert report["supervised_tokens"] == 9


def test_labels_outside_the_draft_vocabulary_are_never_accepted() -> None:
    logits = torch.zeros(1, 3, 4)
    logits[0, :, 0] = 5.0  # argmax is draft id 0 everywhere
    labels = torch.tensor([[0, -1, 0]])  # slot 2's label cannot be drafted
    mask = torch.ones(1, 3, dtype=torch.bool)
    chunk = SlotChunk(logits=logits, labels=labels, mask=mask, block_valid=torch.tensor([True]))
    assert chunk.correct.tolist() == [[True, False, True]]
    assert accepted_prefix(chunk.correct, chunk.mask).tolist() == [1]
    assert torch.isinf(chunk.label_logp[0, 1])


def test_training_with_a_reduced_vocabulary_restricts_the_head(recipe_factory, conversations, tmp_path) -> None:
    from specframe.config import validate_recipe
    from specframe.training import train

    recipe = validate_recipe(recipe_factory(tmp_path / "run", drafter={"draft_vocab_size": 40}))
    summary = train(recipe, conversations=conversations)
    ckpt = torch.load(tmp_path / "run" / "checkpoints" / "last.ckpt", weights_only=True, map_location="cpu")
    ids = ckpt["state_dict"]["vocab.ids"]
    assert ids.numel() == 40 and ids.unique().numel() == 40
    # the chosen ids are the most frequent supervised bytes: every id is a real token of the tiny vocabulary
    assert int(ids.max()) < 260
    assert summary["steps"] == 2
    assert (tmp_path / "run" / "summary.json").is_file()
    assert json.loads((tmp_path / "run" / "summary.json").read_text())["tau_sim_after"] >= 1.0


def test_wandb_offline_run_is_written_into_the_run_folder(recipe_factory, conversations, tmp_path, monkeypatch) -> None:
    pytest.importorskip("wandb")
    from specframe.config import validate_recipe
    from specframe.training import train

    monkeypatch.delenv("WANDB_MODE", raising=False)
    recipe = validate_recipe(recipe_factory(tmp_path / "run", run={"wandb": True, "wandb_mode": "offline"}))
    train(recipe, conversations=conversations)
    runs = list((tmp_path / "run").rglob("offline-run-*"))
    assert runs, "wandb wrote no offline run under the run folder"


def test_a_draft_vocabulary_as_large_as_the_targets_is_the_full_one() -> None:
    """A CPU recipe's draft_vocab_size: 8192 run with a 260-token test target: no reduction, no bad ids."""
    assert not DraftVocab.from_config({"draft_vocab_size": 8192}, 260).reduced
    assert not DraftVocab.from_config({"draft_vocab_size": 260}, 260).reduced
    assert DraftVocab.from_config({"draft_vocab_size": 100}, 260).reduced
