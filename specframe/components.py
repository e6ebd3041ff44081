"""Build a recipe's components in one order: target, drafter (against the target's spec), draft vocabulary,
alignment strategies and the loss objective.

Used by the LightningModule, by `checkpoint.load_trained` (which needs no objective) and, through the module,
by tools/bench_train.py. A second place that builds these would drift from this one.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from specframe.config import Recipe


@dataclass(kw_only=True)
class Components:
    target: Any  # a frozen `interfaces.Target` (eval mode, no gradients)
    drafter: Any  # an `interfaces.Drafter` (an nn.Module)
    vocab: Any  # the DraftVocab (identity maps when the drafter uses the full vocabulary)
    alignments: list[Any]  # built training-time alignment strategies, in recipe order ([] without an objective)
    objective: Any = None  # the weighted loss terms (None when built without one)


def build_components(recipe: Recipe, *, with_objective: bool = True, target: Any = None) -> Components:
    """The recipe's components, built through the registries.

    Args:
        recipe: a validated recipe.
        with_objective: also build alignment strategies and loss terms (False: what decoding needs).
        target: an already built target to use instead of building one from `recipe.target`.
    """
    from specframe.alignment import ALIGNMENTS
    from specframe.drafters import DRAFTERS
    from specframe.losses import LOSS_TERMS
    from specframe.losses.objective import Objective, WeightedTerm
    from specframe.targets import TARGETS
    from specframe.vocab import DraftVocab

    if target is None:
        target = TARGETS.build(recipe.target.name, recipe.target.options, where="target")
    # Frozen, wrapper included: Lightning records each submodule's train/eval flag at fit start and restores it.
    target.requires_grad_(False).eval()
    drafter = DRAFTERS.build(recipe.drafter.name, recipe.drafter.options, where="drafter", spec=target.spec)
    init_from_target(drafter, target)
    vocab = DraftVocab.from_config(recipe.drafter.options, target.vocab_size)
    if not with_objective:
        return Components(target=target, drafter=drafter, vocab=vocab, alignments=[])
    alignments = [ALIGNMENTS.build(a.name, a.options, where="alignment") for a in recipe.alignment]
    terms = [WeightedTerm(t.label, t.weight, LOSS_TERMS.build(t.name, t.options, where="loss")) for t in recipe.loss]
    objective = Objective(terms, chunk_blocks=recipe.optim.chunk_blocks)
    return Components(target=target, drafter=drafter, vocab=vocab, alignments=alignments, objective=objective)


def init_from_target(drafter: Any, target: Any) -> None:
    """Copy the target's final-norm weight into the drafter's when its config asks (`init_norm_from_target`)."""
    norm = getattr(target, "final_norm_weight", None)
    if getattr(getattr(drafter, "cfg", None), "init_norm_from_target", False) and norm is not None:
        with torch.no_grad():
            drafter.norm.weight.copy_(norm.float())
