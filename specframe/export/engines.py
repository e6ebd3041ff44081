"""What each serving engine can take from a block_diffusion drafter, and the recipe setting that fixes the rest.

    vllm       q/k norm; frozen-row or learned mask (mask_embedding.pt); full or reduced draft vocabulary
    sglang     q/k norm; frozen-row mask only; full vocabulary only (argmax over the target's head)
    reference  dflash.DFlashDraftModel / dflash_generate: as sglang
"""
from __future__ import annotations

from typing import Any

ENGINES = ("vllm", "sglang", "reference")


def engine_issues(engine: str, drafter: Any, vocab: Any) -> list[str]:
    """Why `engine` would not compute what `drafter` computes; each names the recipe setting that would fix it."""
    if engine not in ENGINES:
        raise ValueError(f"unknown engine {engine!r}; choose one of {list(ENGINES)}")
    issues = []
    if not getattr(getattr(drafter, "cfg", None), "qk_norm", False):
        issues.append(f"{engine} applies a per-head q/k RMSNorm in every drafter layer, and this drafter was "
                      f"trained without one (drafter.qk_norm: false): it would be served as a different function. "
                      f"Retrain (or fine-tune) with drafter.qk_norm: true")
    if getattr(drafter, "mask_kind", None) == "learned" and engine != "vllm":
        issues.append(f"{engine} embeds the mask token with the target's own frozen row and has no place for the "
                      f"learned mask vector of this drafter (drafter.mask_token: learned). Train with "
                      f"drafter.mask_token: frozen_row (or auto), or export with --engine vllm "
                      f"(it reads mask_embedding.pt)")
    if vocab is not None and vocab.reduced and engine != "vllm":
        issues.append(f"{engine} drafts with the target's full LM head and cannot take a reduced draft vocabulary "
                      f"(drafter.draft_vocab_size: {vocab.size}). Train with drafter.draft_vocab_size: null, or "
                      f"export with --engine vllm (draft_vocab_size, lm_head.weight and d2t)")
    return issues
