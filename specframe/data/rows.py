"""The rows of a recipe: load its conversations, split them (seeded, held-out last), render them to token ids.

One definition shared by training (`ChatDataModule`) and `specframe cache-features` (`feature_cache.build_cache`),
so that a cache holds exactly the rows a run trains on.
"""
from __future__ import annotations

import logging
import random
from typing import Any

from specframe.config import DataConfig

log = logging.getLogger(__name__)


def split_conversations(convs: list[Any], n_val: int, seed: int) -> tuple[list[Any], list[Any]]:
    """Seeded shuffle, then the last n_val conversations are held out."""
    order = list(range(len(convs)))
    random.Random(seed).shuffle(order)
    n_val = min(n_val, max(0, len(convs) - 1))
    train = [convs[i] for i in order[: len(order) - n_val]]
    val = [convs[i] for i in order[len(order) - n_val:]]
    return train, val


def render_all(tokenizer: Any, convs: list[Any], cfg: DataConfig, desc: str, offset: int = 0) -> list[dict[str, Any]]:
    from tqdm.auto import tqdm

    from specframe.data.chat import render_conversation

    rows = []
    for i, conv in enumerate(tqdm(convs, desc=desc, unit="conv", leave=False, disable=len(convs) < 200)):
        r = render_conversation(tokenizer, conv, cfg.max_length)
        if sum(r["loss_mask"]) >= cfg.min_supervised:
            rows.append({"input_ids": r["input_ids"], "loss_mask": r["loss_mask"], "index": offset + i})
    return rows


def exclude_benchmark_prompts(convs: list[Any]) -> list[Any]:
    """Drop conversations that contain an evaluation prompt (data.exclude_benchmarks), saying how many."""
    from specframe.data.decontaminate import benchmark_index, drop_benchmark_conversations

    index = benchmark_index()
    kept, dropped = drop_benchmark_conversations(convs, index)
    checked = ", ".join(f"{k} {v}" for k, v in index.sources.items()) or "none available"
    msg = (f"benchmark check: dropped {len(dropped)} of {len(convs)} conversations that contain an evaluation "
           f"prompt (prompt turns indexed: {checked})")
    if dropped:
        msg += "; e.g. " + ", ".join(hit for _, hit in dropped[:5])
    log.warning(msg)
    return kept


def load_rows(cfg: DataConfig, tokenizer: Any, seed: int, conversations: list[Any] | None = None
              ) -> tuple[list[dict[str, Any]], list[dict[str, Any]], list[Any]]:
    """Load, split (seeded) and render the data: (train rows, held-out rows, held-out conversations).

    The one definition of "the rows of a recipe", shared by training and `specframe cache-features`.
    """
    from specframe.data.sources import load_conversations

    convs = conversations
    if convs is None:
        convs = load_conversations(cfg.train, limit=cfg.limit, allow_partial=cfg.allow_partial)
    elif cfg.limit is not None:
        convs = convs[: cfg.limit]
    if cfg.answers:
        from specframe.data.answers import join_answers, resolve_answers

        convs = join_answers(list(convs), resolve_answers(cfg.answers), source=cfg.train)
    if cfg.exclude_benchmarks:
        convs = exclude_benchmark_prompts(list(convs))
    if len(convs) < 2:
        raise ValueError(f"data.train={cfg.train!r} gave {len(convs)} conversations; need at least 2")
    train, val = split_conversations(list(convs), cfg.val_conversations, seed)
    train_rows = render_all(tokenizer, train, cfg, "render train")
    val_rows = render_all(tokenizer, val, cfg, "render val", offset=len(train))
    if not train_rows:
        raise ValueError(f"no training conversation has >= {cfg.min_supervised} assistant tokens "
                         f"within max_length={cfg.max_length}")
    log.info("data: %d train / %d held-out conversations", len(train_rows), len(val_rows))
    return train_rows, val_rows, val
