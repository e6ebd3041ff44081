"""Stop a run at the first non-finite loss or gradient, and never summarise non-finite weights.

A NaN or infinite loss poisons the weights at the next optimiser step, after which every later checkpoint, the
"best" one included, and the τ summary are meaningless. `DraftTrainingModule` checks the loss of every step and
the gradients before every optimiser step, so the weights are still those of the last good step when it stops.
"""
from __future__ import annotations

import torch
from torch import Tensor, nn

from specframe.errors import RunError


def check_finite_loss(loss: Tensor, per_term: dict[str, Tensor], step: int) -> None:
    if bool(torch.isfinite(loss.detach()).all()):
        return
    terms = ", ".join(f"{k}={float(v.detach()):.4g}" for k, v in per_term.items())
    raise RunError(f"training stopped at step {step}: the loss is {float(loss.detach())} ({terms}). The weights "
                   "are those of the last finite step; nothing was saved from this one. Lower optim.lr, check the "
                   "loss weights, or try trainer.precision=32-true.")


def check_finite_grads(module: nn.Module, step: int) -> None:
    grads = [p.grad for p in module.parameters() if p.grad is not None]
    if not grads:
        return
    total = torch.stack([g.detach().float().norm() for g in grads]).sum()
    if bool(torch.isfinite(total)):
        return
    bad = [name for name, p in module.named_parameters() if p.grad is not None and
           not bool(torch.isfinite(p.grad).all())]
    raise RunError(f"training stopped at step {step}: non-finite gradients in {len(bad)} parameter(s), first "
                   f"{bad[:3]}; the optimiser step was not taken. Lower optim.lr or set trainer.gradient_clip_val.")


def check_finite_weights(module: nn.Module, step: int) -> None:
    bad = [name for name, p in module.named_parameters() if not bool(torch.isfinite(p).all())]
    if bad:
        raise RunError(f"after step {step} the drafter has non-finite weights in {len(bad)} parameter(s), first "
                       f"{bad[:3]}: no summary is written from them.")
