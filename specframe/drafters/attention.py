"""Attention for block drafters: which key each block query may see, and three ways to compute it.

Keys are laid out as [S context positions ; N*K block slots]. A query in block n sees
  * context key j  iff  context_valid[j] and j < anchors[n]   (strictly before the anchor), and
  * block key (m, k') iff  m == n                              (its own block, both directions),
and nothing of other blocks, whatever their anchors (overlapping anchors must not leak). A padding block
(anchor_valid false) sees only its own slots; it gets no loss, this only keeps softmax finite.
"""
from __future__ import annotations

import importlib.util
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor

Backend = Literal["sdpa", "flex", "flash", "auto"]


def block_visibility(anchors: Tensor, anchor_valid: Tensor, context_valid: Tensor, block_size: int) -> Tensor:
    """Dense boolean mask [B, N*K, S + N*K]: True where a query may attend to a key."""
    B, N = anchors.shape
    S = context_valid.shape[1]
    K = block_size
    pos = torch.arange(S, device=anchors.device)
    ctx = (pos.view(1, 1, S) < anchors.unsqueeze(-1)) & context_valid.unsqueeze(1) & anchor_valid.unsqueeze(-1)
    ctx = ctx.repeat_interleave(K, dim=1)  # [B, N*K, S]
    blk_id = torch.arange(N * K, device=anchors.device) // K
    own = (blk_id.view(-1, 1) == blk_id.view(1, -1)).expand(B, N * K, N * K)
    return torch.cat([ctx, own], dim=-1)


def flash_available() -> bool:
    return importlib.util.find_spec("flash_attn") is not None and torch.cuda.is_available()


def resolve_backend(backend: Backend, device: torch.device) -> Backend:
    """`auto`: flex attention on CUDA (block-sparse), dense SDPA on CPU (flex is unfused there)."""
    if backend != "auto":
        return backend
    return "flex" if device.type == "cuda" else "sdpa"


def masked_attention(
    q: Tensor,  # [B, h, N*K, d]
    k: Tensor,  # [B, h, S + N*K, d]
    v: Tensor,
    anchors: Tensor,
    anchor_valid: Tensor,
    context_valid: Tensor,
    block_size: int,
    backend: Backend = "sdpa",
) -> Tensor:
    """Attention of block queries over [context ; blocks] under the visibility rule above."""
    if backend == "flex":
        return _flex(q, k, v, anchors, anchor_valid, context_valid, block_size)
    mask = block_visibility(anchors, anchor_valid, context_valid, block_size).unsqueeze(1)
    return F.scaled_dot_product_attention(q, k, v, attn_mask=mask)


def full_attention(q: Tensor, k: Tensor, v: Tensor, backend: Backend = "sdpa") -> Tensor:
    """Unmasked attention (decoding: one block sees every cached context key and its own slots)."""
    if backend == "flash" and flash_available() and q.dtype in (torch.float16, torch.bfloat16):
        from flash_attn import flash_attn_func  # type: ignore[import-not-found]

        out = flash_attn_func(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2), causal=False)
        return out.transpose(1, 2)
    return F.scaled_dot_product_attention(q, k, v)


def _flex(q: Tensor, k: Tensor, v: Tensor, anchors: Tensor, anchor_valid: Tensor, context_valid: Tensor,
          block_size: int) -> Tensor:
    from torch.nn.attention.flex_attention import create_block_mask, flex_attention

    B, _, Q, _ = q.shape
    KV = k.shape[2]
    S = context_valid.shape[1]
    K = block_size

    def mask_mod(b: Tensor, h: Tensor, q_idx: Tensor, kv_idx: Tensor) -> Tensor:
        n = q_idx // K
        is_ctx = kv_idx < S
        j = kv_idx.clamp(max=S - 1)
        sees_ctx = is_ctx & (j < anchors[b, n]) & context_valid[b, j] & anchor_valid[b, n]
        sees_own = (~is_ctx) & ((kv_idx - S) // K == n)
        return sees_ctx | sees_own

    block_mask = create_block_mask(mask_mod, B, None, Q, KV, device=q.device)
    return flex_attention(q, k, v, block_mask=block_mask)  # type: ignore[return-value]
