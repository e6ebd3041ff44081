"""Building blocks of drafter bodies: RMSNorm, rotary embedding, SwiGLU, and the KV-injection layer."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from specframe.drafters.attention import Backend, full_attention, masked_attention


class RMSNorm(nn.Module):
    def __init__(self, dim: int, eps: float = 1e-6):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: Tensor) -> Tensor:
        dtype = x.dtype
        x = x.float()
        x = x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps)
        return (self.weight * x).to(dtype)


def rope_cos_sin(positions: Tensor, head_dim: int, theta: float) -> tuple[Tensor, Tensor]:
    """cos, sin of shape [*positions.shape, head_dim] for absolute positions (HF `rotate_half` layout)."""
    inv = 1.0 / (theta ** (torch.arange(0, head_dim, 2, device=positions.device, dtype=torch.float32) / head_dim))
    ang = positions.float().unsqueeze(-1) * inv
    emb = torch.cat([ang, ang], dim=-1)
    return emb.cos(), emb.sin()


def apply_rope(x: Tensor, cos: Tensor, sin: Tensor) -> Tensor:
    """x: [B, h, T, d]; cos/sin: [B, T, d]."""
    cos, sin = cos.unsqueeze(1).to(x.dtype), sin.unsqueeze(1).to(x.dtype)
    x1, x2 = x.chunk(2, dim=-1)
    return x * cos + torch.cat([-x2, x1], dim=-1) * sin


class SwiGLU(nn.Module):
    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.gate_proj = nn.Linear(dim, hidden, bias=False)
        self.up_proj = nn.Linear(dim, hidden, bias=False)
        self.down_proj = nn.Linear(hidden, dim, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        return self.down_proj(F.silu(self.gate_proj(x)) * self.up_proj(x))


class InjectionAttention(nn.Module):
    """Attention whose keys/values are [k_proj(ctx) ; k_proj(block)] (DFlash KV injection).

    With `qk_norm`, queries and keys get a per-head RMSNorm before the rotary embedding (Qwen3 style), as the
    serving engines and the reference DFlash implementation compute it.
    """

    def __init__(self, dim: int, heads: int, kv_heads: int, head_dim: int, eps: float, qk_norm: bool):
        super().__init__()
        self.heads, self.kv_heads, self.head_dim = heads, kv_heads, head_dim
        self.q_proj = nn.Linear(dim, heads * head_dim, bias=False)
        self.k_proj = nn.Linear(dim, kv_heads * head_dim, bias=False)
        self.v_proj = nn.Linear(dim, kv_heads * head_dim, bias=False)
        self.o_proj = nn.Linear(heads * head_dim, dim, bias=False)
        self.q_norm = RMSNorm(head_dim, eps) if qk_norm else None
        self.k_norm = RMSNorm(head_dim, eps) if qk_norm else None

    def _split(self, x: Tensor, h: int) -> Tensor:
        B, T, _ = x.shape
        return x.view(B, T, h, self.head_dim).transpose(1, 2)

    def _keys(self, x: Tensor, cos: Tensor, sin: Tensor) -> Tensor:
        k = self._split(self.k_proj(x), self.kv_heads)
        return apply_rope(self.k_norm(k) if self.k_norm is not None else k, cos, sin)

    def context_kv(self, ctx: Tensor, cos: Tensor, sin: Tensor) -> tuple[Tensor, Tensor]:
        """Keys (normed, rotated) and values of context features [B, S, dim] -> [B, kv_heads, S, d] each."""
        return self._keys(ctx, cos, sin), self._split(self.v_proj(ctx), self.kv_heads)

    def forward(self, h: Tensor, ctx_kv: tuple[Tensor, Tensor], cos: Tensor, sin: Tensor,
                mask: tuple[Tensor, Tensor, Tensor, int] | None, backend: Backend) -> Tensor:
        q = self._split(self.q_proj(h), self.heads)
        q = apply_rope(self.q_norm(q) if self.q_norm is not None else q, cos, sin)
        kb = self._keys(h, cos, sin)
        vb = self._split(self.v_proj(h), self.kv_heads)
        k = torch.cat([ctx_kv[0].to(kb.dtype), kb], dim=2)
        v = torch.cat([ctx_kv[1].to(vb.dtype), vb], dim=2)
        rep = self.heads // self.kv_heads
        if rep > 1:
            k, v = k.repeat_interleave(rep, dim=1), v.repeat_interleave(rep, dim=1)
        if mask is None:
            att = full_attention(q, k, v, backend)
        else:
            att = masked_attention(q, k, v, *mask, backend=backend)
        B, _, T, _ = att.shape
        return self.o_proj(att.transpose(1, 2).reshape(B, T, -1))


class InjectionLayer(nn.Module):
    """Pre-norm decoder layer around InjectionAttention; parameter names follow the DFlash (Qwen3) format."""

    def __init__(self, dim: int, heads: int, kv_heads: int, head_dim: int, mlp_hidden: int, eps: float,
                 qk_norm: bool = True):
        super().__init__()
        self.input_layernorm = RMSNorm(dim, eps)
        self.self_attn = InjectionAttention(dim, heads, kv_heads, head_dim, eps, qk_norm)
        self.post_attention_layernorm = RMSNorm(dim, eps)
        self.mlp = SwiGLU(dim, mlp_hidden)

    def context_kv(self, ctx: Tensor, cos: Tensor, sin: Tensor) -> tuple[Tensor, Tensor]:
        return self.self_attn.context_kv(ctx, cos, sin)

    def forward(
        self,
        x: Tensor,  # [B, T, dim] block hidden states, T = N*K
        ctx_kv: tuple[Tensor, Tensor],  # context keys/values of this layer
        cos: Tensor,
        sin: Tensor,  # [B, T, d] rotary of the block positions
        mask: tuple[Tensor, Tensor, Tensor, int] | None,  # (anchors, anchor_valid, context_valid, K); None: see all
        backend: Backend,
    ) -> Tensor:
        x = x + self.self_attn(self.input_layernorm(x), ctx_kv, cos, sin, mask, backend)
        return x + self.mlp(self.post_attention_layernorm(x))
