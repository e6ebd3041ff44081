"""tools/gpu_check.py at tiny shapes on CPU: the code that will run on a GPU runs here too, so it cannot rot."""
from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _load():
    spec = importlib.util.spec_from_file_location("specframe_tools_gpu_check", ROOT / "tools" / "gpu_check.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
def test_gpu_check_runs_every_section_at_tiny_shapes_on_cpu(tmp_path: Path) -> None:
    gpu_check = _load()
    out = tmp_path / "check.json"
    assert gpu_check.main(["--tiny", "--device", "cpu", "--out", str(out), "--no-pytest"]) == 0
    report = json.loads(out.read_text())
    s = report["sections"]
    assert not [k for k, v in s.items() if "error" in v], s
    assert s["attention"]["max_abs_diff_flex_vs_sdpa"] < 1e-5  # flex with the BlockMask = dense SDPA with the mask
    t = s["training"]
    assert t["step_s"] > 0 and t["supervised_tokens_per_step"] > 0 and t["plan_estimate_bytes"] > 0
    d = s["decoding"]
    assert d["lossless"] is True and d["tau_oracle"] > 2  # the oracle's drafts are the target's own tokens
    assert s["largest_fit"]["skipped"] and s["flex_flash_backend"]["available"] is False
    assert gpu_check.main(["--device", "cpu", "--out", str(out)]) == 2  # full shapes need CUDA
