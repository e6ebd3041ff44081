"""τ_sim and per-slot acceptance: hand-made cases, and exact results under data parallelism (2 CPU processes)."""
from __future__ import annotations

import socket

import pytest
import torch
import torch.multiprocessing as mp

from specframe.metrics import AcceptanceLength, accepted_prefix


def _b(rows: list[str]) -> torch.Tensor:
    return torch.tensor([[c == "1" for c in r] for r in rows])


def test_accepted_prefix_stops_at_first_mismatch_or_unsupervised_slot() -> None:
    correct = _b(["1111", "1101", "0111", "1111", "1111", "0000"])
    mask = _b(["1111", "1111", "1111", "1100", "1011", "1111"])
    assert accepted_prefix(correct, mask).tolist() == [4, 2, 0, 2, 1, 0]


def test_tau_sim_is_prefix_plus_one_averaged_over_blocks() -> None:
    m = AcceptanceLength(block_size=5)
    correct = _b(["1111", "1101", "0111", "1100"])
    mask = _b(["1111", "1111", "1111", "1111"])
    m.update(correct, mask, torch.ones(4, dtype=torch.bool))
    # prefixes 4, 2, 0, 2 -> τ 5, 3, 1, 3
    assert float(m.compute()) == pytest.approx((5 + 3 + 1 + 3) / 4)
    assert int(m.blocks) == 4


def test_invalid_and_unsupervised_blocks_are_skipped() -> None:
    m = AcceptanceLength(block_size=4)
    correct = _b(["111", "111", "000", "111"])
    mask = _b(["111", "111", "000", "110"])
    valid = torch.tensor([True, False, True, True])
    m.update(correct, mask, valid)
    assert int(m.blocks) == 2  # block 1 is padding, block 2 has no supervised slot
    assert float(m.compute()) == pytest.approx((4 + 3) / 2)


def test_tau_bounds() -> None:
    m = AcceptanceLength(block_size=8)
    mask = torch.ones(3, 7, dtype=torch.bool)
    m.update(torch.zeros(3, 7, dtype=torch.bool), mask, torch.ones(3, dtype=torch.bool))
    assert float(m.compute()) == 1.0  # the bonus token is always gained
    m.reset()
    m.update(torch.ones(3, 7, dtype=torch.bool), mask, torch.ones(3, dtype=torch.bool))
    assert float(m.compute()) == 8.0


def test_per_slot_acceptance_and_histogram() -> None:
    m = AcceptanceLength(block_size=4)
    correct = _b(["111", "101", "011", "110", "111"])
    mask = _b(["111", "111", "111", "111", "100"])
    m.update(correct, mask, torch.ones(5, dtype=torch.bool))
    # prefixes: 3, 1, 0, 2, 1
    assert m.histogram.tolist() == [1, 2, 1, 1]
    # slot 1 supervised 5x, accepted in blocks 0, 1, 3, 4; slot 2: 4x, accepted in 0, 3; slot 3: 4x, accepted in 0
    torch.testing.assert_close(m.slot_acceptance(), torch.tensor([4 / 5, 2 / 4, 1 / 4]))


def test_updates_accumulate_like_one_update() -> None:
    g = torch.Generator().manual_seed(0)
    correct = torch.rand(40, 7, generator=g) > 0.3
    mask = torch.rand(40, 7, generator=g) > 0.1
    valid = torch.rand(40, generator=g) > 0.2
    one, two = AcceptanceLength(8), AcceptanceLength(8)
    one.update(correct, mask, valid)
    two.update(correct[:13], mask[:13], valid[:13])
    two.update(correct[13:], mask[13:], valid[13:])
    torch.testing.assert_close(two.compute(), one.compute())
    torch.testing.assert_close(two.slot_acceptance(), one.slot_acceptance())
    assert torch.equal(two.histogram, one.histogram)


# -- data parallel: 2 CPU processes, gloo ----------------------------------------------------------
def _data():
    g = torch.Generator().manual_seed(3)
    correct = torch.rand(30, 7, generator=g) > 0.3
    mask = torch.rand(30, 7, generator=g) > 0.1
    valid = torch.rand(30, generator=g) > 0.2
    return correct, mask, valid


def _worker(rank: int, world: int, port: int, out: str) -> None:
    import json

    import torch.distributed as dist

    dist.init_process_group("gloo", rank=rank, world_size=world, init_method=f"tcp://127.0.0.1:{port}")
    try:
        correct, mask, valid = _data()
        sl = slice(0, 11) if rank == 0 else slice(11, 30)  # unequal halves
        m = AcceptanceLength(8)
        m.update(correct[sl], mask[sl], valid[sl])
        result = {"tau": float(m.compute()), "slots": m.slot_acceptance().tolist(), "local_blocks": int(m.blocks)}
        with open(f"{out}/rank{rank}.json", "w") as f:
            json.dump(result, f)
    finally:
        dist.destroy_process_group()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_ddp_sync_equals_one_process_on_the_union(tmp_path) -> None:
    import json

    correct, mask, valid = _data()
    single = AcceptanceLength(8)
    single.update(correct, mask, valid)
    # fork: the workers need nothing re-imported, which keeps this test to a few seconds
    mp.start_processes(_worker, args=(2, _free_port(), str(tmp_path)), nprocs=2, join=True, start_method="fork")
    results = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in range(2)]
    for rank, res in enumerate(results):
        assert res["tau"] == pytest.approx(float(single.compute()), abs=1e-6), rank
        assert res["slots"] == pytest.approx(single.slot_acceptance().tolist(), abs=1e-6), rank
    # the states are local again after compute (each rank held a part)
    assert results[0]["local_blocks"] + results[1]["local_blocks"] == int(single.blocks)
    assert 0 < results[0]["local_blocks"] < int(single.blocks)
