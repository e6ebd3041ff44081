"""The expected-streak family: chain loss, SpecDiff-2 streak distillation and D-PACE as settings of one loss.

If slot i of a block is accepted independently with probability a_i, the expected accepted length is

    E = Σ_{m=1}^{B-1} Π_{i<=m} a_i,

and its gradient is dE = Σ_i w_i d(log a_i) with w_i = Σ_{m>=i} Π_{l<=m} a_l (the expected number of accepted
slots that depend on slot i). The family has four knobs (`StreakSetting`):

- acceptance: `label_prob` a_i = q_i(y_i), the drafter's probability of the label; or `overlap`
  a_i = Σ_v min(p_v, q_v), the acceptance rate of speculative sampling against the target's p (needs target
  logits);
- smoothing α: the product uses ã_i = (1 - α) a_i + α;
- detach_weights: False differentiates -E (built from ã) directly; True is the weighted per-slot loss
  Σ_i sg[w_i] · (-log a_i) with w_i built from ã (-log a_i is the CE for `label_prob`, LK^α for `overlap`);
- normalisation: `block_size` divides each block's value by B-1 and averages over blocks; `batch` averages
  each block's value over blocks; `weight_sum` divides by the sum of the (detached) weights w_i.

At α = 0 the detached loss has exactly the gradient of -E, so D-PACE without smoothing trains like streak
distillation. The product stops at the first slot that is unsupervised (or, for `label_prob`, whose label the
drafter's vocabulary lacks): the target could not accept past it. Blocks with no supervised slot are not
counted. The registered entries:

| entry                 | acceptance | detach | α   | normalisation | source |
| --------------------- | ---------- | ------ | --- | ------------- | ------ |
| `chain`               | label_prob | no     | 0   | block_size    | the paper (-R, R = E/(B-1)), in chain.py |
| `streak`              | label_prob | no     | 0   | batch         | SpecDiff-2 streak distillation (-E); all knobs settable |
| `streak_overlap`      | overlap    | no     | 0   | batch         | soft streak against the target's p; all knobs settable |
| `dpace`               | label_prob | yes    | 0.5 | batch         | D-PACE as its reference code (divides by batch size) |
| `dpace_no_smoothing`  | label_prob | yes    | 0   | batch         | ablation: same gradient as `streak` |
| `dpace_weight_norm`   | label_prob | yes    | 0.5 | weight_sum    | ablation: normalised by the weight sum |
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Literal

import torch
from torch import Tensor

from specframe.interfaces import LossValue, SlotChunk
from specframe.losses.registry import LOSS_TERMS
from specframe.losses.distill import DistillConfig, overlap, slot_distributions

Acceptance = Literal["label_prob", "overlap"]
Normalisation = Literal["block_size", "batch", "weight_sum"]
_TINY = 1e-30


def _check_knobs(smoothing: float, normalisation: str) -> None:
    if not 0.0 <= smoothing < 1.0:
        raise ValueError(f"smoothing must be in [0, 1), got {smoothing}")
    if normalisation not in ("block_size", "batch", "weight_sum"):
        raise ValueError(f"normalisation must be one of ['batch', 'block_size', 'weight_sum'], got {normalisation!r}")


@dataclass(frozen=True, kw_only=True)
class StreakSetting:
    """One member of the family (see the module docstring for what each knob means)."""

    acceptance: Acceptance = "label_prob"
    detach_weights: bool = False
    smoothing: float = 0.0
    normalisation: Normalisation = "batch"

    def __post_init__(self) -> None:
        _check_knobs(self.smoothing, self.normalisation)
        if self.acceptance not in ("label_prob", "overlap"):
            raise ValueError(f"acceptance must be 'label_prob' or 'overlap', got {self.acceptance!r}")


def suffix_sum(x: Tensor) -> Tensor:
    """[n, L] -> [n, L], out[:, j] = Σ_{m>=j} x[:, m]."""
    return x.flip(1).cumsum(1).flip(1)


def acceptance_log_prob(chunk: SlotChunk, acceptance: Acceptance, distill: DistillConfig | None = None
                        ) -> tuple[Tensor, Tensor]:
    """log a_i [n, K-1] (-inf where the streak cannot continue) and where it can continue [n, K-1] bool."""
    if acceptance == "label_prob":
        ok = chunk.mask & (chunk.labels >= 0)
        return chunk.label_logp.masked_fill(~ok, float("-inf")), ok
    d = slot_distributions(chunk, distill or DistillConfig())
    ok = chunk.mask
    return overlap(d.logp, d.logq).clamp(min=_TINY).log().masked_fill(~ok, float("-inf")), ok


def expected_streak_loss(chunk: SlotChunk, setting: StreakSetting, distill: DistillConfig | None = None
                         ) -> LossValue:
    """The family's loss for one chunk (numerator over blocks, denominator per `setting.normalisation`)."""
    log_a, ok = acceptance_log_prob(chunk, setting.acceptance, distill)
    if setting.smoothing:
        alpha = setting.smoothing
        log_at = torch.log((1 - alpha) * log_a.exp() + alpha).masked_fill(~ok, float("-inf"))
    else:
        log_at = log_a
    prefix = torch.exp(torch.cumsum(log_at, dim=1))  # [n, K-1] Π_{i<=m} ã_i, 0 after the first stop
    counted = chunk.block_valid & chunk.mask.any(dim=1)
    weights = suffix_sum(prefix.detach())  # w_i
    if setting.detach_weights:
        per_block = (weights * (-log_a).masked_fill(~ok, 0.0)).sum(dim=1)
    else:
        per_block = -prefix.sum(dim=1)  # -E
    if setting.normalisation == "block_size":
        per_block = per_block / chunk.mask.shape[1]
    numerator = (per_block * counted).sum()
    if setting.normalisation == "weight_sum":
        return LossValue(numerator, (weights * counted.unsqueeze(1)).sum())
    return LossValue(numerator, counted.sum().float())


# -- configs of the registered entries ----------------------------------------------------------------------
@dataclass(kw_only=True)
class StreakConfig:
    detach_weights: bool = False
    """False: differentiate -E directly (streak, chain); True: CE weighted by detached w_i (D-PACE)."""
    smoothing: float = 0.0
    """α of ã_i = (1 - α) a_i + α used in the product (D-PACE: 0.5)."""
    normalisation: Normalisation = "batch"
    """batch: mean over blocks; block_size: also divide by B-1; weight_sum: divide by Σ w_i."""

    def __post_init__(self) -> None:
        _check_knobs(self.smoothing, self.normalisation)


@dataclass(kw_only=True)
class StreakOverlapConfig:
    detach_weights: bool = False
    """False: differentiate -E directly; True: LK^α per slot weighted by detached w_i."""
    smoothing: float = 0.0
    """α of ã_i = (1 - α) a_i + α used in the product."""
    normalisation: Normalisation = "batch"
    """batch: mean over blocks; block_size: also divide by B-1; weight_sum: divide by Σ w_i."""
    temperature: float = 1.0
    """Divides the target's and the drafter's logits before the overlap Σ min(p, q) is taken."""
    top_k: int | None = None
    """Use only the target's top-k tokens, p renormalised over them (None: the whole vocabulary)."""

    def __post_init__(self) -> None:
        _check_knobs(self.smoothing, self.normalisation)
        DistillConfig(temperature=self.temperature, top_k=self.top_k)  # same checks as the distillation terms


@dataclass(kw_only=True)
class DPaceConfig:
    smoothing: float = 0.5
    """α of q̃_i = (1 - α) exp(-CE_i) + α (the D-PACE paper: 0.5)."""
    normalisation: Normalisation = "batch"
    """batch (D-PACE reference code: sum over the batch / batch size), block_size or weight_sum."""

    def __post_init__(self) -> None:
        _check_knobs(self.smoothing, self.normalisation)


# -- the registered entries ------------------------------------------------------------------------------------
@LOSS_TERMS.register("streak", config=StreakConfig)
class StreakLoss:
    """SpecDiff-2 streak distillation -Σ_j Π_{i<=j} q_i(y_i) per block (the expected-streak family, label probs)."""

    requires: ClassVar[frozenset[str]] = frozenset()

    def __init__(self, cfg: StreakConfig):
        self.setting = StreakSetting(acceptance="label_prob", detach_weights=cfg.detach_weights,
                                     smoothing=cfg.smoothing, normalisation=cfg.normalisation)

    def __call__(self, chunk: SlotChunk) -> LossValue:
        return expected_streak_loss(chunk, self.setting)


@LOSS_TERMS.register("streak_overlap", config=StreakOverlapConfig, divergence=False)  # needs p, is not D(p, q)
class StreakOverlapLoss:
    """Soft streak -Σ_j Π_{i<=j} Σ_v min(p_v, q_v): expected accepted length under speculative sampling."""

    requires: ClassVar[frozenset[str]] = frozenset({"target_logits"})

    def __init__(self, cfg: StreakOverlapConfig):
        self.distill = DistillConfig(temperature=cfg.temperature, top_k=cfg.top_k)
        self.setting = StreakSetting(acceptance="overlap", detach_weights=cfg.detach_weights,
                                     smoothing=cfg.smoothing, normalisation=cfg.normalisation)

    def __call__(self, chunk: SlotChunk) -> LossValue:
        return expected_streak_loss(chunk, self.setting, self.distill)


@LOSS_TERMS.register("dpace", config=DPaceConfig)
class DPaceLoss:
    """D-PACE: CE weighted by detached w_j = Σ_{m>=j} Π_{i<=m} q̃_i, q̃ = (1-α) exp(-CE) + α, divided by blocks."""

    requires: ClassVar[frozenset[str]] = frozenset()

    def __init__(self, cfg: DPaceConfig):
        self.setting = StreakSetting(acceptance="label_prob", detach_weights=True, smoothing=cfg.smoothing,
                                     normalisation=cfg.normalisation)

    def __call__(self, chunk: SlotChunk) -> LossValue:
        return expected_streak_loss(chunk, self.setting)


def _register_preset(name: str, summary: str, cfg: DPaceConfig) -> None:
    """Register a fixed-setting D-PACE ablation: the same class as `dpace`, with no options of its own."""

    def preset() -> DPaceLoss:
        return DPaceLoss(cfg)

    preset.__doc__ = summary
    preset.__qualname__ = f"DPaceLoss[{name}]"
    preset.requires = DPaceLoss.requires  # type: ignore[attr-defined]  (read by validation like a class's)
    LOSS_TERMS.register(name)(preset)


_register_preset("dpace_no_smoothing", "D-PACE ablation with α = 0: CE weighted by detached expected-streak "
                 "weights (same gradient as streak).", DPaceConfig(smoothing=0.0, normalisation="batch"))
_register_preset("dpace_weight_norm", "D-PACE ablation normalised by the sum of its weights instead of the number "
                 "of blocks (α = 0.5).", DPaceConfig(smoothing=0.5, normalisation="weight_sum"))
