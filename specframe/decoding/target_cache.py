"""The target's KV cache during speculative decoding: create it, run the model on it, keep the committed part.

After a verify forward the cache holds every verified token; only the anchor and the accepted drafts were
committed. For a chain they are a prefix of what was verified, and `DynamicCache.crop` (which takes a
**negative** count of tokens to drop in transformers 5) removes the rest. For a tree the winner's nodes are
scattered, so the keys and values of exactly those positions are index-selected: they were computed with the
winner's own ancestors only (the tree mask) and at their true positions, so they equal what a plain causal
forward over the committed tokens would have cached, without paying for that forward.
"""
from __future__ import annotations

import inspect
from functools import lru_cache
from typing import Any

import torch
from torch import Tensor, nn


def new_cache(model: nn.Module) -> Any:
    """An empty transformers DynamicCache for `model`."""
    from transformers import DynamicCache

    try:
        return DynamicCache(config=model.config)
    except TypeError:  # older transformers take no config
        return DynamicCache()


@lru_cache(maxsize=None)
def _cache_kwarg(cls: type) -> str:
    # transformers 5 renamed past_key_values to cache (the old name warns); older releases only know the old one.
    return "cache" if "cache" in inspect.signature(cls.forward).parameters else "past_key_values"


def forward_with_cache(model: nn.Module, input_ids: Tensor, positions: Tensor, cache: Any,
                       attention_mask: Tensor | None = None, hidden_states: bool = False,
                       last_logits_only: bool = False) -> Any:
    """One forward of the causal LM over `input_ids` [1, n] at `positions` [1, n], appending to `cache`.

    `last_logits_only` computes the head for the last position only (a prefill needs no more: [n, V] logits of
    a long prompt would cost memory for nothing).
    """
    kwargs: dict[str, Any] = {_cache_kwarg(type(model)): cache}
    if last_logits_only:
        kwargs["logits_to_keep"] = 1
    return model(input_ids=input_ids, position_ids=positions, attention_mask=attention_mask, use_cache=True,
                 output_hidden_states=hidden_states, **kwargs)


def cache_length(cache: Any) -> int:
    return int(cache.get_seq_length())


def tree_attention_mask(ancestors: Tensor, past: int, dtype: torch.dtype, device: torch.device) -> Tensor:
    """[1, 1, W, past + W] additive mask: every cached position, then the tree's ancestor pattern.

    Additive (0 / dtype min) rather than boolean so that eager and SDPA attention read it the same way.
    """
    W = ancestors.shape[0]
    allowed = torch.cat([torch.ones(W, past, dtype=torch.bool), ancestors], dim=1).to(device)
    mask = torch.zeros(W, past + W, dtype=dtype, device=device)
    mask.masked_fill_(~allowed, torch.finfo(dtype).min)
    return mask.view(1, 1, W, past + W)


def keep_positions(cache: Any, past: int, keep: list[int]) -> None:
    """Keep the first `past` cached positions and, of the ones after them, those at offsets `keep` (in order).

    Args:
        cache: a transformers DynamicCache that holds `past` + W positions after a verify of width W.
        past: positions cached before the verify.
        keep: offsets (0 = the anchor) of the committed tokens within the verify.
    """
    total = cache_length(cache)
    if keep == list(range(len(keep))):  # a prefix: drop the tail
        drop = total - past - len(keep)
        if drop:
            cache.crop(-drop)
        return
    layers = getattr(cache, "layers", None)
    if layers is None:
        raise TypeError(f"{type(cache).__name__}: tree verification needs a transformers DynamicCache with .layers")
    for layer in layers:
        if getattr(layer, "is_sliding", False):
            raise ValueError("tree verification (num_drafts > 1) does not support sliding-window attention "
                             "layers; use eval.strategy single for this target")
        if not getattr(layer, "is_initialized", True) or layer.keys is None or layer.keys.numel() == 0:
            continue
        idx = torch.cat([torch.arange(past), past + torch.tensor(keep, dtype=torch.long)]).to(layer.keys.device)
        layer.keys = layer.keys.index_select(-2, idx)
        layer.values = layer.values.index_select(-2, idx)
