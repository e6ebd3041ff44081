"""The training objective: chunking, checkpointing and global normalisation change nothing but memory."""
from __future__ import annotations

from typing import ClassVar

import pytest
import torch
from torch import Tensor

from specframe.interfaces import AlignedBatch, LossValue, SlotChunk
from specframe.losses import LOSS_TERMS
from specframe.losses.objective import Objective, WeightedTerm, slot_targets

B, S, N, K, H, V = 4, 20, 3, 5, 8, 11


def paper_terms() -> list[WeightedTerm]:
    return [
        WeightedTerm("positional", 1.0, LOSS_TERMS.build("positional", {"gamma": 10})),
        WeightedTerm("first_error_focal", 0.3, LOSS_TERMS.build("first_error_focal", {"phi": 2.0})),
        WeightedTerm("chain", 40.0, LOSS_TERMS.build("chain", {})),
        WeightedTerm("ce", 1.0, LOSS_TERMS.build("ce", {})),
    ]


def make_view(seed: int = 0, b: int = B) -> AlignedBatch:
    """Random sequences whose loss mask is off on a prompt and on padding; anchors overlap and one is invalid."""
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(0, V, (b, S), generator=g)
    loss_mask = torch.zeros(b, S, dtype=torch.bool)
    valid = torch.ones(b, S, dtype=torch.bool)
    for i in range(b):
        start, end = 3 + i, S - 2 * i  # later rows are shorter (padding at the end)
        loss_mask[i, start:end] = True
        valid[i, end:] = False
    anchors = torch.stack([torch.randint(0, S - 3, (N,), generator=g).sort().values for _ in range(b)])
    anchor_valid = torch.rand(b, N, generator=g) > 0.2
    return AlignedBatch(input_ids=ids, labels=ids, loss_mask=loss_mask, context=torch.zeros(b, S, 1),
                        context_valid=valid, anchors=anchors, anchor_valid=anchor_valid)


def rows(view: AlignedBatch, sl: slice) -> AlignedBatch:
    return AlignedBatch(**{f: getattr(view, f)[sl] if getattr(view, f) is not None else None
                           for f in ("input_ids", "labels", "loss_mask", "context", "context_valid", "anchors",
                                     "anchor_valid", "target_logits")})


class Model(torch.nn.Module):
    """Stands in for drafter + head: hidden states and an LM head with parameters."""

    def __init__(self, b: int = B):
        super().__init__()
        g = torch.Generator().manual_seed(1)
        self.hidden = torch.nn.Parameter(torch.randn(b, N, K, H, generator=g))
        self.head = torch.nn.Linear(H, V, bias=False)
        with torch.no_grad():
            self.head.weight.copy_(torch.randn(V, H, generator=g))


def loss_and_grads(obj: Objective, model: Model, view: AlignedBatch) -> tuple[Tensor, dict, list[Tensor]]:
    model.zero_grad()
    parts = obj.parts(model.hidden, view, head=model.head)
    loss, per_term = obj.combine(parts, parts.denominators)
    loss.backward()
    return loss.detach(), {k: v.detach() for k, v in per_term.items()}, [p.grad.clone() for p in model.parameters()]


@pytest.mark.parametrize("chunk_blocks", [1, 3, 1000])
def test_chunked_equals_unchunked(chunk_blocks: int) -> None:
    view, model = make_view(), Model()
    ref = loss_and_grads(Objective(paper_terms(), chunk_blocks=B * N, checkpoint_chunks=False), model, view)
    got = loss_and_grads(Objective(paper_terms(), chunk_blocks=chunk_blocks, checkpoint_chunks=False), model, view)
    torch.testing.assert_close(got[0], ref[0])
    assert got[1].keys() == ref[1].keys()
    for k in ref[1]:
        torch.testing.assert_close(got[1][k], ref[1][k])
    for a, b in zip(got[2], ref[2]):
        torch.testing.assert_close(a, b)
    assert all(g.abs().sum() > 0 for g in ref[2])


@pytest.mark.parametrize("chunk_blocks", [2, 64])
def test_checkpointing_gives_the_same_gradient(chunk_blocks: int) -> None:
    view, model = make_view(1), Model()
    plain = loss_and_grads(Objective(paper_terms(), chunk_blocks=chunk_blocks, checkpoint_chunks=False), model, view)
    ckpt = loss_and_grads(Objective(paper_terms(), chunk_blocks=chunk_blocks, checkpoint_chunks=True), model, view)
    torch.testing.assert_close(ckpt[0], plain[0])
    for a, b in zip(ckpt[2], plain[2]):
        torch.testing.assert_close(a, b)


def test_slot_statistics_match_slot_targets() -> None:
    view, model = make_view(2), Model()
    parts = Objective(paper_terms(), chunk_blocks=2).parts(model.hidden, view, head=model.head)
    _, labels, mask = slot_targets(view, K)
    assert torch.equal(parts.mask, mask.reshape(B * N, K - 1))
    assert torch.equal(parts.block_valid, view.anchor_valid.reshape(-1))
    argmax = model.head(model.hidden[:, :, 1:]).argmax(-1).reshape(B * N, K - 1)
    assert torch.equal(parts.correct, (argmax == labels.reshape(B * N, K - 1)) & parts.mask)


def test_two_ranks_with_global_denominators_equal_one_rank() -> None:
    """Each rank normalises by the denominators summed over ranks and scales by world_size; DDP then averages
    the parameter gradients. That must equal one rank holding the whole batch."""
    view, model = make_view(3), Model()
    obj = Objective(paper_terms(), chunk_blocks=2)
    whole = loss_and_grads(obj, model, view)

    halves = [slice(0, 1), slice(1, B)]  # unequal halves: per-rank means would be wrong here
    parts = []
    for sl in halves:
        sub = Model(b=sl.stop - sl.start)
        sub.load_state_dict({"hidden": model.hidden.detach()[sl], "head.weight": model.head.weight.detach()})
        parts.append((sub, obj.parts(sub.hidden, rows(view, sl), head=sub.head)))
    global_den = sum(p.denominators for _, p in parts)  # the all-reduce
    losses, head_grads, hidden_grads = [], [], []
    for sub, p in parts:
        loss, _ = obj.combine(p, global_den, world_size=2)
        loss.backward()
        losses.append(loss.detach())
        head_grads.append(sub.head.weight.grad)
        hidden_grads.append(sub.hidden.grad)
    torch.testing.assert_close(sum(head_grads) / 2, whole[2][1])  # DDP's gradient average
    torch.testing.assert_close(torch.cat(hidden_grads) / 2, whole[2][0])
    torch.testing.assert_close(sum(losses) / 2, whole[0])


def test_term_with_empty_denominator_contributes_zero() -> None:
    view = make_view(4)
    view = AlignedBatch(**{**view.__dict__, "anchor_valid": torch.zeros(B, N, dtype=torch.bool)})
    model = Model()
    loss, per_term, grads = loss_and_grads(Objective(paper_terms()), model, view)
    assert float(loss) == 0.0 and all(float(v) == 0.0 for v in per_term.values())
    assert all(torch.isfinite(g).all() and g.abs().sum() == 0 for g in grads)


def test_weights_scale_terms() -> None:
    view, model = make_view(5), Model()
    obj = Objective(paper_terms())
    parts = obj.parts(model.hidden, view, head=model.head)
    total, per_term = obj.combine(parts, parts.denominators)
    expected = sum(wt.weight * per_term[wt.name] for wt in obj.terms)
    torch.testing.assert_close(total, expected)


def test_objective_needs_a_term() -> None:
    with pytest.raises(ValueError, match="at least one loss term"):
        Objective([])


class _RecordingTerm:
    """Needs target logits and records what it was given."""

    requires: ClassVar[frozenset[str]] = frozenset({"target_logits"})

    def __init__(self) -> None:
        self.seen: list[SlotChunk] = []

    def __call__(self, chunk: SlotChunk) -> LossValue:
        self.seen.append(chunk)
        return LossValue(chunk.logits.sum() * 0, chunk.mask.sum().float())


def test_target_logits_and_labels_reach_the_terms_aligned_with_slots() -> None:
    view = make_view(6)
    tl = torch.randn(B, S, V)
    view = AlignedBatch(**{**view.__dict__, "target_logits": tl})
    rec = _RecordingTerm()
    obj = Objective([WeightedTerm("rec", 1.0, rec)], chunk_blocks=5, checkpoint_chunks=False)
    assert obj.needs_target_logits
    model = Model()
    obj.parts(model.hidden, view, head=model.head, to_draft=lambda ids: ids + 100)
    got_tl = torch.cat([c.target_logits for c in rec.seen])
    got_labels = torch.cat([c.labels for c in rec.seen])
    for b in range(B):
        for n in range(N):
            for k in range(1, K):
                pos = int(view.anchors[b, n]) + k
                if pos < S and bool(view.anchor_valid[b, n]) and bool(view.loss_mask[b, pos]):
                    row = b * N + n
                    torch.testing.assert_close(got_tl[row, k - 1], tl[b, pos])  # p of the token at anchor + k
                    assert int(got_labels[row, k - 1]) == int(view.input_ids[b, pos]) + 100
