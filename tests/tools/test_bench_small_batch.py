"""tools/bench_small_batch.py runs its forward timing on any target and reports both kernels at every width."""
from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

TOOLS = Path(__file__).resolve().parents[2] / "tools"


@pytest.fixture(scope="module")
def bench():
    sys.path.insert(0, str(TOOLS))
    spec = importlib.util.spec_from_file_location("bench_small_batch", TOOLS / "bench_small_batch.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    yield mod
    sys.path.remove(str(TOOLS))


def test_forward_costs_cover_both_kernels_and_leave_the_cache_as_found(bench):
    from specframe.targets import TARGETS

    target = TARGETS.build("tiny", {})
    costs = bench.forward_costs(target, [1, 3], repeats=2)
    assert set(costs) == {"f_linear", "small_batch"}
    for per in costs.values():
        assert set(per) == {"1", "3"} and all(v > 0 for v in per.values())
    assert all("forward" not in vars(m) for m in target.model.modules())  # no layer left routed
