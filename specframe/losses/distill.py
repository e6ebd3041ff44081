"""Distillation to the target's distribution: a divergence between the target's p and the drafter's q per slot.

Slot k of a block predicts the token at anchor + k; the target's distribution for that same token is p (its
logits at position anchor + k - 1, already aligned by the module as `SlotChunk.target_logits`). Every term here
averages a per-slot divergence D(p, q) over the supervised slots of the global batch:

| entry         | D(p, q)                                         |
| ------------- | ----------------------------------------------- |
| `forward_kl`  | KL(p || q) = Σ p (log p - log q)                |
| `reverse_kl`  | KL(q || p) = Σ q (log q - log p)                |
| `jsd`         | ½ KL(p || m) + ½ KL(q || m), m = (p + q) / 2     |
| `tv`          | 1 - Σ min(p, q) (= 1 - acceptance rate of speculative sampling)  |
| `lk_alpha`    | -log Σ min(p, q)                                |
| `lk_lambda`   | λ KL(p || q) + (1 - λ) TV, λ = exp(-η sg[Σ min(p, q)])  |

They are registered with `divergence=True` metadata: the contract tests check that such a term is ~0 when the
drafter's logits equal the target's and > 0 otherwise. Options shared by all of them (`DistillConfig`):

- `temperature` T divides both the target's and the drafter's logits (p and q are compared at the temperature
  the target will be served at). The loss is not rescaled by T².
- `top_k` keeps only the target's k most likely tokens and renormalises p over them (what a top-k logits cache
  can store). The drafter's q stays a full softmax, except for `reverse_kl`, where q is renormalised over the
  same k tokens too (KL(q || p) is infinite wherever p = 0 and q > 0).

How much probability the top-k keeps is a figure worth watching (top-64 of a 150k vocabulary keeps about 92%):
each term accumulates it, and `pop_metrics()` returns `{"topk_mass": mean kept mass over supervised slots}`
since the previous call (empty without `top_k`). The module logs whatever a term's `pop_metrics` returns as
`train/<metric>/<term label>`. Calls made while autograd recomputes a checkpointed chunk during backward are
not counted, so each slot counts once.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import Tensor

from specframe.interfaces import LossValue, SlotChunk
from specframe.losses.registry import LOSS_TERMS

# Keeps log(Σ min(p, q)) finite if the two distributions share (numerically) no mass.
_TINY = 1e-30


@dataclass(kw_only=True)
class DistillConfig:
    temperature: float = 1.0
    """Divides the target's and the drafter's logits before comparing them (1.0: the raw distributions)."""
    top_k: int | None = None
    """Use only the target's top-k tokens, p renormalised over them (None: the whole vocabulary)."""

    def __post_init__(self) -> None:
        if not self.temperature > 0:
            raise ValueError(f"temperature must be > 0, got {self.temperature}")
        if self.top_k is not None and (isinstance(self.top_k, bool) or self.top_k < 1):
            raise ValueError(f"top_k must be None or an integer >= 1, got {self.top_k}")


@dataclass(kw_only=True)
class LKLambdaConfig(DistillConfig):
    eta: float = 3.0
    """λ = exp(-eta · sg[α]) with α = Σ min(p, q): KL dominates while acceptance is low, TV once it is high."""

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.eta < 0:
            raise ValueError(f"eta must be >= 0, got {self.eta}")


@dataclass(frozen=True)
class SlotDistributions:
    """The two distributions of every slot of a chunk, in log space; logp is -inf outside the target's top-k."""

    logp: Tensor  # [n, K-1, V] target log-probabilities (renormalised over the top-k when top_k is set)
    logq: Tensor  # [n, K-1, V] drafter log-probabilities (full softmax)
    support: Tensor | None  # [n, K-1, V] bool, the target's top-k tokens; None without top_k
    kept_mass: Tensor | None  # [n, K-1] target probability mass in the top-k before renormalising


def slot_distributions(chunk: SlotChunk, cfg: DistillConfig) -> SlotDistributions:
    """Target and drafter log-distributions of a chunk at `cfg.temperature`, the target cut to its top-k."""
    if chunk.target_logits is None:
        raise RuntimeError("this loss term needs target logits, but none were computed for the chunk")
    T = cfg.temperature
    logq = chunk.log_probs if T == 1.0 else torch.log_softmax(chunk.logits.float() / T, dim=-1)
    tl = chunk.target_logits.detach().float() / T  # the target is frozen: never send it a gradient
    if cfg.top_k is None or cfg.top_k >= tl.shape[-1]:
        logp = chunk.target_log_probs.detach() if T == 1.0 else torch.log_softmax(tl, dim=-1)
        return SlotDistributions(logp=logp, logq=logq, support=None, kept_mass=None)
    full = torch.log_softmax(tl, dim=-1)
    idx = tl.topk(cfg.top_k, dim=-1).indices
    support = torch.zeros_like(tl, dtype=torch.bool).scatter_(-1, idx, True)
    logp = torch.log_softmax(tl.masked_fill(~support, float("-inf")), dim=-1)
    kept = full.gather(-1, idx).exp().sum(-1)
    return SlotDistributions(logp=logp, logq=logq, support=support, kept_mass=kept)


# -- per-slot divergences: [n, K-1, V] log-distributions -> [n, K-1] -----------------------------------------
def kl(logp: Tensor, logq: Tensor) -> Tensor:
    """KL(p || q) per slot; tokens with p = 0 contribute 0 (their log p may be -inf)."""
    p = logp.exp()
    zero = p == 0
    return (p * (logp.masked_fill(zero, 0.0) - logq.masked_fill(zero, 0.0))).sum(-1)


def overlap(logp: Tensor, logq: Tensor) -> Tensor:
    """Σ_v min(p_v, q_v): the probability that speculative sampling accepts a draft token drawn from q."""
    return torch.minimum(logp.exp(), logq.exp()).sum(-1)


def total_variation(logp: Tensor, logq: Tensor) -> Tensor:
    return 1.0 - overlap(logp, logq)


def jensen_shannon(logp: Tensor, logq: Tensor) -> Tensor:
    logm = torch.logaddexp(logp, logq) - torch.log(torch.tensor(2.0, device=logp.device))
    return 0.5 * kl(logp, logm) + 0.5 * kl(logq, logm)


def lk_alpha(logp: Tensor, logq: Tensor) -> Tensor:
    return -overlap(logp, logq).clamp(min=_TINY).log()


def lk_lambda(logp: Tensor, logq: Tensor, eta: float) -> Tensor:
    alpha = overlap(logp, logq)
    lam = torch.exp(-eta * alpha.detach())
    return lam * kl(logp, logq) + (1.0 - lam) * (1.0 - alpha)


class _DistillTerm:
    """Shared body of the distillation terms: average a per-slot divergence over supervised slots."""

    requires: ClassVar[frozenset[str]] = frozenset({"target_logits"})

    def __init__(self, cfg: DistillConfig):
        self.cfg = cfg
        self._mass_sum = 0.0
        self._mass_count = 0

    def divergence(self, d: SlotDistributions) -> Tensor:  # [n, K-1]
        raise NotImplementedError

    def __call__(self, chunk: SlotChunk) -> LossValue:
        d = slot_distributions(chunk, self.cfg)
        m = chunk.mask & chunk.block_valid.unsqueeze(-1)
        div = self.divergence(d).masked_fill(~m, 0.0)
        if d.kept_mass is not None and not _in_backward():
            self._mass_sum += float(d.kept_mass[m].sum())
            self._mass_count += int(m.sum())
        return LossValue(div.sum(), m.sum().float())

    def pop_metrics(self) -> dict[str, float]:
        """Mean kept top-k mass over the supervised slots seen since the last call (empty without top_k)."""
        out = {"topk_mass": self._mass_sum / self._mass_count} if self._mass_count else {}
        self._mass_sum, self._mass_count = 0.0, 0
        return out


def _in_backward() -> bool:
    """True while autograd runs backward (activation checkpointing recomputes the chunk's terms there)."""
    task_id: Callable[[], int] | None = getattr(torch._C, "_current_graph_task_id", None)
    return task_id is not None and task_id() != -1


@LOSS_TERMS.register("forward_kl", config=DistillConfig, divergence=True)
class ForwardKLLoss(_DistillTerm):
    """Forward KL(p || q) to the target's distribution, mean over supervised slots (classic distillation)."""

    def divergence(self, d: SlotDistributions) -> Tensor:
        return kl(d.logp, d.logq)


@LOSS_TERMS.register("reverse_kl", config=DistillConfig, divergence=True)
class ReverseKLLoss(_DistillTerm):
    """Reverse KL(q || p) to the target's distribution, mean over supervised slots (mode seeking)."""

    def divergence(self, d: SlotDistributions) -> Tensor:
        logq = d.logq
        if d.support is not None:  # KL(q || p) is infinite off p's support: compare on the top-k only
            logq = torch.log_softmax(logq.masked_fill(~d.support, float("-inf")), dim=-1)
        return kl(logq, d.logp)


@LOSS_TERMS.register("jsd", config=DistillConfig, divergence=True)
class JensenShannonLoss(_DistillTerm):
    """Jensen-Shannon divergence between the target's p and the drafter's q, mean over supervised slots."""

    def divergence(self, d: SlotDistributions) -> Tensor:
        return jensen_shannon(d.logp, d.logq)


@LOSS_TERMS.register("tv", config=DistillConfig, divergence=True)
class TotalVariationLoss(_DistillTerm):
    """Total variation 1 - Σ min(p, q): one minus the acceptance rate of speculative sampling, per slot."""

    def divergence(self, d: SlotDistributions) -> Tensor:
        return total_variation(d.logp, d.logq)


@LOSS_TERMS.register("lk_alpha", config=DistillConfig, divergence=True)
class LKAlphaLoss(_DistillTerm):
    """LK^α = -log Σ min(p, q): negative log acceptance rate per slot, mean over supervised slots."""

    def divergence(self, d: SlotDistributions) -> Tensor:
        return lk_alpha(d.logp, d.logq)


@LOSS_TERMS.register("lk_lambda", config=LKLambdaConfig, divergence=True)
class LKLambdaLoss(_DistillTerm):
    """LK^λ = λ KL(p || q) + (1 - λ) TV with λ = exp(-η sg[acceptance rate]), mean over supervised slots."""

    cfg: LKLambdaConfig

    def divergence(self, d: SlotDistributions) -> Tensor:
        return lk_lambda(d.logp, d.logq, self.cfg.eta)
