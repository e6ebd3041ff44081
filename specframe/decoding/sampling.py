"""The verification rules of speculative decoding, over K candidate chains that share the anchor.

Both rules keep decoding lossless:

* temperature 0 (:func:`greedy_select`): a chain's draft at slot d stands while it equals the target's argmax
  after the previous ones; the chain with the longest accepted prefix wins (the first one on ties), and the
  target's argmax after that prefix is committed with it. The output is the target's greedy output.
* temperature > 0 (:func:`rejection_select`): multi-candidate recursive rejection sampling (SpecInfer's
  multi-step speculative sampling). At depth d the candidates are the slot-d drafts of the chains that agree
  with the accepted prefix, in chain order; candidate x is accepted with probability min(1, r(x)/q(x)), where r
  starts as the target's distribution p and becomes norm(max(0, r - q)) after each rejection; when all are
  rejected the token is sampled from r. With one chain this is standard speculative sampling. It is exact
  because those candidates are i.i.d. draws from q that nothing before depth d has looked at (chains are i.i.d.
  and each slot is sampled independently), so every round is ordinary speculative sampling of r against q.
"""
from __future__ import annotations

import torch
from torch import Tensor

from specframe.interfaces import Selection


def probabilities(logits: Tensor, temperature: float) -> Tensor:
    """softmax(logits / T) in float64 ([..., V]); float64 keeps residuals max(0, r - q) accurate."""
    return torch.softmax(logits.double() / temperature, dim=-1)


def sample(probs: Tensor, generator: torch.Generator | None) -> int:
    """One draw from a [V] distribution."""
    return int(torch.multinomial(probs, 1, generator=generator))


def greedy_select(candidates: Tensor, target_logits: Tensor) -> Selection:
    """Temperature 0: the chain with the longest prefix of drafts equal to the target's argmax.

    Args:
        candidates: [K, D] drafted token ids.
        target_logits: [K, D+1, V] the target's logits after 0..D drafts of each chain.
    """
    best = target_logits.argmax(-1)  # [K, D+1] (torch.argmax returns the first maximum, like greedy decoding)
    accepted = (candidates == best[:, :-1]).long().cumprod(dim=1).sum(dim=1)  # [K]
    k = int(accepted.argmax())  # first chain among the longest
    a = int(accepted[k])
    return Selection(chain=k, accepted=a, next_token=int(best[k, a]))


def rejection_select(candidates: Tensor, q: Tensor, target_logits: Tensor, temperature: float,
                     generator: torch.Generator | None) -> Selection:
    """Temperature > 0: multi-candidate recursive rejection sampling (see the module docstring).

    Args:
        candidates: [K, D] drafted ids; chain k's slot d must be an i.i.d. draw from q[d].
        q: [D, V] the per-slot proposal distribution.
        target_logits: [K, D+1, V] the target's logits after 0..D drafts of each chain.
        temperature: the target's sampling temperature (> 0).
        generator: the random source (on the logits' device).
    """
    K, D = candidates.shape
    cands = candidates.tolist()
    alive = list(range(K))  # chains whose drafts so far equal the accepted prefix, in chain order
    device = target_logits.device
    for d in range(D):
        r = probabilities(target_logits[alive[0], d], temperature)  # same context for every alive chain
        qd = q[d].to(device=device, dtype=torch.float64)
        chosen = None
        for k in alive:
            x = cands[k][d]
            u = float(torch.rand((), generator=generator, device=device, dtype=torch.float64))
            rx, qx = float(r[x]), float(qd[x])
            if u * qx < rx:  # u < r(x) / q(x), written without dividing
                chosen = x
                break
            residual = (r - qd).clamp_min(0.0)
            total = float(residual.sum())
            if total > 0:  # total == 0 only when r == q, where rejection has probability 0 anyway
                r = residual / total
        if chosen is None:
            return Selection(chain=alive[0], accepted=d, next_token=sample(r, generator))
        alive = [k for k in alive if cands[k][d] == chosen]
    p = probabilities(target_logits[alive[0], D], temperature)
    return Selection(chain=alive[0], accepted=D, next_token=sample(p, generator))
