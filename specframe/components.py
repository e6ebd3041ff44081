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
    """Copy target weights into the drafter where its config asks: the final norm (`init_norm_from_target`),
    the top decoder layers (`init_layers_from_target`) and a pass-through fusion (`init_fusion_from_top_tap`);
    nothing with `init_from`, whose weights replace them all."""
    cfg = getattr(drafter, "cfg", None)
    if getattr(cfg, "init_from", None):
        return  # a published drafter's weights replace all of these (module.py loads them strictly)
    norm = getattr(target, "final_norm_weight", None)
    if getattr(cfg, "init_norm_from_target", False) and norm is not None:
        with torch.no_grad():
            drafter.norm.weight.copy_(norm.float())
    if getattr(cfg, "init_layers_from_target", False):
        copy_top_layers(drafter, target)
    if getattr(cfg, "init_fusion_from_top_tap", False):
        pass_top_tap(drafter, target)


# Drafter-layer parameters a Llama-style decoder layer has no counterpart for: they keep their init (ones).
_DRAFTER_ONLY = ("self_attn.q_norm.weight", "self_attn.k_norm.weight")


def _layer_reader(target: Any, where: str) -> Any:
    read = getattr(target, "decoder_layer_state", None)
    if read is None:
        raise ValueError(f"{where}: the target ({type(target).__name__}) cannot lend its decoder layers "
                         "(it has no decoder_layer_state)")
    return read


def pass_top_tap(drafter: Any, target: Any) -> None:
    """`fc` passes the last tapped layer through (other taps at zero); `hidden_norm` takes the input norm of the
    target layer that drafter layer 0 starts from (see copy_top_layers), so its context K/V start as that layer's."""
    norm = _layer_reader(target, "drafter.init_fusion_from_top_tap")(-len(drafter.layers))["input_layernorm.weight"]
    H = drafter.fc.weight.shape[0]
    with torch.no_grad():
        drafter.fc.weight.zero_()
        drafter.fc.weight[:, -H:].copy_(torch.eye(H, dtype=drafter.fc.weight.dtype))
        drafter.hidden_norm.weight.copy_(norm.to(drafter.hidden_norm.weight.dtype))


def copy_top_layers(drafter: Any, target: Any) -> None:
    """Drafter layer i of n starts as the target's decoder layer num_layers - n + i (same parameter names)."""
    where = "drafter.init_layers_from_target"
    read = _layer_reader(target, where)
    n = len(drafter.layers)
    for i, layer in enumerate(drafter.layers):
        source = read(i - n)
        own = layer.state_dict()
        missing = sorted(k for k in own if k not in source and k not in _DRAFTER_ONLY)
        shapes = [f"{k} {tuple(source[k].shape)} vs {tuple(v.shape)}" for k, v in own.items()
                  if k in source and source[k].shape != v.shape]
        if missing or shapes:
            raise ValueError(f"{where}: drafter layer {i} does not fit the target's layer {i - n}: "
                             + "; ".join([f"missing {', '.join(missing)}"] * bool(missing) + shapes)
                             + " (leave num_heads, num_kv_heads and intermediate_size at the target's, or set "
                             "drafter.init_layers_from_target: false)")
        layer.load_state_dict(source, strict=False)  # copies into the drafter's own tensors, in their dtype
