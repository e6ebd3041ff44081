"""Speculative decoding at temperature 0 must reproduce the target's own greedy output token for token."""
from __future__ import annotations

import pytest
import torch

from specframe.decoding.strategies import DECODE_STRATEGIES
from specframe.decoding.drafts import BlockDrafterSource
from specframe.decoding.engine import SpeculativeDecoder, build_strategy, target_only_decode
from specframe.decoding.target_cache import forward_with_cache, keep_positions, new_cache, tree_attention_mask
from specframe.decoding.tree import build_tree
from specframe.errors import ConfigError
from specframe.vocab import DraftVocab

from decoding_setup import BLOCK, NEW_TOKENS

# Every decode strategy, with its default options: a new one gets the losslessness tests for free.
STRATEGIES = DECODE_STRATEGIES.names()


class ShiftedOracle:
    """Drafts the greedy continuation shifted by one token id: every draft is wrong."""

    def __init__(self, sequence, vocab_size):
        self.sequence, self.vocab_size = sequence, vocab_size

    def start(self, features):
        pass

    def extend(self, features):
        pass

    def draft(self, anchor_token, anchor_pos, block_size):
        logits = torch.full((block_size - 1, self.vocab_size), float("-inf"))
        for j, p in enumerate(range(anchor_pos + 1, anchor_pos + block_size)):
            tok = self.sequence[p] if p < len(self.sequence) else 0
            logits[j, (tok + 1) % self.vocab_size] = 0.0
        return logits


def decoder(kind, target, prompt, reference, strategy, random_drafter, fitted_drafter, block_size=BLOCK,
            eos_ids=frozenset()):
    if kind == "random":
        return SpeculativeDecoder.for_drafter(target, random_drafter, None, strategy, block_size=block_size,
                                              eos_ids=set(eos_ids))
    if kind == "fitted":
        return SpeculativeDecoder.for_drafter(target, fitted_drafter, None, strategy, block_size=block_size,
                                              eos_ids=set(eos_ids))
    if kind == "oracle":
        return SpeculativeDecoder.oracle(target, prompt + reference, strategy, block_size=block_size,
                                         eos_ids=set(eos_ids))
    return SpeculativeDecoder(target, ShiftedOracle(prompt + reference, target.vocab_size), strategy,
                              block_size=block_size, eos_ids=set(eos_ids))


@pytest.mark.parametrize("strategy", STRATEGIES)
@pytest.mark.parametrize("kind", ["random", "fitted", "oracle", "always_wrong"])
def test_greedy_output_is_the_targets(kind, strategy, target, prompts, references, random_drafter, fitted_drafter):
    taus = []
    for prompt, ref in zip(prompts, references):
        dec = decoder(kind, target, prompt, ref, strategy, random_drafter, fitted_drafter)
        out = dec.generate(prompt, max_new_tokens=NEW_TOKENS)
        assert out.tokens == ref
        assert sum(s.committed for s in out.steps) == len(out.tokens) - 1  # the prefill gives the first token
        taus.append(out.tau)
        accepted = [s.accepted for s in out.steps]
        if kind == "oracle":
            assert all(a == BLOCK - 1 for a in accepted)
        if kind == "always_wrong":
            assert all(a == 0 for a in accepted)
    if kind == "fitted":  # partly right: multi-token acceptance, but not everywhere
        assert 1.5 < sum(taus) / len(taus) < BLOCK - 0.2


@pytest.mark.parametrize("strategy", STRATEGIES)
@pytest.mark.parametrize("block_size", [2, 3, 6])
def test_block_size_set_at_evaluation(block_size, strategy, target, prompts, references, fitted_drafter):
    dec = SpeculativeDecoder.for_drafter(target, fitted_drafter, None, strategy, block_size=block_size,
                                         eos_ids=set())
    out = dec.generate(prompts[0], max_new_tokens=NEW_TOKENS)
    assert out.tokens == references[0]
    assert max(s.accepted for s in out.steps) >= 1
    assert all(len(s.draft) == block_size - 1 for s in out.steps)


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_eos_inside_a_block(strategy, target, prompts, references):
    prompt, ref = prompts[1], references[1]
    # The oracle's steps commit tokens 1..4, 5..8, ... (the prefill gives token 0): pick as EOS a token that
    # first appears before the last token of a step, so that step must be cut right after it.
    idx = next(i for i, tok in enumerate(ref) if i >= 2 and ref.index(tok) == i and i % BLOCK != 0)
    eos = {ref[idx]}
    base = target_only_decode(target, prompt, max_new_tokens=NEW_TOKENS, eos_ids=eos)
    assert base.tokens == ref[: idx + 1] and base.stop_reason == "eos"
    out = SpeculativeDecoder.oracle(target, prompt + ref, strategy, block_size=BLOCK,
                                    eos_ids=eos).generate(prompt, max_new_tokens=NEW_TOKENS)
    assert out.tokens == base.tokens and out.stop_reason == "eos"
    last = out.steps[-1]
    assert last.accepted == BLOCK - 1 and last.committed < BLOCK  # cut right after the EOS


@pytest.mark.parametrize("strategy", STRATEGIES)
@pytest.mark.parametrize("max_new", [1, 2, 7, 9])
def test_max_new_tokens_exact(max_new, strategy, target, prompts, references):
    prompt, ref = prompts[0], references[0]
    out = SpeculativeDecoder.oracle(target, prompt + ref, strategy, block_size=BLOCK,
                                    eos_ids=set()).generate(prompt, max_new_tokens=max_new)
    assert out.tokens == ref[:max_new] and out.stop_reason == "max_new_tokens"
    # token 0 from the prefill, then full steps of BLOCK tokens, the last one cut to what fits
    expected = [BLOCK] * ((max_new - 1) // BLOCK) + ([(max_new - 1) % BLOCK] if (max_new - 1) % BLOCK else [])
    assert [s.committed for s in out.steps] == expected
    assert out.tau == (None if max_new == 1 else (max_new - 1) / len(expected))


def test_verify_width(target, prompts, references, fitted_drafter):
    single = SpeculativeDecoder.for_drafter(target, fitted_drafter, eos_ids=set())
    assert {s.width for s in single.generate(prompts[0], max_new_tokens=NEW_TOKENS).steps} == {BLOCK}
    K = 3
    multi = SpeculativeDecoder.for_drafter(target, fitted_drafter, None, {"name": "self_selection", "num_drafts": K},
                                           eos_ids=set())
    widths = [s.width for s in multi.generate(prompts[0], max_new_tokens=NEW_TOKENS).steps]
    assert max(widths) <= 1 + K * (BLOCK - 1) and max(widths) > BLOCK
    # The oracle's K identical chains merge into one path: no wider than a single draft.
    oracle = SpeculativeDecoder.oracle(target, prompts[0] + references[0], {"name": "self_selection", "num_drafts": K},
                                       block_size=BLOCK, eos_ids=set())
    assert {s.width for s in oracle.generate(prompts[0], max_new_tokens=NEW_TOKENS).steps} == {BLOCK}


def test_self_selection_accepts_at_least_single(target, prompts, fitted_drafter):
    single = SpeculativeDecoder.for_drafter(target, fitted_drafter, eos_ids=set())
    multi = SpeculativeDecoder.for_drafter(target, fitted_drafter, None, {"name": "self_selection", "num_drafts": 4},
                                           eos_ids=set())
    for prompt in prompts:
        a = single.generate(prompt, max_new_tokens=NEW_TOKENS)
        b = multi.generate(prompt, max_new_tokens=NEW_TOKENS)
        assert b.tokens == a.tokens
        assert len(b.steps) <= len(a.steps)  # chain 0 is the argmax draft, so no step accepts less


def test_tree_cache_keeps_exactly_the_committed_tokens(target, prompts):
    """Verifying two chains under the tree mask and keeping the second one's path leaves the same K/V as a
    plain causal forward over the committed tokens."""
    prompt = prompts[0]
    P = len(prompt)
    model = target.model
    chains = torch.tensor([[5, 6, 7], [8, 9, 10]])
    anchor = 65
    tree = build_tree(anchor, chains)
    assert tree.width == 7 and not tree.is_chain
    with torch.no_grad():
        cache = new_cache(model)
        forward_with_cache(model, torch.tensor([prompt[:-1]]), torch.arange(P - 1).unsqueeze(0), cache)
        mask = tree_attention_mask(tree.ancestor_mask(), P - 1, torch.float32, torch.device("cpu"))
        out = forward_with_cache(model, torch.tensor([tree.tokens]), (P - 1 + torch.tensor(tree.depths)).unsqueeze(0),
                                 cache, mask)
        path = tree.chain_nodes[1, :3].tolist()  # anchor, 8, 9
        keep_positions(cache, P - 1, path)
        ref_cache = new_cache(model)
        ref_ids = prompt[:-1] + [anchor, 8, 9]
        ref = forward_with_cache(model, torch.tensor([ref_ids]), torch.arange(len(ref_ids)).unsqueeze(0), ref_cache)
    for layer, ref_layer in zip(cache.layers, ref_cache.layers):
        torch.testing.assert_close(layer.keys, ref_layer.keys, rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(layer.values, ref_layer.values, rtol=1e-5, atol=1e-5)
    # and the tree's logits for that chain are the causal forward's
    torch.testing.assert_close(out.logits[0, path], ref.logits[0, -3:], rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("split", [1, 5])
def test_drafter_cache_equals_training_forward(split, target, prompts, references, fitted_drafter):
    """The engine's cached-context drafter call equals the training forward (same anchor, context < anchor)."""
    ids = torch.tensor([prompts[0] + references[0]])
    with torch.no_grad():
        hidden = target(ids, torch.ones_like(ids)).hidden
        anchor = len(prompts[0]) + 6
        source = BlockDrafterSource(fitted_drafter, target)
        source.start(hidden[:, : anchor - split])
        source.extend(hidden[:, anchor - split: anchor])  # incremental, as steps append features
        engine_logits = source.draft(int(ids[0, anchor]), anchor, BLOCK)
        anchors = torch.tensor([[anchor]])
        h = fitted_drafter(hidden, torch.ones(ids.shape, dtype=torch.bool), target.embed(ids[:, anchor:anchor + 1]),
                           anchors, torch.ones(1, 1, dtype=torch.bool))
        train_logits = torch.nn.functional.linear(h[0, 0, 1:], target.lm_head_weight)
    torch.testing.assert_close(engine_logits, train_logits, rtol=1e-4, atol=1e-4)


def test_target_only_matches_hf_generate(target, prompts, references):
    with torch.no_grad():
        out = target.model.generate(torch.tensor([prompts[2]]), max_new_tokens=NEW_TOKENS, do_sample=False,
                                    eos_token_id=None, pad_token_id=0)
    assert out[0, len(prompts[2]):].tolist() == references[2]


def test_strategies_have_their_own_registry():
    from specframe.alignment import ALIGNMENTS

    decode = DECODE_STRATEGIES.names()
    assert not set(decode) & set(ALIGNMENTS.names())  # test-time strategies are not training alignments
    assert {"single", "self_selection"} <= set(decode)
    assert build_strategy({"name": "self_selection", "num_drafts": 2}).cfg.num_drafts == 2
    with pytest.raises(ConfigError, match="training-time"):
        build_strategy("target_greedy_labels")
    with pytest.raises(ConfigError, match="Did you mean 'self_selection'"):
        build_strategy("self_selectoin")
    with pytest.raises(ConfigError, match="num_drafts"):
        build_strategy({"name": "self_selection", "num_drafts": 0})


def test_reduced_draft_vocabulary(target, prompts, references, fitted_drafter):
    """With a reduced draft vocabulary the drafter only proposes its ids (mapped back to target ids)."""
    vocab = DraftVocab(target.vocab_size, 64)
    vocab.set_ids(torch.arange(100, 164))
    dec = SpeculativeDecoder.for_drafter(target, fitted_drafter, vocab, "single", eos_ids=set())
    out = dec.generate(prompts[0], max_new_tokens=NEW_TOKENS)
    assert out.tokens == references[0]
    assert all(100 <= tok < 164 for s in out.steps for tok in s.draft)
