"""The method's invariants (method.md §3), one test each: the bugs that silently ruin acceptance.

Shifted labels, context visible up to and including the anchor, causal in-block attention, overlapping anchors
leaking into each other, and "number of anchors" meaning something other than "per sequence". Each test uses
the block-diffusion drafter on the tiny target's spec.
"""
from __future__ import annotations

import pytest
import torch

from specframe.data.anchors import sample_anchors
from specframe.drafters.attention import block_visibility, masked_attention
from specframe.drafters.block_diffusion import BlockDiffusionConfig, BlockDiffusionDrafter
from specframe.interfaces import AlignedBatch
from specframe.losses import LOSS_TERMS
from specframe.losses.objective import Objective, WeightedTerm, slot_targets

K = 4
S = 16


@pytest.fixture
def drafter(tiny_spec) -> BlockDiffusionDrafter:
    torch.manual_seed(0)
    d = BlockDiffusionDrafter(BlockDiffusionConfig(num_layers=2, block_size=K, attention="sdpa", mask_token="learned"), tiny_spec).eval()
    return d


def inputs(spec, B: int = 1, N: int = 1, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    context = torch.randn(B, S, len(spec.tap_layers) * spec.hidden_size, generator=g)
    anchor_embeds = torch.randn(B, N, spec.hidden_size, generator=g)
    return context, torch.ones(B, S, dtype=torch.bool), anchor_embeds


def run(drafter, context, context_valid, anchor_embeds, anchors, anchor_valid=None):
    if anchor_valid is None:
        anchor_valid = torch.ones_like(anchors, dtype=torch.bool)
    with torch.no_grad():
        return drafter(context, context_valid, anchor_embeds, anchors, anchor_valid)


# -- labels: slot k of a block anchored at a is supervised with the token at a + k (no shift) ------
def test_slot_targets_are_not_shifted() -> None:
    B, N = 2, 3
    ids = torch.arange(B * S).view(B, S) * 10  # token value encodes its position
    anchors = torch.tensor([[0, 5, 6], [2, 9, 14]])
    view = AlignedBatch(input_ids=ids, labels=ids, loss_mask=torch.ones(B, S, dtype=torch.bool),
                        context=torch.zeros(B, S, 1), context_valid=torch.ones(B, S, dtype=torch.bool),
                        anchors=anchors, anchor_valid=torch.ones(B, N, dtype=torch.bool))
    pos, labels, mask = slot_targets(view, K)
    for b in range(B):
        for n in range(N):
            a = int(anchors[b, n])
            for k in range(1, K):
                if a + k < S:
                    assert int(pos[b, n, k - 1]) == a + k
                    assert int(labels[b, n, k - 1]) == int(ids[b, a + k])
                    assert bool(mask[b, n, k - 1])
                else:  # beyond the sequence: never supervised
                    assert not bool(mask[b, n, k - 1])


def test_loss_is_minimised_by_predicting_the_token_at_anchor_plus_k() -> None:
    """End to end through the objective: drafts equal to input_ids[a + k] give zero CE and full τ; drafts of
    input_ids[a + k + 1] (the classic shift bug) or input_ids[a + k - 1] do not."""
    B, N, V = 2, 3, 32
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(0, V, (B, S), generator=g)
    loss_mask = torch.zeros(B, S, dtype=torch.bool)
    loss_mask[:, 3:] = True
    anchors = torch.tensor([[3, 6, 10], [4, 5, 11]])
    view = AlignedBatch(input_ids=ids, labels=ids, loss_mask=loss_mask, context=torch.zeros(B, S, 1),
                        context_valid=torch.ones(B, S, dtype=torch.bool), anchors=anchors,
                        anchor_valid=torch.ones(B, N, dtype=torch.bool))
    obj = Objective([WeightedTerm("ce", 1.0, LOSS_TERMS.build("ce", {})),
                     WeightedTerm("chain", 1.0, LOSS_TERMS.build("chain", {}))])

    def loss_for(shift: int):
        pos = (anchors.unsqueeze(-1) + torch.arange(K) + shift).clamp(0, S - 1)
        tokens = ids.gather(1, pos.flatten(1)).view(B, N, K)
        hidden = torch.nn.functional.one_hot(tokens, V).float() * 30  # head = identity: logits = hidden
        parts = obj.parts(hidden, view, head=lambda h: h)
        loss, per_term = obj.combine(parts, parts.denominators)
        return float(per_term["ce"]), float(parts.correct.sum()), int(parts.mask.sum())

    ce0, correct0, supervised = loss_for(0)
    assert ce0 < 1e-6 and correct0 == supervised  # every supervised slot is right
    for shift in (1, -1):
        ce, correct, _ = loss_for(shift)
        assert ce > 1.0 and correct < supervised / 2


# -- context: strictly before the anchor ---------------------------------------------------------
@pytest.mark.parametrize("anchor", [1, 6, S - 2])
def test_context_at_or_after_the_anchor_is_invisible(drafter, tiny_spec, anchor: int) -> None:
    context, cv, emb = inputs(tiny_spec)
    anchors = torch.tensor([[anchor]])
    out = run(drafter, context, cv, emb, anchors)
    later = context.clone()
    later[:, anchor:] += torch.randn_like(later[:, anchor:]) * 5
    torch.testing.assert_close(run(drafter, later, cv, emb, anchors), out, atol=1e-6, rtol=0)
    at = context.clone()
    at[:, anchor] += 5.0  # `<=` instead of `<` would let the block see its own anchor's features
    torch.testing.assert_close(run(drafter, at, cv, emb, anchors), out, atol=1e-6, rtol=0)


@pytest.mark.parametrize("anchor", [1, 6, S - 2])
def test_context_just_before_the_anchor_is_visible(drafter, tiny_spec, anchor: int) -> None:
    context, cv, emb = inputs(tiny_spec)
    anchors = torch.tensor([[anchor]])
    out = run(drafter, context, cv, emb, anchors)
    before = context.clone()
    before[:, anchor - 1] += 5.0
    changed = (run(drafter, before, cv, emb, anchors) - out).abs().amax(dim=-1)  # [1, 1, K]
    assert (changed > 1e-4).all()  # every slot, the anchor slot included, sees position anchor - 1


def test_padding_context_is_invisible(drafter, tiny_spec) -> None:
    context, cv, emb = inputs(tiny_spec)
    cv[:, 2] = False
    anchors = torch.tensor([[8]])
    out = run(drafter, context, cv, emb, anchors)
    context[:, 2] += 5.0
    torch.testing.assert_close(run(drafter, context, cv, emb, anchors), out, atol=1e-6, rtol=0)


# -- inside a block: bidirectional -----------------------------------------------------------------
def test_in_block_attention_is_bidirectional(drafter, tiny_spec) -> None:
    context, cv, emb = inputs(tiny_spec)
    anchors = torch.tensor([[6]])
    valid = torch.ones(1, 1, dtype=torch.bool)
    with torch.no_grad():
        kv = drafter.context_kv(drafter.fuse_context(context), torch.arange(S).unsqueeze(0))
        blocks = drafter.block_inputs(emb)
        mask = (anchors, valid, cv, K)
        out = drafter.run_layers(blocks, anchors, kv, mask)
        torch.testing.assert_close(out, run(drafter, context, cv, emb, anchors))  # same path as forward
        for k in range(1, K):
            pert = blocks.clone()
            pert[:, :, k] += torch.randn_like(pert[:, :, k])
            diff = (drafter.run_layers(pert, anchors, kv, mask) - out).abs().amax(dim=-1)[0, 0]  # [K]
            assert (diff[:k] > 1e-4).all(), f"slot {k}'s input does not reach earlier slots: causal attention?"


# -- overlapping anchors: no leak between blocks ---------------------------------------------------
def test_overlapping_blocks_do_not_leak(drafter, tiny_spec) -> None:
    context, cv, emb = inputs(tiny_spec, N=3)
    anchors = torch.tensor([[5, 6, 8]])  # blocks [5..8], [6..9], [8..11] overlap
    together = run(drafter, context, cv, emb, anchors)
    for n in range(3):
        alone = run(drafter, context, cv, emb[:, n:n + 1], anchors[:, n:n + 1])
        torch.testing.assert_close(together[:, n:n + 1], alone, atol=1e-5, rtol=1e-5)
    # perturb the middle block's input: its neighbours are unchanged, it is not
    pert = emb.clone()
    pert[:, 1] += 3.0
    moved = run(drafter, context, cv, pert, anchors)
    torch.testing.assert_close(moved[:, [0, 2]], together[:, [0, 2]], atol=1e-6, rtol=0)
    assert (moved[:, 1] - together[:, 1]).abs().max() > 1e-3


def test_invalid_block_does_not_affect_valid_ones(drafter, tiny_spec) -> None:
    context, cv, emb = inputs(tiny_spec, N=2)
    anchors = torch.tensor([[7, 7]])
    valid = torch.tensor([[True, False]])
    out = run(drafter, context, cv, emb, anchors, valid)
    alone = run(drafter, context, cv, emb[:, :1], anchors[:, :1])
    torch.testing.assert_close(out[:, :1], alone, atol=1e-5, rtol=1e-5)
    assert torch.isfinite(out).all()


# -- "number of anchors" is per sequence -----------------------------------------------------------
def _mask(rows: list[str]) -> torch.Tensor:
    return torch.tensor([[c == "1" for c in r] for r in rows])


def test_num_anchors_is_per_sequence() -> None:
    loss_mask = _mask(["0011111111111111", "0000001111111111", "0111111111111110"])
    anchors, valid = sample_anchors(loss_mask, 5, torch.Generator().manual_seed(0))
    assert anchors.shape == (3, 5) and valid.shape == (3, 5)
    assert valid.sum(1).tolist() == [5, 5, 5]  # N per sequence, not N for the batch


def test_anchors_only_at_eligible_positions_sorted_without_replacement() -> None:
    loss_mask = _mask(["0011100111110000", "1101101101111111"])
    for seed in range(20):
        anchors, valid = sample_anchors(loss_mask, 4, torch.Generator().manual_seed(seed))
        for b in range(2):
            picked = anchors[b][valid[b]].tolist()
            assert picked == sorted(picked) and len(set(picked)) == len(picked)
            for a in picked:
                assert loss_mask[b, a] and loss_mask[b, a + 1], (b, a)


def test_anchors_cover_every_eligible_position_uniformly() -> None:
    loss_mask = _mask(["0111111111100000"])  # eligible: 1..9
    counts = torch.zeros(S)
    for seed in range(400):
        anchors, valid = sample_anchors(loss_mask, 3, torch.Generator().manual_seed(seed))
        counts.index_add_(0, anchors[valid], torch.ones(int(valid.sum())))
    eligible = counts[1:10]
    assert counts.sum() == 1200 and counts[0] == 0 and counts[10:].sum() == 0
    assert eligible.min() > 0.7 * 1200 / 9 and eligible.max() < 1.3 * 1200 / 9


def test_anchors_reproducible_with_a_seeded_generator() -> None:
    loss_mask = torch.rand(4, 64, generator=torch.Generator().manual_seed(1)) > 0.2
    a1 = sample_anchors(loss_mask, 8, torch.Generator().manual_seed(7))
    a2 = sample_anchors(loss_mask, 8, torch.Generator().manual_seed(7))
    a3 = sample_anchors(loss_mask, 8, torch.Generator().manual_seed(8))
    assert torch.equal(a1[0], a2[0]) and torch.equal(a1[1], a2[1])
    assert not torch.equal(a1[0], a3[0])


def test_fewer_valid_anchors_when_fewer_eligible() -> None:
    loss_mask = _mask(["0000000000000111", "0000000000000000", "0000011000000000"])
    anchors, valid = sample_anchors(loss_mask, 4, torch.Generator().manual_seed(0))
    assert valid.sum(1).tolist() == [2, 0, 1]
    assert anchors[0][valid[0]].tolist() == [13, 14] and anchors[2][valid[2]].tolist() == [5]
    assert valid[0, :2].all() and not valid[0, 2:].any()  # valid anchors come first


# -- attention backends and the visibility rule ----------------------------------------------------
def naive_visibility(anchors, anchor_valid, context_valid, block_size):
    B, N = anchors.shape
    Sx = context_valid.shape[1]
    out = torch.zeros(B, N * block_size, Sx + N * block_size, dtype=torch.bool)
    for b in range(B):
        for n in range(N):
            for k in range(block_size):
                q = n * block_size + k
                for j in range(Sx):
                    out[b, q, j] = bool(anchor_valid[b, n]) and bool(context_valid[b, j]) and j < int(anchors[b, n])
                for m in range(N):
                    for k2 in range(block_size):
                        out[b, q, Sx + m * block_size + k2] = m == n
    return out


def random_blocks(seed: int, B: int = 2, N: int = 5):
    g = torch.Generator().manual_seed(seed)
    anchors = torch.randint(0, S - 1, (B, N), generator=g).sort(dim=1).values
    anchors[:, 1] = anchors[:, 0]  # a duplicate anchor: two identical overlapping blocks
    anchor_valid = torch.rand(B, N, generator=g) > 0.3
    context_valid = torch.ones(B, S, dtype=torch.bool)
    context_valid[1, S - 4:] = False  # padding
    return anchors, anchor_valid, context_valid


@pytest.mark.parametrize("seed", range(3))
def test_block_visibility_matches_naive_loops(seed: int) -> None:
    anchors, anchor_valid, context_valid = random_blocks(seed)
    got = block_visibility(anchors, anchor_valid, context_valid, K)
    assert torch.equal(got, naive_visibility(anchors, anchor_valid, context_valid, K))


@pytest.mark.filterwarnings("ignore:flex_attention called without torch.compile")
@pytest.mark.parametrize("seed", range(2))
def test_sdpa_and_flex_backends_agree(seed: int) -> None:
    anchors, anchor_valid, context_valid = random_blocks(seed)
    B, N = anchors.shape
    g = torch.Generator().manual_seed(seed)
    q = torch.randn(B, 2, N * K, 8, generator=g)
    k = torch.randn(B, 2, S + N * K, 8, generator=g)
    v = torch.randn(B, 2, S + N * K, 8, generator=g)
    dense = masked_attention(q, k, v, anchors, anchor_valid, context_valid, K, backend="sdpa")
    flex = masked_attention(q, k, v, anchors, anchor_valid, context_valid, K, backend="flex")
    torch.testing.assert_close(flex, dense, atol=1e-5, rtol=1e-5)


@pytest.mark.filterwarnings("ignore:flex_attention called without torch.compile")
def test_drafter_outputs_agree_across_backends(drafter, tiny_spec) -> None:
    anchors, anchor_valid, context_valid = random_blocks(5)
    B, N = anchors.shape
    context, _, emb = inputs(tiny_spec, B=B, N=N)
    dense = run(drafter, context, context_valid, emb, anchors, anchor_valid)
    drafter.backend = "flex"
    flex = run(drafter, context, context_valid, emb, anchors, anchor_valid)
    torch.testing.assert_close(flex, dense, atol=1e-5, rtol=1e-5)
