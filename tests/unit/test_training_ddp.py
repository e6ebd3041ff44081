"""Data parallelism, verified: `strategy: ddp` with 2 gloo processes on CPU trains exactly what one process trains
over the same global batch (per-step losses and final drafter weights), with and without gradient accumulation.

Every point runs the real `specframe train` (Lightning re-launches it for rank 1). num_anchors covers every
position of the tiny target's sequences, so the blocks do not depend on the per-rank random generator; rank r
gets rows r, r+2, ... of the sampler's order, so 2 ranks x batch b see the rows of 1 process x batch 2b.
The figures are printed (pytest -s) for the record.
"""
from __future__ import annotations

import csv
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[2]
BASE = ROOT / "recipes" / "block_diffusion" / "smollm2_full.yaml"
TINY = ROOT / "recipes" / "debug" / "tiny.yaml"
COMMON = ["data.max_length=96", "data.num_anchors=96", "trainer.max_steps=4", "trainer.val_every_n_steps=4",
          "trainer.save_every_n_steps=4", "trainer.log_every_n_steps=1", "trainer.precision=32-true",
          "trainer.accelerator=cpu", "optim.lr=3e-3", "optim.warmup_ratio=0.0"]


def _train(out: Path, *overrides: str) -> tuple[list[float], dict[str, torch.Tensor]]:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    argv = [sys.executable, "-m", "specframe.cli", "train", str(BASE), str(TINY), *COMMON, *overrides,
            f"run.output_dir={out}", "run.resume=false"]
    proc = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    with open(out / "logs" / "metrics.csv") as f:
        rows = [r for r in csv.DictReader(f) if r.get("train/loss")]
    losses = [float(r["train/loss"]) for r in sorted(rows, key=lambda r: int(r["step"]))]
    ckpt = torch.load(out / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    return losses, {k: v for k, v in ckpt["state_dict"].items() if k.startswith("drafter.")}


def _max_diff(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> float:
    assert a.keys() == b.keys()
    return max((a[k].float() - b[k].float()).abs().max().item() for k in a)


def _report(name: str, la: list[float], lb: list[float], wa: dict, wb: dict) -> float:
    loss_diff = max(abs(x - y) for x, y in zip(la, lb))
    print(f"\n{name}: losses {['%.6f' % x for x in la]} vs {['%.6f' % x for x in lb]}; "
          f"max |loss diff| {loss_diff:.2e}; max |weight diff| {_max_diff(wa, wb):.2e}")
    return loss_diff


@pytest.mark.slow
def test_ddp_on_two_cpu_processes_equals_one_process_over_the_same_global_batch(tmp_path: Path) -> None:
    one_l, one_w = _train(tmp_path / "one", "data.batch_size=4", "trainer.devices=1", "trainer.strategy=auto")
    ddp_l, ddp_w = _train(tmp_path / "ddp", "data.batch_size=2", "trainer.devices=2", "trainer.strategy=ddp")
    assert len(one_l) == len(ddp_l) == 4
    assert _report("1 process x batch 4 vs ddp 2 x batch 2", one_l, ddp_l, one_w, ddp_w) < 1e-5
    for k in one_w:
        torch.testing.assert_close(ddp_w[k], one_w[k], rtol=1e-4, atol=1e-6)
    # the drafter moved: equality is not that of two untouched initialisations
    init = torch.load(tmp_path / "one" / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    assert init["global_step"] == 4

    # gradient accumulation: 2 ranks x batch 1 x 2 micro-batches = 1 process x batch 2 x 2 micro-batches
    acc_l, acc_w = _train(tmp_path / "acc", "data.batch_size=2", "trainer.devices=1", "trainer.strategy=auto",
                          "trainer.accumulate_grad_batches=2")
    dacc_l, dacc_w = _train(tmp_path / "ddp_acc", "data.batch_size=1", "trainer.devices=2", "trainer.strategy=ddp",
                            "trainer.accumulate_grad_batches=2")
    assert _report("accumulate 2: 1 process x batch 2 vs ddp 2 x batch 1", acc_l, dacc_l, acc_w, dacc_w) < 1e-5
    for k in acc_w:
        torch.testing.assert_close(dacc_w[k], acc_w[k], rtol=1e-4, atol=1e-6)
    # Accumulation against one batch of the same rows: each micro-batch is normalised by its own supervised
    # slots, so the two differ unless every micro-batch has as many; the size of the difference is printed.
    print(f"accumulate 2 x batch 2 vs batch 4 (same rows, per-micro-batch normalisation): max |weight diff| "
          f"{_max_diff(acc_w, one_w):.2e}")


def test_fsdp_on_cpu_is_refused_before_anything_loads(tmp_path: Path) -> None:
    """Lightning's FSDP strategy needs CUDA ("The strategy `fsdp` requires a GPU accelerator"): said at validate."""
    from specframe.cli import main

    assert main(["validate", str(BASE), str(TINY), "trainer.strategy=fsdp", "trainer.accelerator=cpu",
                 f"run.output_dir={tmp_path / 'run'}"]) == 2
    assert main(["validate", str(BASE), str(TINY), "trainer.strategy=ddp", "trainer.accelerator=cpu",
                 f"run.output_dir={tmp_path / 'run'}"]) == 0


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_fsdp_on_one_gpu_trains_what_the_plain_strategy_trains(tmp_path: Path) -> None:
    """FSDP cannot run on CPU (test above): on the day a GPU is there (tools/gpu_check.py runs the gpu tests),
    FSDP over one device must train what the plain single-device strategy trains."""
    gpu = ["trainer.accelerator=cuda", "trainer.devices=1", "data.batch_size=4"]
    one_l, one_w = _train(tmp_path / "one", *gpu, "trainer.strategy=auto")
    fsdp_l, fsdp_w = _train(tmp_path / "fsdp", *gpu, "trainer.strategy=fsdp")
    assert _report("plain vs fsdp, 1 GPU", one_l, fsdp_l, one_w, fsdp_w) < 1e-4
