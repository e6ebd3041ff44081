"""Facts of the DFlash checkpoint format (z-lab's, read by vLLM, SGLang and `dflash.DFlashDraftModel`).

A DFlash drafter folder holds `config.json` (a Qwen3 config with `architectures: ["DFlashDraftModel"]`,
`block_size`, `num_target_layers` and `dflash_config: {mask_token_id, target_layer_ids}`) and
`model.safetensors` with exactly the keys of `expected_shapes`. Target layer id k means the output of the
target's decoder layer k (hidden_states[k + 1]), as specframe's tap ids do. The drafter owns no embedding and,
unless the vocabulary is reduced (vLLM only: `draft_vocab_size`, `lm_head.weight` [V_d, H], `d2t` offsets with
target id = i + d2t[i]), no LM head: the engines lend the target's.
"""
from __future__ import annotations

from typing import Any

ARCHITECTURE = "DFlashDraftModel"


def layer_shapes(i: int, H: int, heads: int, kv_heads: int, head_dim: int, inter: int) -> dict[str, tuple[int, ...]]:
    p = f"layers.{i}."
    return {
        p + "input_layernorm.weight": (H,),
        p + "self_attn.q_proj.weight": (heads * head_dim, H),
        p + "self_attn.k_proj.weight": (kv_heads * head_dim, H),
        p + "self_attn.v_proj.weight": (kv_heads * head_dim, H),
        p + "self_attn.o_proj.weight": (H, heads * head_dim),
        p + "self_attn.q_norm.weight": (head_dim,),
        p + "self_attn.k_norm.weight": (head_dim,),
        p + "post_attention_layernorm.weight": (H,),
        p + "mlp.gate_proj.weight": (inter, H),
        p + "mlp.up_proj.weight": (inter, H),
        p + "mlp.down_proj.weight": (H, inter),
    }


def expected_shapes(config: dict[str, Any]) -> dict[str, tuple[int, ...]]:
    """The format's exact key set and shapes for a config.json."""
    H = int(config["hidden_size"])
    heads = int(config["num_attention_heads"])
    kv_heads = int(config.get("num_key_value_heads") or heads)
    head_dim = int(config.get("head_dim") or H // heads)
    taps = len(target_layer_ids(config))
    shapes: dict[str, tuple[int, ...]] = {"fc.weight": (H, taps * H), "hidden_norm.weight": (H,), "norm.weight": (H,)}
    for i in range(int(config["num_hidden_layers"])):
        shapes.update(layer_shapes(i, H, heads, kv_heads, head_dim, int(config["intermediate_size"])))
    vd = config.get("draft_vocab_size")
    if vd:
        shapes["lm_head.weight"] = (int(vd), H)
        shapes["d2t"] = (int(vd),)
    return shapes


def check_state(shapes: dict[str, tuple[int, ...]], state: dict[str, Any]) -> list[str]:
    """Every difference between a state dict and the format's key set/shapes (empty: it is the format)."""
    issues = [f"missing key {k} {list(shapes[k])}" for k in sorted(set(shapes) - set(state))]
    issues += [f"key {k} is not in the format" for k in sorted(set(state) - set(shapes))]
    issues += [f"{k}: shape {list(state[k].shape)}, the format wants {list(shapes[k])}"
               for k in sorted(set(shapes) & set(state)) if tuple(state[k].shape) != shapes[k]]
    return issues


def target_layer_ids(config: dict[str, Any]) -> list[int]:
    ids = (config.get("dflash_config") or {}).get("target_layer_ids", config.get("target_layer_ids"))
    if ids is None:
        raise ValueError("config.json has no dflash_config.target_layer_ids")
    return [int(i) for i in ids]


def mask_token_id(config: dict[str, Any]) -> int | None:
    mid = (config.get("dflash_config") or {}).get("mask_token_id", config.get("mask_token_id"))
    return None if mid is None else int(mid)


def rope_theta(config: dict[str, Any]) -> float:
    theta = config.get("rope_theta")
    if theta is None:
        theta = (config.get("rope_parameters") or {}).get("rope_theta", 10000.0)
    return float(theta)


def rope_scaling(config: dict[str, Any]) -> dict[str, Any] | None:
    """The rope scaling a config asks for beyond plain rotary (None: none)."""
    scaling = config.get("rope_scaling")
    if not scaling:
        params = config.get("rope_parameters") or {}
        kind = params.get("rope_type", params.get("type", "default"))
        scaling = None if kind == "default" else params
    if scaling and scaling.get("rope_type", scaling.get("type", "default")) == "default":
        return None
    return scaling or None


def build_config(*, hidden_size: int, num_heads: int, num_kv_heads: int, head_dim: int, intermediate_size: int,
                 num_layers: int, rms_norm_eps: float, rope_theta: float, vocab_size: int, num_target_layers: int,
                 target_layer_ids: list[int], mask_token_id: int, block_size: int, max_position_embeddings: int,
                 dtype: str, draft_vocab_size: int | None = None, extra: dict[str, Any] | None = None
                 ) -> dict[str, Any]:
    """config.json of a DFlash drafter (a Qwen3 config: what vLLM, SGLang and transformers read)."""
    config: dict[str, Any] = {
        "architectures": [ARCHITECTURE],
        "model_type": "qwen3",
        "hidden_size": hidden_size,
        "num_attention_heads": num_heads,
        "num_key_value_heads": num_kv_heads,
        "head_dim": head_dim,
        "intermediate_size": intermediate_size,
        "num_hidden_layers": num_layers,
        "hidden_act": "silu",
        "rms_norm_eps": rms_norm_eps,
        "attention_bias": False,
        "attention_dropout": 0.0,
        "rope_theta": rope_theta,
        "rope_scaling": None,
        "rope_parameters": {"rope_type": "default", "rope_theta": rope_theta},
        "max_position_embeddings": max_position_embeddings,
        "vocab_size": vocab_size,
        "tie_word_embeddings": False,
        "use_sliding_window": False,
        "torch_dtype": dtype,
        "block_size": block_size,
        "num_target_layers": num_target_layers,
        "dflash_config": {"mask_token_id": mask_token_id, "target_layer_ids": list(target_layer_ids)},
    }
    if draft_vocab_size:
        config["draft_vocab_size"] = draft_vocab_size
    config.update(extra or {})
    return config
