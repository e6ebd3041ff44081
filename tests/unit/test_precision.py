"""`auto` precision picks bf16 only where the device computes it natively (monkeypatched probes)."""
from __future__ import annotations

import logging

import pytest
import torch

from specframe import precision
from specframe.config import load_recipe


@pytest.fixture(autouse=True)
def no_capability_cap(monkeypatch):
    monkeypatch.delenv("ATEN_CPU_CAPABILITY", raising=False)  # a machine's own cap must not decide these tests


@pytest.fixture
def avx2_cpu(monkeypatch):
    monkeypatch.setattr(precision, "cpu_capability", lambda: "AVX2")
    monkeypatch.setattr(precision, "cpu_flags", lambda: {"avx2", "fma", "sse4_2"})


@pytest.fixture
def bf16_cpu(monkeypatch):
    monkeypatch.setattr(precision, "cpu_capability", lambda: "AVX512")
    monkeypatch.setattr(precision, "cpu_flags", lambda: {"avx2", "avx512f", "avx512_bf16"})


def test_avx2_cpu_gets_float32(avx2_cpu):
    support = precision.probe_bf16("cpu")
    assert not support.native and "AVX2" in support.reason
    assert precision.resolve_dtype("auto", "cpu") == "float32"
    assert precision.resolve_precision("auto", "cpu") == "32-true"


def test_native_bf16_cpu_gets_bf16(bf16_cpu):
    support = precision.probe_bf16("cpu")
    assert support.native and "avx512_bf16" in support.reason
    assert precision.resolve_dtype("auto", "cpu") == "bfloat16"
    assert precision.resolve_precision("auto", "cpu") == "bf16-mixed"


@pytest.mark.parametrize("cap", ["AMX", "AVX512_BF16"])
def test_torch_capability_alone_is_enough(monkeypatch, cap):
    monkeypatch.setattr(precision, "cpu_capability", lambda: cap)
    monkeypatch.setattr(precision, "cpu_flags", set)  # no /proc/cpuinfo (e.g. macOS)
    assert precision.resolve_dtype("auto", "cpu") == "bfloat16"


def test_amx_flag_alone_is_enough(monkeypatch):
    monkeypatch.setattr(precision, "cpu_capability", lambda: "AVX512")
    monkeypatch.setattr(precision, "cpu_flags", lambda: {"amx_bf16", "amx_tile"})
    assert precision.resolve_precision("auto", "cpu") == "bf16-mixed"


def test_a_capability_capped_below_bf16_by_the_environment_gets_float32(bf16_cpu, monkeypatch):
    # ATEN_CPU_CAPABILITY=avx2 on a CPU with avx512_bf16: torch runs AVX2 kernels, so auto follows the cap
    monkeypatch.setenv("ATEN_CPU_CAPABILITY", "avx2")
    monkeypatch.setattr(precision, "cpu_capability", lambda: "AVX2")
    support = precision.probe_bf16("cpu")
    assert not support.native and "ATEN_CPU_CAPABILITY=avx2" in support.reason
    assert precision.resolve_precision("auto", "cpu") == "32-true"
    monkeypatch.setattr(precision, "cpu_capability", lambda: "AVX512_BF16")  # a cap that keeps bf16 changes nothing
    assert precision.probe_bf16("cpu").native


def test_cuda_without_bf16_gets_float32(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: False)
    assert precision.resolve_dtype("auto", "cuda") == "float32"


def test_explicit_choices_pass_through(bf16_cpu):
    assert precision.resolve_dtype("float32", "cpu") == "float32"
    assert precision.resolve_dtype(None, "cpu") is None
    assert precision.resolve_precision("32-true", "cpu") == "32-true"


def test_choice_is_logged_with_reason(avx2_cpu, caplog):
    precision._logged.cache_clear()
    with caplog.at_level(logging.WARNING, logger="specframe.precision"):
        precision.resolve_precision("auto", "cpu")
    assert "trainer.precision auto -> 32-true" in caplog.text and "AVX2" in caplog.text


def test_recipe_auto_resolves_in_trainer_and_target(avx2_cpu, tmp_path):
    """A recipe with auto everywhere validates, and training/eval resolve it for the machine."""
    from specframe.training import trainer_precision

    recipe = load_recipe("recipes/quickstart.yaml", [f"run.output_dir={tmp_path}"])
    assert recipe.trainer.precision == "auto" and recipe.target.options["dtype"] == "auto"
    assert trainer_precision(recipe) == "32-true"


def test_hf_target_loads_in_resolved_dtype(bf16_cpu, tmp_path):
    """build_hf_target turns target.dtype=auto into the machine's choice (a tiny local Llama folder)."""
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast
    from tokenizers import Tokenizer, models

    from specframe.targets.hf import HFTargetConfig, build_hf_target

    cfg = LlamaConfig(vocab_size=32, hidden_size=16, intermediate_size=32, num_hidden_layers=4,
                      num_attention_heads=2, num_key_value_heads=1)
    LlamaForCausalLM(cfg).save_pretrained(tmp_path)
    tok = PreTrainedTokenizerFast(tokenizer_object=Tokenizer(models.WordLevel({"a": 0, "<unk>": 1}, unk_token="<unk>")))
    tok.save_pretrained(tmp_path)
    target = build_hf_target(HFTargetConfig(model=str(tmp_path), dtype="auto", num_taps=1))
    assert next(target.model.parameters()).dtype == torch.bfloat16
