"""The verification rules: exact at temperature > 0 (statistically), longest prefix at temperature 0.

A synthetic target whose next-token logits depend on the whole prefix stands in for a model, so that many
thousands of verify steps run in a second. One step commits the accepted drafts and the target's next token;
the rest of a fixed-length output is sampled from the target itself, as the next steps would do. The output's
distribution must be the target's: a chi-square test against the exact probabilities, with a fixed seed.
"""
from __future__ import annotations

import functools
import itertools

import pytest
import torch

from specframe.decoding.sampling import greedy_select, rejection_select
from specframe.interfaces import Selection

V, D, LENGTH, T = 3, 2, 3, 0.8


@functools.lru_cache(maxsize=None)
def target_logits_of(prefix: tuple[int, ...]) -> torch.Tensor:
    """Deterministic pseudo-random logits for any prefix (a stand-in for a model)."""
    g = torch.Generator().manual_seed(hash(prefix) % (2**31))
    return torch.randn(V, generator=g) * 1.5


def exact_distribution() -> dict[tuple[int, ...], float]:
    out = {}
    for seq in itertools.product(range(V), repeat=LENGTH):
        p = 1.0
        for i, tok in enumerate(seq):
            p *= float(torch.softmax(target_logits_of(seq[:i]) / T, -1)[tok])
        out[seq] = p
    return out


def chi_square_pvalue(counts: dict, exact: dict, n: int) -> float:
    """Pearson's test; outcomes expected fewer than 5 times are pooled into one bin (the test needs >= 5)."""
    bins = [(counts.get(k, 0), n * p) for k, p in exact.items() if n * p >= 5]
    rare = [k for k, p in exact.items() if n * p < 5]
    if rare:
        bins.append((sum(counts.get(k, 0) for k in rare), n * sum(exact[k] for k in rare)))
    stat = sum((c - e) ** 2 / e for c, e in bins)
    df = len(bins) - 1
    return float(torch.special.gammaincc(torch.tensor(df / 2, dtype=torch.float64), torch.tensor(stat / 2)))


def run_steps(select, K: int, n: int, seed: int = 0) -> dict:
    """n outputs of LENGTH tokens: one verify step with K chains, then plain target sampling."""
    g = torch.Generator().manual_seed(seed)
    q = torch.softmax(torch.randn(D, V, generator=g, dtype=torch.float64), -1)  # the drafter's (wrong) guess
    counts: dict[tuple[int, ...], int] = {}
    for _ in range(n):
        chains = torch.stack([torch.multinomial(q[d], K, replacement=True, generator=g) for d in range(D)], 1)
        logits = torch.stack([torch.stack([target_logits_of(tuple(chains[k, :d].tolist())) for d in range(D + 1)])
                              for k in range(K)])  # [K, D+1, V]
        sel: Selection = select(chains, q, logits, T, g)
        seq = chains[sel.chain, : sel.accepted].tolist() + [sel.next_token]
        while len(seq) < LENGTH:
            seq.append(int(torch.multinomial(torch.softmax(target_logits_of(tuple(seq)) / T, -1), 1, generator=g)))
        key = tuple(seq[:LENGTH])
        counts[key] = counts.get(key, 0) + 1
    return counts


@pytest.mark.parametrize("K", [1, 3])
def test_rejection_sampling_is_exact(K):
    n = 6000
    p = chi_square_pvalue(run_steps(rejection_select, K, n), exact_distribution(), n)
    assert p > 1e-3, f"output distribution differs from the target's (chi-square p = {p:.2e})"


def test_the_test_detects_a_wrong_rule():
    """Accepting every draft samples the drafter, not the target: the same test must reject it."""

    def accept_all(chains, q, logits, temperature, g):
        p = torch.softmax(logits[0, -1] / temperature, -1)
        return Selection(chain=0, accepted=chains.shape[1], next_token=int(torch.multinomial(p, 1, generator=g)))

    def no_residual(chains, q, logits, temperature, g):
        """Standard rule but resampling a rejected slot from p instead of norm(max(0, p - q))."""
        for d in range(chains.shape[1]):
            p = torch.softmax(logits[0, d].double() / temperature, -1)
            x = int(chains[0, d])
            if float(torch.rand((), generator=g, dtype=torch.float64)) >= min(1.0, float(p[x] / q[d, x])):
                return Selection(chain=0, accepted=d, next_token=int(torch.multinomial(p, 1, generator=g)))
        return accept_all(chains, q, logits, temperature, g)

    def stale_residual(chains, q, logits, temperature, g):
        """Multi-candidate rule that forgets to update the residual after each rejected candidate."""
        alive = list(range(chains.shape[0]))
        for d in range(chains.shape[1]):
            r = torch.softmax(logits[alive[0], d].double() / temperature, -1)
            chosen = next((int(chains[k, d]) for k in alive
                           if float(torch.rand((), generator=g, dtype=torch.float64)) * float(q[d, chains[k, d]])
                           < float(r[chains[k, d]])), None)
            if chosen is None:
                residual = (r - q[d]).clamp_min(0)
                return Selection(chain=alive[0], accepted=d,
                                 next_token=int(torch.multinomial(residual / residual.sum(), 1, generator=g)))
            alive = [k for k in alive if int(chains[k, d]) == chosen]
        p = torch.softmax(logits[alive[0], -1] / temperature, -1)
        return Selection(chain=alive[0], accepted=chains.shape[1], next_token=int(torch.multinomial(p, 1, generator=g)))

    n = 6000
    exact = exact_distribution()
    assert chi_square_pvalue(run_steps(accept_all, 1, n), exact, n) < 1e-6
    assert chi_square_pvalue(run_steps(no_residual, 1, n), exact, n) < 1e-6
    assert chi_square_pvalue(run_steps(stale_residual, 3, n), exact, n) < 1e-6


def test_greedy_select_longest_then_first():
    logits = torch.full((3, 4, 10), -1.0)
    best = [[1, 2, 3, 4], [1, 2, 5, 6], [1, 2, 3, 7]]  # target argmax after 0..3 drafts of each chain
    for k, row in enumerate(best):
        for d, tok in enumerate(row):
            logits[k, d, tok] = 1.0
    chains = torch.tensor([[1, 9, 9], [1, 2, 9], [1, 2, 3]])
    assert greedy_select(chains, logits) == Selection(chain=2, accepted=3, next_token=7)
    chains = torch.tensor([[1, 2, 9], [1, 2, 9], [0, 0, 0]])
    assert greedy_select(chains, logits) == Selection(chain=0, accepted=2, next_token=3)
    chains = torch.tensor([[0, 0, 0]] * 3)
    assert greedy_select(chains, logits) == Selection(chain=0, accepted=0, next_token=1)
