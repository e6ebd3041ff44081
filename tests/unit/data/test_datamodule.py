"""ChatDataModule: seeded held-out split, assistant-only loss masks, padding, resume-stable shuffling."""
from __future__ import annotations

import pytest
import torch

from specframe.config import DataConfig
from specframe.data.datamodule import ChatDataModule, EpochShuffle, pad_collate, split_conversations
from specframe.data.tiny_tokenizer import tiny_tokenizer


@pytest.fixture(scope="module")
def tok():
    return tiny_tokenizer()


def data_cfg(**kw) -> DataConfig:
    base = {"val_conversations": 2, "max_length": 160, "batch_size": 2, "num_anchors": 4}
    return DataConfig(**{**base, **kw})


def test_split_is_seeded_disjoint_and_complete() -> None:
    convs = list(range(20))
    train, val = split_conversations(convs, 5, seed=3)
    assert len(val) == 5 and len(train) == 15 and sorted(train + val) == convs
    assert split_conversations(convs, 5, seed=3) == (train, val)
    assert split_conversations(convs, 5, seed=4)[1] != val
    # at least one conversation always stays for training
    train, val = split_conversations([1, 2, 3], 10, seed=0)
    assert len(train) == 1 and len(val) == 2


def test_pad_collate_right_pads_and_masks() -> None:
    rows = [{"input_ids": [5, 6, 7], "loss_mask": [0, 1, 1], "index": 4},
            {"input_ids": [8], "loss_mask": [1], "index": 9}]
    b = pad_collate(rows, pad_id=99)
    assert b["input_ids"].tolist() == [[5, 6, 7], [8, 99, 99]]
    assert b["loss_mask"].tolist() == [[False, True, True], [True, False, False]]
    assert b["attention_mask"].tolist() == [[True, True, True], [True, False, False]]
    assert b["index"].tolist() == [4, 9]
    assert "target_hidden" not in b


def test_pad_collate_stacks_cached_features() -> None:
    rows = [{"input_ids": [1, 2], "loss_mask": [1, 1], "index": 0, "features": torch.ones(2, 3)},
            {"input_ids": [1], "loss_mask": [1], "index": 1, "features": torch.full((1, 3), 2.0)}]
    h = pad_collate(rows, pad_id=0)["target_hidden"]
    assert h.shape == (2, 2, 3) and h[1, 1].abs().sum() == 0 and h[1, 0].tolist() == [2.0] * 3


def test_rows_supervise_assistant_tokens_only(tok, conversations) -> None:
    dm = ChatDataModule(data_cfg(val_conversations=0), tok, seed=0, conversations=conversations)
    dm.setup("fit")
    assert len(dm.train_rows) == len(conversations) and dm.val_rows == []
    # the supervised tokens of each row are exactly its assistant replies, each with its end-of-turn token
    supervised = sorted(tok.decode([t for t, m in zip(r["input_ids"], r["loss_mask"]) if m],
                                   skip_special_tokens=False) for r in dm.train_rows)
    expected = sorted("".join(m["content"] + "<|im_end|>" for m in c if m["role"] == "assistant")
                      for c in conversations)
    assert supervised == expected


def test_held_out_split_and_loaders(tok, conversations) -> None:
    dm = ChatDataModule(data_cfg(), tok, seed=0, conversations=conversations)
    dm.setup("fit")
    assert len(dm.train_rows) == 4 and len(dm.val_rows) == 2 and len(dm.val_conversations) == 2
    train_idx = {r["index"] for r in dm.train_rows}
    val_idx = {r["index"] for r in dm.val_rows}
    assert not train_idx & val_idx
    batches = list(dm.train_dataloader())
    assert len(batches) == 2 and all(b["input_ids"].shape[0] == 2 for b in batches)
    assert sorted(i for b in batches for i in b["index"].tolist()) == sorted(train_idx)
    val = list(dm.val_dataloader())
    assert [i for b in val for i in b["index"].tolist()] == [r["index"] for r in dm.val_rows]  # not shuffled
    for b in batches + val:
        assert not (b["loss_mask"] & ~b["attention_mask"]).any()  # padding is never supervised
        assert (b["input_ids"][~b["attention_mask"]] == dm.pad_id).all()


def test_limit_max_length_and_min_supervised(tok, conversations) -> None:
    dm = ChatDataModule(data_cfg(limit=3, val_conversations=1), tok, seed=0, conversations=conversations)
    dm.setup("fit")
    assert len(dm.train_rows) + len(dm.val_rows) == 3
    dm = ChatDataModule(data_cfg(max_length=40, val_conversations=0), tok, conversations=conversations)
    dm.setup("fit")
    assert all(len(r["input_ids"]) <= 40 for r in dm.train_rows)
    # prompts longer than max_length leave no assistant token: those conversations are dropped
    assert all(sum(r["loss_mask"]) >= 2 for r in dm.train_rows) and len(dm.train_rows) < len(conversations)


def test_too_little_data_is_a_clear_error(tok, conversations) -> None:
    with pytest.raises(ValueError, match="need at least 2"):
        ChatDataModule(data_cfg(), tok, conversations=conversations[:1]).setup("fit")
    with pytest.raises(ValueError, match="no training conversation has >= 10000 assistant tokens"):
        ChatDataModule(data_cfg(min_supervised=10_000), tok, conversations=conversations).setup("fit")


def test_epoch_order_depends_only_on_seed_and_epoch() -> None:
    a, b = EpochShuffle(50, seed=1), EpochShuffle(50, seed=1)
    first = list(a)
    a.set_epoch(1)
    second = list(a)
    assert sorted(first) == sorted(second) == list(range(50)) and first != second
    b.set_epoch(1)  # a fresh sampler (a resumed run) at epoch 1 sees what an uninterrupted run sees
    assert list(b) == second
    b.set_epoch(0)
    assert list(b) == first
    assert list(EpochShuffle(50, seed=2)) != first and len(a) == 50


def test_train_loader_uses_the_epoch_sampler(tok, conversations) -> None:
    dm = ChatDataModule(data_cfg(), tok, seed=5, conversations=conversations)
    dm.setup("fit")
    l1, l2 = dm.train_dataloader(), dm.train_dataloader()
    assert isinstance(l1.sampler, EpochShuffle)
    l1.sampler.set_epoch(3)
    l2.sampler.set_epoch(3)
    assert [b["index"].tolist() for b in l1] == [b["index"].tolist() for b in l2]


def test_epoch_shuffle_ranks_split_the_single_process_order_batch_by_batch() -> None:
    """2 ranks x batch b at step k see exactly the rows of 1 process x batch 2b at step k (DDP equality)."""
    one = list(EpochShuffle(11, seed=3))
    ranks = [list(EpochShuffle(11, seed=3, rank=r, world=2)) for r in (0, 1)]
    assert [len(r) for r in ranks] == [5, 5] and len(EpochShuffle(11, seed=3, rank=1, world=2)) == 5
    b = 2
    for k in range(2):
        assert sorted(ranks[0][k * b:(k + 1) * b] + ranks[1][k * b:(k + 1) * b]) == sorted(one[2 * k * b:2 * (k + 1) * b])
    s = EpochShuffle(11, seed=3, rank=1, world=2)
    s.skip = 2  # a resumed rank skips its own consumed share
    assert list(s) == ranks[1][2:]
    from torch.utils.data import DistributedSampler

    assert isinstance(s, DistributedSampler)  # so that Lightning does not wrap (and reshuffle) it
