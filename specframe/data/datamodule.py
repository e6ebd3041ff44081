"""LightningDataModule for chat data: load, split (seeded, held-out conversations), render, pad."""
from __future__ import annotations

import logging
import random
from typing import Any

import lightning as L
import torch
from torch.utils.data import DataLoader, Dataset

from specframe.config import DataConfig

log = logging.getLogger(__name__)


class RenderedDataset(Dataset):
    """Conversations rendered to token ids and assistant-only loss masks."""

    def __init__(self, rows: list[dict[str, Any]]):
        self.rows = rows

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, i: int) -> dict[str, Any]:
        return self.rows[i]


def pad_collate(rows: list[dict[str, Any]], pad_id: int) -> dict[str, torch.Tensor]:
    """Right-pad a list of rendered rows to the longest one."""
    S = max(len(r["input_ids"]) for r in rows)
    B = len(rows)
    ids = torch.full((B, S), pad_id, dtype=torch.long)
    mask = torch.zeros(B, S, dtype=torch.bool)
    attn = torch.zeros(B, S, dtype=torch.bool)
    for i, r in enumerate(rows):
        n = len(r["input_ids"])
        ids[i, :n] = torch.as_tensor(r["input_ids"])
        mask[i, :n] = torch.as_tensor(r["loss_mask"]).bool()
        attn[i, :n] = True
    batch = {"input_ids": ids, "loss_mask": mask, "attention_mask": attn,
             "index": torch.tensor([r["index"] for r in rows])}
    if "features" in rows[0]:  # precomputed target features (a features cache)
        F = rows[0]["features"].shape[-1]
        feats = torch.zeros(B, S, F, dtype=rows[0]["features"].dtype)
        for i, r in enumerate(rows):
            feats[i, : r["features"].shape[0]] = r["features"]
        batch["target_hidden"] = feats
    return batch


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


class ChatDataModule(L.LightningDataModule):
    """Chat conversations -> padded batches of input_ids, loss_mask (assistant tokens), attention_mask."""

    def __init__(self, cfg: DataConfig, tokenizer: Any, seed: int = 0, conversations: list[Any] | None = None):
        super().__init__()
        self.cfg = cfg
        self.tokenizer = tokenizer
        self.seed = seed
        self._conversations = conversations
        self.train_rows: list[dict[str, Any]] = []
        self.val_rows: list[dict[str, Any]] = []
        self.val_conversations: list[Any] = []
        pad = tokenizer.pad_token_id
        self.pad_id = int(pad if pad is not None else tokenizer.eos_token_id)

    def setup(self, stage: str | None = None) -> None:
        if self.train_rows:
            return
        from specframe.data.sources import load_conversations

        convs = self._conversations
        if convs is None:
            convs = load_conversations(self.cfg.train, limit=self.cfg.limit)
        elif self.cfg.limit is not None:
            convs = convs[: self.cfg.limit]
        if len(convs) < 2:
            raise ValueError(f"data.train={self.cfg.train!r} gave {len(convs)} conversations; need at least 2")
        train, val = split_conversations(list(convs), self.cfg.val_conversations, self.seed)
        self.val_conversations = val
        self.train_rows = render_all(self.tokenizer, train, self.cfg, "render train")
        self.val_rows = render_all(self.tokenizer, val, self.cfg, "render val", offset=len(train))
        if not self.train_rows:
            raise ValueError(f"no training conversation has >= {self.cfg.min_supervised} assistant tokens "
                             f"within max_length={self.cfg.max_length}")
        log.info("data: %d train / %d held-out conversations", len(self.train_rows), len(self.val_rows))

    def _loader(self, rows: list[dict[str, Any]], shuffle: bool) -> DataLoader:
        g = torch.Generator().manual_seed(self.seed)
        return DataLoader(RenderedDataset(rows), batch_size=self.cfg.batch_size, shuffle=shuffle, generator=g,
                          num_workers=self.cfg.num_workers, collate_fn=lambda r: pad_collate(r, self.pad_id),
                          drop_last=shuffle and len(rows) > self.cfg.batch_size)

    def train_dataloader(self) -> DataLoader:
        return self._loader(self.train_rows, shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader(self.val_rows, shuffle=False)
