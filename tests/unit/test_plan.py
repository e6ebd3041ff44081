"""specframe/plan.py: the memory model's arithmetic against hand-computed figures for the GPU recipes, its advice,
the CLI, and the estimate against the measured peak of real CPU steps at small shapes (within 25%)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from specframe.cli import main
from specframe.config import load_recipe
from specframe.errors import ConfigError
from specframe.plan import GiB, KNOWN_ARCHS, advise, estimate, target_arch

ROOT = Path(__file__).resolve().parents[2]
QWEN = ROOT / "recipes" / "block_diffusion" / "qwen3_8b_full.yaml"
LLAMA = ROOT / "recipes" / "block_diffusion" / "llama3_8b_full.yaml"


def test_qwen3_8b_recipe_matches_hand_computed_figures() -> None:
    r = load_recipe(QWEN)
    assert target_arch(r) == KNOWN_ARCHS["qwen/qwen3-8b"]
    p = estimate(r, devices=8)
    # Qwen3-8B: embed + untied head 2*151936*4096 = 1,244,659,712; one layer: q,o 2*4096*4096 = 33,554,432,
    # k,v 2*4096*1024 = 8,388,608, MLP 3*4096*12288 = 150,994,944, norms 2*4096 + q/k norms 2*128 = 8,448
    # -> 192,946,432 x 36 = 6,946,071,552; final norm 4096. Total 8,190,735,360 (the model card: 8.2 B).
    assert p.target_params == 8_190_735_360
    assert p.items["target weights"] == 2 * 8_190_735_360  # bf16
    # drafter: fuse 5*4096*4096 = 83,886,080 + fuse norm 4096 + 4 layers x 192,946,176 (no q/k norms)
    # (771,784,704) + final norm 4096 + learned mask 4096 = 855,683,072; fp32 weights + grads + 2 AdamW moments
    assert p.drafter_params == 855_683_072
    assert p.items["drafter weights+grads+AdamW"] == 16 * 855_683_072
    assert p.items["DDP gradient buckets"] == 4 * 855_683_072
    # the LM head chunk: 128 blocks x 15 slots x 151,936 x 4 B x 4 copies + B*N*(K-1)*H fp32 hidden
    assert p.items["LM head chunk (logits, softmax, grad)"] == 128 * 15 * 151936 * 16 + 4 * 256 * 15 * 4096 * 4
    one = estimate(r, devices=1)
    assert "DDP gradient buckets" not in one.items and one.total < p.total
    assert 50 * GiB < p.total < 64 * GiB  # the recipe's comment: "GPUs with ~40 GB each" was too optimistic
    assert p.cache_bytes_per_token == 5 * 4096 * 2 + 4


def test_llama3_8b_recipe_matches_hand_computed_figures() -> None:
    r = load_recipe(LLAMA)
    p = estimate(r, devices=8)
    # Llama-3-8B: 2*128256*4096 = 1,050,673,152; layer 33,554,432 + 8,388,608 + 3*4096*14336 (176,160,768)
    # + 8,192 = 218,112,000 x 32 = 6,979,584,000; + 4096 -> 8,030,261,248 (the model card: 8.0 B)
    assert p.target_params == 8_030_261_248
    assert p.drafter_params == 5 * 4096 * 4096 + 4 * (218_112_000) + 3 * 4096


def test_parameter_counts_are_those_of_the_built_modules() -> None:
    from specframe.module import DraftTrainingModule

    r = load_recipe(ROOT / "recipes" / "block_diffusion" / "smollm2_full.yaml", ["drafter.num_layers=2"],
                    overlays=[ROOT / "recipes" / "debug" / "tiny.yaml"])
    m = DraftTrainingModule(r.resolved)
    p = estimate(r)
    assert p.drafter_params == sum(x.numel() for x in m.drafter.parameters())
    assert p.target_params == sum(x.numel() for x in m.target.parameters())


def test_advice_names_knobs_that_fit_and_fsdp_shards_the_drafter() -> None:
    r = load_recipe(QWEN)
    p = estimate(r, devices=8)
    tips = advise(r, p, int(40 * GiB), KNOWN_ARCHS["qwen/qwen3-8b"])
    assert tips and all(float(t.rsplit(": ", 1)[1].split()[0]) <= 40 for t in tips)
    assert any(t.startswith("data.num_anchors=") for t in tips)
    f = estimate(r, devices=8, strategy="fsdp")
    assert f.items["drafter weights+grads+AdamW (sharded)"] < p.items["drafter weights+grads+AdamW"] / 4
    assert advise(r, p, int(10 * GiB), KNOWN_ARCHS["qwen/qwen3-8b"])[0].startswith("the frozen target alone")


def test_cli_plan_prints_the_fit_and_the_json(capsys) -> None:
    assert main(["plan", str(QWEN), "--gpus", "8", "--gpu-mem", "80"]) == 0
    out = capsys.readouterr().out
    assert "fits in 80 GiB: yes" in out and "8.19 B parameters" in out
    assert main(["plan", str(QWEN), "--gpus", "1", "--gpu-mem", "40"]) == 1
    out = capsys.readouterr().out
    assert "fits in 40 GiB: NO" in out and "what makes it fit:" in out
    assert main(["plan", str(QWEN), "--json", "--gpus", "8"]) == 0
    assert json.loads(capsys.readouterr().out)["total_bytes"] > 0
    assert main(["plan", str(QWEN), "target.model=org/unknown-7b"]) == 2
    assert "--target-config" in capsys.readouterr().err
    assert main(["plan", str(QWEN), "--gpus", "0"]) == 2


def test_unknown_target_shape_is_a_config_error(tmp_path: Path) -> None:
    r = load_recipe(QWEN, ["target.model=org/unknown"])
    with pytest.raises(ConfigError, match="not known offline"):
        target_arch(r)
    cfg = tmp_path / "config.json"
    cfg.write_text(json.dumps({"hidden_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4,
                               "intermediate_size": 128, "vocab_size": 100}))
    assert target_arch(r, str(cfg)).hidden == 64


SMALL = ["recipes/debug/tiny.yaml", "target.hidden_size=256", "target.intermediate_size=512", "data.batch_size=4",
         "optim.chunk_blocks=32", "data.max_length=256"]


@pytest.mark.parametrize("extra", [["data.num_anchors=32", "trainer.precision=32-true"],
                                   ["data.num_anchors=64", "trainer.precision=bf16-mixed"]], ids=["fp32", "bf16"])
def test_estimate_is_within_25_percent_of_the_measured_peak_on_cpu(tmp_path: Path, extra: list[str]) -> None:
    out = tmp_path / "check.json"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    proc = subprocess.run([sys.executable, str(ROOT / "tools" / "plan_check.py"),
                           str(ROOT / "recipes" / "block_diffusion" / "smollm2_full.yaml"), *SMALL, *extra,
                           "--json", str(out)], cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    figures = json.loads(out.read_text())
    assert figures["peak_bytes"] > 40 * 2**20  # the step is big enough to measure above the noise
    assert 0.75 <= figures["ratio"] <= 1.25, proc.stdout
