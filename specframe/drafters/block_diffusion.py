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
    mask_token: Literal["auto", "learned", "spare_row"] = "auto"
    """auto: an unused row of the target's embedding if it has one, else one learned mask embedding."""
    draft_vocab_size: int | None = None
    """Reduced draft vocabulary: the N most frequent target tokens of the training data (None: full vocabulary)."""
    init_norm_from_target: bool = True
    """Start the final norm from the target's final norm (the head then sees familiar scales)."""

    def __post_init__(self) -> None:
        if self.num_layers < 1:
            raise ValueError(f"num_layers must be >= 1, got {self.num_layers}")
        if not 2 <= self.block_size <= 256:
            raise ValueError(f"block_size must be in [2, 256], got {self.block_size}")


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
        self.fuse = nn.Linear(len(spec.tap_layers) * H, H, bias=False)
        self.fuse_norm = RMSNorm(H, spec.rms_norm_eps)
        self.layers = nn.ModuleList(
            InjectionLayer(H, heads, kv_heads, head_dim, cfg.intermediate_size or spec.intermediate_size,
                           spec.rms_norm_eps)
            for _ in range(cfg.num_layers)
        )
        self.norm = RMSNorm(H, spec.rms_norm_eps)
        use_spare = cfg.mask_token == "spare_row" or (cfg.mask_token == "auto" and spec.spare_token_id is not None)
        if use_spare and spec.spare_token_id is None:
            raise ValueError("mask_token='spare_row' but the target has no spare embedding row")
        self.mask_token_id: int | None = spec.spare_token_id if use_spare else None
        # A learned mask embedding when the target's table has no spare row (SmolLM2 has none).
        self.mask_embedding = nn.Parameter(torch.randn(H) * 0.02) if self.mask_token_id is None else None
        self.backend = cfg.attention

    # -- pieces shared by training and decoding -------------------------------------------------
    def fuse_context(self, context: Tensor) -> Tensor:
        """[B, S, F] tapped features -> [B, S, H] fused context."""
        return self.fuse_norm(self.fuse(context.to(self.fuse.weight.dtype)))

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
