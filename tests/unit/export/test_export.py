"""`specframe export`: the files, the format's exact key set, refusals per engine, nothing half-written."""
from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file

from specframe.cli import main
from specframe.errors import ConfigError
from specframe.export import dflash_format as fmt
from specframe.export.writer import export_dflash


def test_export_writes_the_format(run_factory, tmp_path, capsys) -> None:
    run = run_factory(num_layers=2)
    out = tmp_path / "exp"
    assert main([ "export", str(run), "--out", str(out), "--engine", "sglang"]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["README.md", "config.json", "model.safetensors"]
    config = json.loads((out / "config.json").read_text())
    assert config["architectures"] == ["DFlashDraftModel"] and config["model_type"] == "qwen3"
    assert config["vocab_size"] == 260 and config["num_target_layers"] == 4 and config["hidden_act"] == "silu"
    assert config["dflash_config"]["target_layer_ids"] == [1] and config["block_size"] == 8
    assert config["dflash_config"]["mask_token_id"] == 259  # the tiny target's default frozen row
    state = load_file(out / "model.safetensors")
    assert fmt.check_state(fmt.expected_shapes(config), state) == []
    assert (out / "model.safetensors").stat().st_mode & 0o044 == 0o044  # readable by the serving engine's user
    assert "layers.1.self_attn.k_norm.weight" in state and "mask_embedding" not in state
    readme = (out / "README.md").read_text()
    assert "--speculative-algorithm DFLASH" in readme and "--speculative-num-draft-tokens 8" in readme
    assert '"num_speculative_tokens": 7' in readme and '"method": "dflash"' in readme
    assert "exported for sglang" in capsys.readouterr().out
    # an existing folder is never overwritten silently
    with pytest.raises(ConfigError, match="exists; choose another --out or pass --force"):
        export_dflash(run, out, engine="sglang")
    export_dflash(run, out, engine="sglang", force=True)
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary folder left


def test_learned_mask_goes_to_mask_embedding_pt_for_vllm_only(run_factory, tmp_path) -> None:
    run = run_factory(mask_token="learned", mask_token_id=5)
    out = tmp_path / "vllm"
    export_dflash(run, out, engine="vllm")
    extra = torch.load(out / "mask_embedding.pt", weights_only=True)
    assert extra["mask_token_id"] == 5 == json.loads((out / "config.json").read_text())["dflash_config"][
        "mask_token_id"]
    assert extra["embedding"].shape == (64,)
    for engine in ("reference", "sglang"):
        with pytest.raises(ConfigError, match="drafter.mask_token: frozen_row") as e:
            export_dflash(run, tmp_path / engine, engine=engine)
        assert "learned mask vector" in str(e.value) and not (tmp_path / engine).exists()


def test_reduced_vocabulary_for_vllm_and_refused_elsewhere(run_factory, tmp_path) -> None:
    ids = torch.arange(100, 164)
    run = run_factory(draft_vocab_size=64, draft_ids=ids)
    out = tmp_path / "vllm"
    export_dflash(run, out, engine="vllm")
    config = json.loads((out / "config.json").read_text())
    state = load_file(out / "model.safetensors")
    assert config["draft_vocab_size"] == 64 and state["lm_head.weight"].shape == (64, 64)
    assert torch.equal(state["d2t"] + torch.arange(64), ids)  # target id = i + d2t[i]
    with pytest.raises(ConfigError, match="drafter.draft_vocab_size: null"):
        export_dflash(run, tmp_path / "sg", engine="sglang")


def test_no_qk_norm_is_refused_by_every_engine(run_factory, tmp_path, capsys) -> None:
    run = run_factory(qk_norm=False)
    for engine in ("vllm", "sglang", "reference"):
        with pytest.raises(ConfigError, match="drafter.qk_norm: true"):
            export_dflash(run, tmp_path / engine, engine=engine)
    assert main(["export", str(run), "--out", str(tmp_path / "x")]) == 2
    assert "q/k RMSNorm" in capsys.readouterr().err and not (tmp_path / "x").exists()


def test_format_check_names_every_difference() -> None:
    config = fmt.build_config(hidden_size=8, num_heads=2, num_kv_heads=1, head_dim=4, intermediate_size=16,
                              num_layers=1, rms_norm_eps=1e-6, rope_theta=1e4, vocab_size=10, num_target_layers=4,
                              target_layer_ids=[1, 2], mask_token_id=0, block_size=4, max_position_embeddings=64,
                              dtype="float32")
    shapes = fmt.expected_shapes(config)
    assert shapes["fc.weight"] == (8, 16) and shapes["layers.0.self_attn.k_proj.weight"] == (4, 8)
    state = {k: torch.zeros(s) for k, s in shapes.items()}
    assert fmt.check_state(shapes, state) == []
    state["fuse.weight"] = state.pop("fc.weight")
    state["norm.weight"] = torch.zeros(9)
    issues = fmt.check_state(shapes, state)
    assert any("missing key fc.weight" in i for i in issues) and any("fuse.weight is not in" in i for i in issues)
    assert any("norm.weight: shape [9]" in i for i in issues)
