"""Frozen Hugging Face causal LMs as targets: any hub id, local folder or GGUF file, plus SmolLM2 offline."""
from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import torch
from torch import Tensor, nn

from specframe.interfaces import TargetOutputs, TargetSpec
from specframe.targets.registry import TARGETS

log = logging.getLogger(__name__)

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
BUILTIN_MODELS = {"smollm2-135m-instruct"}


def default_tap_layers(num_layers: int, num_taps: int) -> tuple[int, ...]:
    """Tap ids spread evenly from layer 1 to layer L-3 (method.md §2); id k is the output of decoder layer k."""
    lo, hi = 1, max(1, num_layers - 3)
    if num_taps == 1:
        return (hi,)
    return tuple(sorted({round(lo + i * (hi - lo) / (num_taps - 1)) for i in range(num_taps)}))


class HFTarget(nn.Module):
    """A frozen causal LM that returns tapped hidden states (and logits on request)."""

    def __init__(self, model: nn.Module, tokenizer: Any, name: str, tap_layers: tuple[int, ...],
                 revision: str | None = None, spare_token_id: int | None = None):
        super().__init__()
        self.model = model.eval().requires_grad_(False)
        self.tokenizer = tokenizer
        self.name = name
        self.revision = revision
        c = model.config
        self.num_layers = int(c.num_hidden_layers)
        bad = [t for t in tap_layers if not 0 <= t < self.num_layers]
        if bad:
            raise ValueError(f"tap_layers {bad} outside [0, {self.num_layers - 1}] for {name}")
        self.tap_layers = tuple(tap_layers)
        self.hidden_size = int(c.hidden_size)
        self.vocab_size = int(model.get_output_embeddings().weight.shape[0])
        self.spec = spec_of(c, tokenizer, self.vocab_size, self.tap_layers, spare_token_id)

    def train(self, mode: bool = True) -> HFTarget:
        # The target is frozen: Lightning's trainer.fit() calls .train() on the whole module tree.
        return super().train(False)

    @torch.no_grad()
    def forward(self, input_ids: Tensor, attention_mask: Tensor, *, with_logits: bool = False) -> TargetOutputs:
        # Without logits, run the decoder alone: the LM head is the most expensive layer of a small target.
        net = self.model if with_logits else self.model.base_model
        out = net(input_ids=input_ids, attention_mask=attention_mask, output_hidden_states=True, use_cache=False)
        hidden = torch.cat([out.hidden_states[t + 1] for t in self.tap_layers], dim=-1)
        return TargetOutputs(hidden=hidden, logits=out.logits if with_logits else None)

    def embed(self, input_ids: Tensor) -> Tensor:
        return self.model.get_input_embeddings()(input_ids)

    @property
    def lm_head_weight(self) -> Tensor:
        return self.model.get_output_embeddings().weight

    def decoder_layer_state(self, index: int) -> dict[str, Tensor]:
        """The parameters of decoder layer `index` (negative: from the top) under their Hugging Face names."""
        layers = getattr(self.model.base_model, "layers", None)
        if not isinstance(layers, nn.ModuleList):
            raise ValueError(f"{self.name}: its base model has no `layers` list, so no decoder layer can be copied "
                             "(drafter.init_layers_from_target needs a Llama/Qwen/Mistral-style model)")
        return layers[index].state_dict()  # detached tensors

    @property
    def final_norm_weight(self) -> Tensor | None:
        norm = getattr(getattr(self.model, "model", None), "norm", None)
        return getattr(norm, "weight", None)


def spec_of(c: Any, tokenizer: Any, vocab_size: int, tap_layers: tuple[int, ...],
            spare_token_id: int | None) -> TargetSpec:
    """A target's shape facts from its transformers config and tokenizer (no weights needed)."""
    hidden = int(c.hidden_size)
    heads = int(c.num_attention_heads)
    return TargetSpec(
        hidden_size=hidden,
        vocab_size=vocab_size,
        num_layers=int(c.num_hidden_layers),
        num_heads=heads,
        num_kv_heads=int(getattr(c, "num_key_value_heads", None) or heads),
        head_dim=int(getattr(c, "head_dim", None) or hidden // heads),
        intermediate_size=int(c.intermediate_size),
        rope_theta=float(_rope_theta(c)),
        rms_norm_eps=float(getattr(c, "rms_norm_eps", 1e-6)),
        tap_layers=tuple(tap_layers),
        spare_token_id=spare_token_id,
        mask_row=default_mask_row(tokenizer),
        token_id=None if tokenizer is None else (lambda text: single_token_id(tokenizer, text)),
    )


def spec_without_weights(cfg: HFTargetConfig) -> TargetSpec | None:
    """The target's spec from its config and tokenizer files alone, if they are on this machine (else None)."""
    from transformers import AutoConfig, AutoTokenizer

    try:
        source, kwargs = resolve_model_source(cfg.model)
        conf = AutoConfig.from_pretrained(source, revision=cfg.revision, local_files_only=True, **kwargs)
        tok = AutoTokenizer.from_pretrained(source, revision=cfg.revision, local_files_only=True, **kwargs)
    except Exception:  # noqa: BLE001 - not downloaded, or not convertible without loading: check at train time
        return None
    layers = int(conf.num_hidden_layers)
    taps = tuple(cfg.tap_layers) if cfg.tap_layers else default_tap_layers(layers, cfg.num_taps)
    return spec_of(conf, tok, int(conf.vocab_size), taps, cfg.spare_token_id)


def default_mask_row(tokenizer: Any) -> int:
    """The row a frozen mask token uses unless the recipe names one: unk, else pad, else eos, else 0.

    Any row serves (the drafter learns around whatever vector it is); a special token keeps it recognisable.
    """
    for name in ("unk_token_id", "pad_token_id", "eos_token_id"):
        row = getattr(tokenizer, name, None)
        if isinstance(row, int):
            return row
    return 0


def single_token_id(tokenizer: Any, text: str) -> int | None:
    """The id of the token whose text is exactly `text`, or None."""
    row = tokenizer.convert_tokens_to_ids(text)
    if not isinstance(row, int):
        return None
    if row == getattr(tokenizer, "unk_token_id", None) and text != getattr(tokenizer, "unk_token", None):
        return None  # an unknown text maps to unk
    return row


def _rope_theta(config: Any) -> float:
    theta = getattr(config, "rope_theta", None)
    if theta is None:  # transformers 5 keeps it in rope_parameters
        params = getattr(config, "rope_parameters", None) or {}
        theta = params.get("rope_theta", 10000.0) if isinstance(params, dict) else 10000.0
    return float(theta)


@dataclass(kw_only=True)
class HFTargetConfig:
    model: str = "smollm2-135m-instruct"
    """Hub id (e.g. Qwen/Qwen3-8B), local folder, path to a .gguf file, or the built-in 'smollm2-135m-instruct'."""
    revision: str | None = None
    """Hub revision (branch, tag or commit) to pin."""
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = "float32"
    """Weights dtype of the frozen target; auto: bfloat16 where the device computes it natively, else float32."""
    num_taps: int = 3
    """How many layers to tap when tap_layers is not given (spread evenly from layer 1 to L-3)."""
    tap_layers: list[int] | None = None
    """Explicit tapped layer ids (id k = output of decoder layer k)."""
    spare_token_id: int | None = None
    """An embedding row the target never uses, to serve as the drafter's mask token."""
    attn_implementation: str = "sdpa"
    """transformers attention implementation of the target."""

    def __post_init__(self) -> None:
        if self.num_taps < 1:
            raise ValueError(f"num_taps must be >= 1, got {self.num_taps}")


@TARGETS.register("hf", config=HFTargetConfig)
def build_hf_target(cfg: HFTargetConfig) -> HFTarget:
    """Any Hugging Face causal LM (hub id, local folder, GGUF file), frozen, with tapped hidden states."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from specframe.precision import default_device, resolve_dtype

    source, kwargs = resolve_model_source(cfg.model)
    dtype_name = resolve_dtype(cfg.dtype, default_device(), what="target.dtype")
    dtype = DTYPES[dtype_name]
    log.info("loading target %s (%s)", cfg.model, dtype_name)
    tok = AutoTokenizer.from_pretrained(source, revision=cfg.revision, **kwargs)
    model = AutoModelForCausalLM.from_pretrained(source, revision=cfg.revision, dtype=dtype,
                                                 attn_implementation=cfg.attn_implementation, **kwargs)
    layers = int(model.config.num_hidden_layers)
    taps = tuple(cfg.tap_layers) if cfg.tap_layers else default_tap_layers(layers, cfg.num_taps)
    return HFTarget(model, tok, cfg.model, taps, revision=cfg.revision, spare_token_id=cfg.spare_token_id)


def resolve_model_source(model: str) -> tuple[str, dict[str, Any]]:
    """Map the recipe's `model` string to a from_pretrained source and kwargs."""
    if model in BUILTIN_MODELS:
        from specframe.targets.smollm2 import smollm2_folder

        return str(smollm2_folder()), {}
    path = Path(os.path.expanduser(model))
    if path.suffix == ".gguf":
        if not path.is_file():
            raise FileNotFoundError(f"target.model: GGUF file {path} does not exist")
        return str(path.parent), {"gguf_file": path.name}
    if path.exists():
        return str(path), {}
    return model, {}  # a hub id: the user asked for the hub by naming one
