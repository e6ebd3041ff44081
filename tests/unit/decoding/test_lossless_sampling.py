"""At temperature > 0 the engine's output must follow the target's distribution exactly (statistical test).

A 4-token-vocabulary random target makes every 4-token continuation enumerable: its exact probability comes
from one batched forward. A random drafter (acceptance well below 1) drafts blocks of 3, so the 4 new tokens
go through the prefill, accepted drafts, rejections with residual resampling and the bonus token.
"""
from __future__ import annotations

import itertools

import pytest
import torch
from decoding_setup import make_drafter, single_thread
from transformers import LlamaConfig, LlamaForCausalLM

from specframe.decoding.strategies import DECODE_STRATEGIES
from specframe.decoding.strategies.single import SingleDraft
from specframe.decoding.engine import SpeculativeDecoder
from specframe.interfaces import Selection
from specframe.targets.hf import HFTarget

V, LENGTH, T = 4, 4, 1.0
PROMPT = [0, 1, 2]
# Every decode strategy, with its default options: a new one gets this test for free.
STRATEGIES = DECODE_STRATEGIES.names()


@pytest.fixture(scope="module")
def small_vocab_target():
    config = LlamaConfig(vocab_size=V, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                         num_key_value_heads=1, intermediate_size=64, max_position_embeddings=64,
                         tie_word_embeddings=True, initializer_range=0.3, bos_token_id=None, eos_token_id=None,
                         pad_token_id=None)
    with torch.random.fork_rng():
        torch.manual_seed(0)
        model = LlamaForCausalLM(config)
    return HFTarget(model, None, "vocab4", (0, 1))


@pytest.fixture(scope="module")
def exact(small_vocab_target):
    seqs = torch.tensor(list(itertools.product(range(V), repeat=LENGTH)))
    ids = torch.cat([torch.tensor(PROMPT).expand(len(seqs), -1), seqs], dim=1)
    with torch.no_grad():
        logp = torch.log_softmax(small_vocab_target.model(ids).logits.double() / T, -1)
    P = len(PROMPT)
    seq_logp = logp[:, P - 1: P - 1 + LENGTH].gather(-1, seqs.unsqueeze(-1)).squeeze(-1).sum(1)
    return {tuple(s): float(p) for s, p in zip(seqs.tolist(), seq_logp.exp())}


def chi_square_pvalue(counts: dict, exact: dict, n: int) -> float:
    """Pearson's test; outcomes expected fewer than 5 times are pooled into one bin."""
    bins = [(counts.get(k, 0), n * p) for k, p in exact.items() if n * p >= 5]
    rare = [k for k, p in exact.items() if n * p < 5]
    bins.append((sum(counts.get(k, 0) for k in rare), n * sum(exact[k] for k in rare)))
    stat = sum((c - e) ** 2 / e for c, e in bins)
    return float(torch.special.gammaincc(torch.tensor((len(bins) - 1) / 2, dtype=torch.float64),
                                         torch.tensor(stat / 2)))


def sample_counts(decoder: SpeculativeDecoder, n: int) -> tuple[dict, float]:
    counts: dict[tuple[int, ...], int] = {}
    accepted = []
    with single_thread():
        for seed in range(n):
            out = decoder.generate(PROMPT, max_new_tokens=LENGTH, temperature=T, seed=seed)
            counts[tuple(out.tokens)] = counts.get(tuple(out.tokens), 0) + 1
            accepted += [s.accepted for s in out.steps]
    return counts, sum(accepted) / len(accepted)


@pytest.mark.parametrize("n", [400, pytest.param(4000, marks=pytest.mark.slow)])
@pytest.mark.parametrize("strategy", STRATEGIES)
def test_sampled_output_has_the_targets_distribution(strategy, n, small_vocab_target, exact):
    drafter = make_drafter(small_vocab_target, block_size=3, seed=1)
    decoder = SpeculativeDecoder.for_drafter(small_vocab_target, drafter, None, strategy, eos_ids=set())
    counts, mean_accepted = sample_counts(decoder, n)
    assert 0.1 < mean_accepted < 1.9  # drafts are neither always accepted nor always rejected
    p = chi_square_pvalue(counts, exact, n)
    assert p > 1e-3, f"{strategy}: sampled continuations differ from the target's distribution (p = {p:.2e})"


@pytest.mark.slow
def test_a_biased_rule_fails_the_same_test(small_vocab_target, exact):
    class AcceptAll(SingleDraft):
        def select(self, proposal, target_logits, temperature, generator):
            D = proposal.candidates.shape[1]
            p = torch.softmax(target_logits[0, D].double() / temperature, -1)
            return Selection(chain=0, accepted=D, next_token=int(torch.multinomial(p, 1, generator=generator)))

    drafter = make_drafter(small_vocab_target, block_size=3, seed=1)
    decoder = SpeculativeDecoder.for_drafter(small_vocab_target, drafter, None, AcceptAll(), eos_ids=set())
    counts, _ = sample_counts(decoder, 4000)
    assert chi_square_pvalue(counts, exact, 4000) < 1e-6
