"""Where drafts come from during decoding: a trained block drafter, or an oracle that knows the answer.

A draft source sees the target's tapped features of every committed position strictly before the anchor
(`start` with the prompt's, `extend` with each step's) and returns, for a block anchored at position `a`,
logits over the target vocabulary for slots 1..B-1 (positions a+1..a+B-1).
"""
from __future__ import annotations

from typing import Protocol

import torch
from torch import Tensor, nn

from specframe.decoding.small_batch import small_batch_linear
from specframe.vocab import DraftVocab


class DraftSource(Protocol):
    def start(self, features: Tensor) -> None:
        """Forget everything; `features` [1, n, F] are the target features of positions 0..n-1."""
        ...

    def extend(self, features: Tensor) -> None:
        """Append the features [1, m, F] of the next m committed positions."""
        ...

    def draft(self, anchor_token: int, anchor_pos: int, block_size: int) -> Tensor:
        """[block_size - 1, V] float32 logits over the target vocabulary for slots 1..B-1."""
        ...


class BlockDrafterSource:
    """A block drafter (`fuse_context`, `context_kv`, `block_inputs`, `run_layers`) with a context K/V cache.

    Only context keys/values are cached (fused features of positions before the anchor); the block's are
    recomputed every step, as method.md §2 says. The anchor embedding, the mask embedding (when the drafter uses
    a spare row of the target's table) and the LM head are the target's, frozen.
    """

    def __init__(self, drafter: nn.Module, target: nn.Module, vocab: DraftVocab | None = None):
        self.drafter = drafter
        self.target = target
        self.vocab = vocab
        self.kv: list[tuple[Tensor, Tensor]] = []
        self.length = 0
        self.dtype = next(drafter.parameters()).dtype
        self.device = next(drafter.parameters()).device
        mask_id = getattr(drafter, "mask_token_id", None)
        self.mask_embed = None if mask_id is None else target.embed(torch.tensor(mask_id, device=self.device))
        weight = target.lm_head_weight
        self.head_weight = vocab.restrict_rows(weight) if vocab is not None else weight
        self.vocab_size = int(weight.shape[0])

    def start(self, features: Tensor) -> None:
        self.kv, self.length = [], 0
        self.extend(features)

    def extend(self, features: Tensor) -> None:
        m = features.shape[1]
        if m == 0:
            return
        ctx = self.drafter.fuse_context(features.to(self.device))
        positions = torch.arange(self.length, self.length + m, device=self.device).unsqueeze(0)
        new = self.drafter.context_kv(ctx, positions)
        if self.kv:
            self.kv = [(torch.cat([k, nk], dim=2), torch.cat([v, nv], dim=2)) for (k, v), (nk, nv) in zip(self.kv, new)]
        else:
            self.kv = list(new)
        self.length += m

    def draft(self, anchor_token: int, anchor_pos: int, block_size: int) -> Tensor:
        if anchor_pos != self.length:
            raise RuntimeError(f"draft context holds positions 0..{self.length - 1} but the anchor is at {anchor_pos}: "
                               "the context must end right before the anchor")
        anchor = self.target.embed(torch.tensor([[anchor_token]], device=self.device)).to(self.dtype)  # [1, 1, H]
        blocks = self.drafter.block_inputs(anchor, self.mask_embed)  # [1, 1, K_train, H]
        blocks = resize_block(blocks, block_size).to(self.dtype)
        hidden = self.drafter.run_layers(blocks, torch.tensor([[anchor_pos]], device=self.device), self.kv, None)
        h = hidden[0, 0, 1:]  # [B-1, H]: slot 0 (the anchor) is never a prediction
        logits = small_batch_linear(h.to(self.head_weight.dtype), self.head_weight).float()
        if self.vocab is None or not self.vocab.reduced:
            return logits
        full = logits.new_full((logits.shape[0], self.vocab_size), float("-inf"))
        full[:, self.vocab.ids] = logits  # tokens outside the draft vocabulary can never be drafted
        return full


def resize_block(blocks: Tensor, block_size: int) -> Tensor:
    """[.., K, H] block of [anchor, mask, ...] -> [.., block_size, H]: cut, or extend with more mask slots."""
    K = blocks.shape[-2]
    if block_size <= K:
        return blocks[..., :block_size, :]
    extra = blocks[..., -1:, :].expand(*blocks.shape[:-2], block_size - K, blocks.shape[-1])
    return torch.cat([blocks, extra], dim=-2)


class OracleDraftSource:
    """Drafts the target's own greedy continuation (computed beforehand): the ceiling of any drafter.

    Beyond the end of the known continuation it drafts token `fill`, which the target will rarely confirm.
    """

    def __init__(self, sequence: list[int], vocab_size: int, device: torch.device | str = "cpu", fill: int = 0):
        self.sequence = list(sequence)  # prompt + the target's greedy continuation
        self.vocab_size = vocab_size
        self.device = torch.device(device)
        self.fill = fill

    def start(self, features: Tensor) -> None:
        pass

    def extend(self, features: Tensor) -> None:
        pass

    def draft(self, anchor_token: int, anchor_pos: int, block_size: int) -> Tensor:
        seq = self.sequence
        ids = [seq[p] if p < len(seq) else self.fill for p in range(anchor_pos + 1, anchor_pos + block_size)]
        logits = torch.full((block_size - 1, self.vocab_size), float("-inf"), device=self.device)
        logits[torch.arange(block_size - 1, device=self.device), torch.tensor(ids, device=self.device)] = 0.0
        return logits
