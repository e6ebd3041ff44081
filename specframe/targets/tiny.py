"""A tiny random-weight Llama target with a byte-level tokenizer: for fast unit tests only."""
from __future__ import annotations

from dataclasses import dataclass

import torch

from specframe.targets.registry import TARGETS
from specframe.targets.hf import HFTarget, default_tap_layers


@dataclass(kw_only=True)
class TinyTargetConfig:
    hidden_size: int = 64
    num_layers: int = 4
    num_heads: int = 4
    num_kv_heads: int = 2
    intermediate_size: int = 128
    num_taps: int = 2
    seed: int = 0
    """Weights are a function of the seed, so two builds are identical."""
    initializer_range: float = 0.02
    """Std of the random weights; about 0.3 makes greedy output varied instead of one repeated token."""


@TARGETS.register("tiny", config=TinyTargetConfig)
def build_tiny_target(cfg: TinyTargetConfig) -> HFTarget:
    """Tiny random-weight Llama with a byte-level ChatML tokenizer (unit tests, no download)."""
    from transformers import LlamaConfig, LlamaForCausalLM

    from specframe.data.tiny_tokenizer import tiny_tokenizer

    tok = tiny_tokenizer()
    config = LlamaConfig(
        vocab_size=len(tok), hidden_size=cfg.hidden_size, num_hidden_layers=cfg.num_layers,
        num_attention_heads=cfg.num_heads, num_key_value_heads=cfg.num_kv_heads,
        intermediate_size=cfg.intermediate_size, max_position_embeddings=4096, tie_word_embeddings=True,
        initializer_range=cfg.initializer_range,
        bos_token_id=None, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id,
    )
    gen = torch.random.fork_rng()
    with gen:
        torch.manual_seed(cfg.seed)
        model = LlamaForCausalLM(config)
    model.generation_config.eos_token_id = tok.eos_token_id
    model.generation_config.pad_token_id = tok.pad_token_id
    taps = default_tap_layers(cfg.num_layers, cfg.num_taps)
    return HFTarget(model, tok, f"tiny(seed={cfg.seed})", taps)
