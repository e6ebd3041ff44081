"""LightningDataModule for chat data: load, split (seeded, held-out conversations), render, pad."""
from __future__ import annotations

import functools
from typing import Any

import lightning as L
import torch
from torch.utils.data import DataLoader, Dataset, DistributedSampler

from specframe.config import DataConfig
from specframe.data.rows import load_rows, split_conversations  # noqa: F401  (split_conversations: public here too)



class RenderedDataset(Dataset):
    """Conversations rendered to token ids and assistant-only loss masks (plus cached target features, if any)."""

    def __init__(self, rows: list[dict[str, Any]], features: Any = None):
        self.rows = rows
        self.features = features  # a FeatureCache: row tensors are read from disk when the row is fetched

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, i: int) -> dict[str, Any]:
        row = self.rows[i]
        return row if self.features is None else {**row, **self.features.row(row["index"])}


class EpochShuffle(DistributedSampler):
    """Seeded shuffle whose order depends only on (seed, epoch), not on how many epochs this process has run.

    Lightning calls `set_epoch` at every epoch start, resumed runs included, so a run resumed from a checkpoint
    sees the same batches as an uninterrupted one (a DataLoader's own generator would restart its sequence).

    Data-parallel: rank r of `world` takes items r, r + world, ... of the same order (the tail that does not
    divide is dropped), so that step k's batches of all ranks together are step k's batch of one process with
    world x the batch size. It is a DistributedSampler so that Lightning uses it as it is instead of wrapping
    it in its own shuffling DistributedSampler (which would reorder the global batch).
    """

    def __init__(self, n: int, seed: int, rank: int = 0, world: int = 1):  # noqa: D107  (no super(): no dataset)
        if not 0 <= rank < world:
            raise ValueError(f"rank {rank} outside [0, {world})")
        self.n, self.seed, self.epoch = n, seed, 0
        self.rank, self.world = rank, world
        self.num_replicas = world  # what DistributedSampler users read
        self.skip = 0  # samples of this rank's share of the epoch consumed before an interruption (set on resume)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return (self.n if self.world == 1 else self.n // self.world) - self.skip

    def __iter__(self):
        g = torch.Generator().manual_seed(self.seed * 100_003 + self.epoch)
        order = torch.randperm(self.n, generator=g).tolist()
        if self.world > 1:
            order = order[: self.n - self.n % self.world][self.rank :: self.world]
        skip, self.skip = self.skip, 0  # only the resumed epoch starts late
        return iter(order[skip:])


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
    if "topk_ids" in rows[0]:  # cached top-k target logits; padding gets a finite dummy distribution
        k = rows[0]["topk_ids"].shape[-1]
        topk_ids = torch.arange(k).expand(B, S, k).clone()
        topk_values = torch.zeros(B, S, k)
        for i, r in enumerate(rows):
            topk_ids[i, : r["topk_ids"].shape[0]] = r["topk_ids"]
            topk_values[i, : r["topk_values"].shape[0]] = r["topk_values"]
        batch["target_topk_ids"], batch["target_topk_values"] = topk_ids, topk_values
    return batch


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
        self.features: Any = None  # a FeatureCache when data.features_cache is set
        pad = tokenizer.pad_token_id
        self.pad_id = int(pad if pad is not None else tokenizer.eos_token_id)

    def setup(self, stage: str | None = None) -> None:
        if self.train_rows:
            return
        self.train_rows, self.val_rows, self.val_conversations = load_rows(
            self.cfg, self.tokenizer, self.cfg.split_seed_for(self.seed), self._conversations)
        if self.cfg.features_cache:
            from specframe.data.feature_cache import FeatureCache

            self.features = FeatureCache(self.cfg.features_cache)
            self.features.check_rows(self.train_rows + self.val_rows, self.tokenizer)

    def _loader(self, rows: list[dict[str, Any]], shuffle: bool) -> DataLoader:
        trainer = getattr(self, "trainer", None)  # attached by Lightning: the data-parallel rank and world size
        rank, world = (trainer.global_rank, trainer.world_size) if trainer is not None else (0, 1)
        sampler = EpochShuffle(len(rows), self.seed, rank, world) if shuffle else None
        return DataLoader(RenderedDataset(rows, self.features), batch_size=self.cfg.batch_size, sampler=sampler,
                          num_workers=self.cfg.num_workers, collate_fn=functools.partial(pad_collate, pad_id=self.pad_id),
                          drop_last=shuffle and len(rows) > self.cfg.batch_size)

    def train_dataloader(self) -> DataLoader:
        return self._loader(self.train_rows, shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader(self.val_rows, shuffle=False)
