"""DFlash-style block-diffusion drafter (arXiv 2602.06036) as `method.md` §2 describes it.

A few pre-norm layers at the target's width. Target features from the tapped layers are fused once,
ctx = RMSNorm(Linear(n_taps*H -> H)(concat)), and injected as extra keys/values into every layer. A block is
[anchor embedding, mask, mask, ...]; one forward predicts every slot, bidirectionally inside the block.
The drafter owns no embedding and no LM head: the caller embeds the anchor with the target's table and
applies the target's head to the returned hidden states.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor, nn

from specframe.drafters.registry import DRAFTERS
from specframe.drafters.attention import resolve_backend
from specframe.drafters.layers import InjectionLayer, RMSNorm, rope_cos_sin
from specframe.drafters.legacy_names import mismatch_hint, upgrade_state_dict
from specframe.interfaces import TargetSpec


@dataclass(kw_only=True)
class BlockDiffusionConfig:
    num_layers: int = 1
    """Drafter decoder layers (the paper uses 4 on 8B targets; 1 is enough for CPU-scale runs)."""
    block_size: int = 16
    """B: slots per block, slot 0 being the anchor."""
    num_heads: int | None = None
    """Attention heads; default: the target's."""
    num_kv_heads: int | None = None
    """Key/value heads (GQA); default: the target's."""
    intermediate_size: int | None = None
    """SwiGLU hidden width; default: the target's."""
    attention: Literal["auto", "sdpa", "flex", "flash"] = "auto"
    """auto: flex attention (block-sparse) on CUDA, dense SDPA on CPU; flash is used at decode time if installed."""
    qk_norm: bool = True
    """Per-head RMSNorm on queries and keys (Qwen3 style), as vLLM, SGLang and the DFlash reference compute it.
    Checkpoints written before this option existed load with it off."""
    mask_token: Literal["auto", "frozen_row", "learned", "spare_row"] = "auto"
    """What fills the masked slots of a block. frozen_row: the target's own (frozen) embedding row
    `mask_token_id` (serves in vLLM, SGLang and the reference); learned: a trained vector (vLLM only, through
    mask_embedding.pt); spare_row: the target's unused row `target.spare_token_id`. auto: the spare row if the
    target has one, else a frozen row (`mask_token_id`, or the target's default: unk, else pad, else eos, else 0)."""
    mask_token_id: int | str | None = None
    """The row for frozen_row/auto: a token id or the token's text (e.g. "<|endoftext|>"). With learned: the id
    vLLM substitutes the vector at when exported (one the target never emits; default: as for frozen_row)."""
    draft_vocab_size: int | None = None
    """Reduced draft vocabulary: the N most frequent target tokens of the training data (None: full vocabulary)."""
    init_norm_from_target: bool = True
    """Start the final norm from the target's final norm (the head then sees familiar scales)."""
    init_fusion_from_features: bool = False
    """Start `fc` with each input column divided by the RMS of its target feature on a few training rows, so
    that the target's few massive-activation dimensions do not drown the rest (specframe/fusion_fit.py)."""
    init_layers_from_target: bool = False
    """Start drafter layer i of n from the target's decoder layer num_layers - n + i (its top layers): attention
    projections, MLP and both layer norms; the q/k norms, which a Llama-style target lacks, start at ones. Needs
    the target's head counts and MLP width (the defaults). Like every init_* option, superseded by init_from."""
    init_fusion_from_top_tap: bool = False
    """Start `fc` as a pass-through of the last tapped layer (the other taps at zero) and `hidden_norm` as the
    input norm of the target layer the first drafter layer starts from: with init_layers_from_target, the context
    keys and values start as the ones that target layer computes from the target's own states."""
    init_from: str | None = None
    """Start from a drafter in the DFlash format: a local folder or a hub id (e.g. a published z-lab drafter).
    Its weights replace all of the drafter's, so the other init_* options are not applied.
    Checked against the target and these options (`specframe validate`, then before training)."""

    def __post_init__(self) -> None:
        if self.num_layers < 1:
            raise ValueError(f"num_layers must be >= 1, got {self.num_layers}")
        if not 2 <= self.block_size <= 256:
            raise ValueError(f"block_size must be in [2, 256], got {self.block_size}")
        if self.mask_token_id is not None and self.mask_token == "spare_row":
            raise ValueError("mask_token_id is not used with mask_token: spare_row (the row is "
                             "target.spare_token_id); use mask_token: frozen_row to choose a row")
        if self.init_fusion_from_top_tap and self.init_fusion_from_features:
            raise ValueError("init_fusion_from_top_tap and init_fusion_from_features both set the fusion layer; "
                             "choose one")
        if isinstance(self.mask_token_id, bool) or (isinstance(self.mask_token_id, int) and self.mask_token_id < 0):
            raise ValueError(f"mask_token_id must be a token id >= 0 or a token's text, got {self.mask_token_id!r}")


def resolve_mask_token(cfg: BlockDiffusionConfig, spec: TargetSpec) -> tuple[str, int | None]:
    """(kind, row): kind is frozen_row, spare_row or learned; row is the target's embedding row (None: learned)."""
    kind = cfg.mask_token
    if kind == "auto":
        kind = "frozen_row" if cfg.mask_token_id is not None or spec.spare_token_id is None else "spare_row"
    if kind == "learned":
        return kind, None
    if kind == "spare_row":
        if spec.spare_token_id is None:
            raise ValueError("mask_token='spare_row' but the target has no spare embedding row (set "
                             "target.spare_token_id, or use mask_token: frozen_row)")
        return kind, spec.spare_token_id
    row = cfg.mask_token_id if cfg.mask_token_id is not None else spec.mask_row
    if isinstance(row, str):
        found = spec.token_id(row) if spec.token_id is not None else None
        if found is None:
            raise ValueError(f"mask_token_id {row!r} is not one token of the target's tokenizer; give a token id "
                             f"or the exact text of a single token")
        row = found
    if row is None:
        raise ValueError("mask_token: frozen_row needs mask_token_id (the target names no default row)")
    if not 0 <= row < spec.vocab_size:
        raise ValueError(f"mask_token_id {row} outside the target's vocabulary [0, {spec.vocab_size - 1}]")
    return kind, int(row)


@DRAFTERS.register("block_diffusion", config=BlockDiffusionConfig)
class BlockDiffusionDrafter(nn.Module):
    """Block-diffusion drafter with KV injection of fused target features (DFlash), one denoising step."""

    def __init__(self, cfg: BlockDiffusionConfig, spec: TargetSpec):
        super().__init__()
        self.cfg = cfg
        self.block_size = cfg.block_size
        self.spec = spec
        H = spec.hidden_size
        heads = cfg.num_heads or spec.num_heads
        kv_heads = cfg.num_kv_heads or spec.num_kv_heads
        head_dim = spec.head_dim if heads == spec.num_heads else H // heads
        self.head_dim = head_dim
        # Parameter names follow the DFlash checkpoint format (export is a check, not a translation table).
        self.fc = nn.Linear(len(spec.tap_layers) * H, H, bias=False)
        self.hidden_norm = RMSNorm(H, spec.rms_norm_eps)
        self.layers = nn.ModuleList(
            InjectionLayer(H, heads, kv_heads, head_dim, cfg.intermediate_size or spec.intermediate_size,
                           spec.rms_norm_eps, qk_norm=cfg.qk_norm)
            for _ in range(cfg.num_layers)
        )
        self.norm = RMSNorm(H, spec.rms_norm_eps)
        self.mask_kind, self.mask_token_id = resolve_mask_token(cfg, spec)
        # A learned mask vector only when asked for (vLLM alone can serve it, through mask_embedding.pt).
        self.mask_embedding = nn.Parameter(torch.randn(H) * 0.02) if self.mask_token_id is None else None
        self.backend = cfg.attention
        self.register_load_state_dict_pre_hook(_upgrade_and_check)

    # -- pieces shared by training and decoding -------------------------------------------------
    def fuse_context(self, context: Tensor) -> Tensor:
        """[B, S, F] tapped features -> [B, S, H] fused context."""
        return self.hidden_norm(self.fc(context.to(self.fc.weight.dtype)))

    def context_kv(self, ctx: Tensor, positions: Tensor) -> list[tuple[Tensor, Tensor]]:
        """Per-layer rotated context keys/values for fused context [B, S, H] at absolute `positions` [B, S]."""
        cos, sin = rope_cos_sin(positions, self.head_dim, self.spec.rope_theta)
        return [layer.context_kv(ctx, cos, sin) for layer in self.layers]

    def block_inputs(self, anchor_embeds: Tensor, mask_embed: Tensor | None = None) -> Tensor:
        """[B, N, H] anchor embeddings -> [B, N, K, H] block of [anchor, mask, ..., mask]."""
        B, N, H = anchor_embeds.shape
        if mask_embed is None:
            if self.mask_embedding is None:
                raise RuntimeError("pass the target's embedding of mask_token_id as mask_embed")
            mask_embed = self.mask_embedding
        masks = mask_embed.to(anchor_embeds.dtype).expand(B, N, self.block_size - 1, H)
        return torch.cat([anchor_embeds.unsqueeze(2), masks], dim=2)

    def run_layers(self, blocks: Tensor, anchors: Tensor, ctx_kv: list[tuple[Tensor, Tensor]],
                   mask: tuple[Tensor, Tensor, Tensor, int] | None) -> Tensor:
        """blocks [B, N, K, H] at anchors [B, N] -> normed hidden [B, N, K, H]."""
        B, N, K, H = blocks.shape
        pos = (anchors.unsqueeze(-1) + torch.arange(K, device=anchors.device)).reshape(B, N * K)
        cos, sin = rope_cos_sin(pos, self.head_dim, self.spec.rope_theta)
        backend = resolve_backend(self.backend, blocks.device)  # type: ignore[arg-type]
        x = blocks.reshape(B, N * K, H)
        for layer, kv in zip(self.layers, ctx_kv):
            x = layer(x, kv, cos, sin, mask, backend)
        return self.norm(x).view(B, N, K, H)

    # -- training: every block of every sequence in one forward ---------------------------------
    def forward(self, context: Tensor, context_valid: Tensor, anchor_embeds: Tensor, anchors: Tensor,
                anchor_valid: Tensor, mask_embed: Tensor | None = None) -> Tensor:
        B, S, _ = context.shape
        ctx = self.fuse_context(context)
        positions = torch.arange(S, device=context.device).expand(B, S)
        kv = self.context_kv(ctx, positions)
        blocks = self.block_inputs(anchor_embeds.to(ctx.dtype), mask_embed)
        return self.run_layers(blocks, anchors, kv, (anchors, anchor_valid, context_valid, self.block_size))


def _upgrade_and_check(module: nn.Module, state: dict, prefix: str, local_metadata: dict, strict: bool,
                       missing: list[str], unexpected: list[str], error_msgs: list[str]) -> None:
    """Map pre-rename names (legacy_names.py) and refuse, with the recipe fix, a state dict that fits only in part."""
    upgrade_state_dict(state, prefix)
    own = {prefix + k for k in module.state_dict()}
    given = {k for k in state if k.startswith(prefix)}
    hint = mismatch_hint(sorted(k[len(prefix):] for k in own - given), sorted(k[len(prefix):] for k in given - own))
    if hint:
        error_msgs.append(f"block_diffusion drafter: {hint}")
