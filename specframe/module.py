"""The one LightningModule: a frozen target, a drafter, alignment strategies and loss terms, from a recipe."""
from __future__ import annotations

import math
from typing import Any

import lightning as L
import torch
from torch import Tensor

from specframe.components import build_components
from specframe.config import Recipe, validate_recipe
from specframe.data.anchors import sample_anchors
from specframe.data.feature_cache import topk_to_dense
from specframe.interfaces import AlignedBatch
from specframe.metrics import AcceptanceLength
from specframe.numerics import check_finite_grads, check_finite_loss


class DraftTrainingModule(L.LightningModule):
    """Trains a drafter against a frozen target. Built from the resolved recipe dict, never from modules."""

    def __init__(self, config: dict[str, Any], recipe: Recipe | None = None):
        """`config`: the resolved recipe dict (all that is saved); `recipe`: the same, already validated by the
        command that built this module (so it is not validated twice), or None to validate `config` here
        (`load_from_checkpoint`)."""
        super().__init__()
        # Only plain config is saved: Lightning would deep-copy module arguments (a frozen multi-GB target).
        self.save_hyperparameters({"config": config})
        self.recipe: Recipe = recipe if recipe is not None else validate_recipe(config)
        r = self.recipe
        parts = build_components(r)
        self.target, self.drafter, self.vocab = parts.target, parts.drafter, parts.vocab
        source = r.drafter.options.get("init_from")  # from the recipe: a Drafter needs no `cfg` (interfaces.py)
        if source:  # a published DFlash drafter: checked against this target, then loaded strictly
            from specframe.export.importing import load_into

            load_into(self.drafter, source, self.target.spec)
        if r.trainer.compile:
            self.drafter.compile()  # in place: state_dict keys stay `drafter.*` (no `_orig_mod.` prefix)
        self.alignments, self.objective = parts.alignments, parts.objective
        requires = [set(getattr(a, "requires", ())) for a in self.alignments]
        self.needs_logits = self.objective.needs_target_logits or any("target_logits" in r for r in requires)
        self.needs_greedy = any("target_greedy" in r for r in requires)  # the argmax only: no [B, S, V] tensor
        K = self.drafter.block_size
        self.train_tau, self.val_tau = AcceptanceLength(K), AcceptanceLength(K)

    def train_generator(self, step: int) -> torch.Generator:
        """The anchors' random generator of training step `step` (seeded per step and rank: resumable)."""
        return torch.Generator().manual_seed(self.recipe.run.seed * 1_000_003 + step * 97 + self.global_rank)

    # -- one step, in the order of the sentence in style.md ------------------------------------
    def aligned_view(self, batch: dict[str, Tensor], generator: torch.Generator) -> AlignedBatch:
        ids, valid = batch["input_ids"], batch["attention_mask"].bool()
        logits = greedy = None
        wants_target_logits = self.needs_logits or self.needs_greedy
        if "target_hidden" in batch and (not wants_target_logits or "target_topk_ids" in batch):
            hidden = batch["target_hidden"]  # from a features cache: no target pass
            if self.needs_logits:  # cached top-k logits, -inf elsewhere (data/feature_cache.py: kept mass)
                logits = topk_to_dense(batch["target_topk_ids"], batch["target_topk_values"], self.target.vocab_size)
            if self.needs_greedy:  # top-k is sorted: the first id is the argmax
                greedy = batch["target_topk_ids"][..., 0].long()
        else:
            out = self.target(ids, valid, with_logits=wants_target_logits)
            hidden = out.hidden
            greedy = out.logits.argmax(-1) if self.needs_greedy else None
            logits = out.logits if self.needs_logits else None
        # logits at p predict p + 1: shift so that [p] is the distribution (and greedy token) of p
        if logits is not None:
            logits = torch.cat([logits[:, :1], logits[:, :-1]], dim=1)
        if greedy is not None:
            greedy = torch.cat([greedy[:, :1], greedy[:, :-1]], dim=1)
        anchors, anchor_valid = sample_anchors(batch["loss_mask"], self.recipe.data.num_anchors, generator)
        view = AlignedBatch(input_ids=ids, labels=ids, loss_mask=batch["loss_mask"].bool(), context=hidden,
                            context_valid=valid, anchors=anchors, anchor_valid=anchor_valid, target_logits=logits,
                            target_greedy=greedy)
        for strategy in self.alignments:
            view = strategy.align(view)
        return view

    def step(self, batch: dict[str, Tensor], generator: torch.Generator) -> tuple[Tensor, dict[str, Tensor], Any]:
        view = self.aligned_view(batch, generator)
        anchor_embeds = self.target.embed(view.input_ids.gather(1, view.anchors))
        mask_embed = None if self.drafter.mask_token_id is None else self.target.embed(
            torch.tensor(self.drafter.mask_token_id, device=self.device))
        hidden = self.drafter(view.context, view.context_valid, anchor_embeds, view.anchors, view.anchor_valid,
                              mask_embed)
        parts = self.objective.parts(hidden, view, head=self.head, to_draft=self.vocab.to_draft,
                                     target_logits_to_draft=self.vocab.restrict)
        loss, per_term = self.objective.combine(parts, self._global_sum(parts.denominators), self._world())
        return loss, per_term, parts

    def head(self, hidden: Tensor) -> Tensor:
        """The target's frozen LM head, restricted to the draft vocabulary when one is set."""
        # Flatten to 2-D first: on a non-contiguous 3-D input, linear falls back to a batched matmul that
        # copies the [V, H] weight once per block (measured: 10x slower on CPU).
        weight = self.vocab.restrict_rows(self.target.lm_head_weight)
        # The head keeps the target's dtype; outside autocast a float32 drafter meets a bf16 target here.
        flat = torch.nn.functional.linear(hidden.reshape(-1, hidden.shape[-1]).to(weight.dtype), weight)
        return flat.view(*hidden.shape[:-1], weight.shape[0])

    def training_step(self, batch: dict[str, Tensor], batch_idx: int) -> Tensor:
        loss, per_term, parts = self.step(batch, self.train_generator(self.global_step))
        check_finite_loss(loss, per_term, self.global_step)
        self.train_tau(parts.correct, parts.mask, parts.block_valid)
        # Each rank's loss is its share of the global batch times the world size (see Objective.combine): the
        # mean over ranks (sync_dist) is the loss of the global batch.
        self.log("train/loss", loss, prog_bar=True, sync_dist=True)
        self.log_dict({f"train/loss/{k}": v.detach() for k, v in per_term.items()}, sync_dist=True)
        self.log_dict(self.term_metrics("train"))
        self.log("train/tau_sim", self.train_tau, prog_bar=True)
        self.log("train/supervised_slots", parts.mask.sum().float(), reduce_fx="sum")
        return loss

    def on_before_optimizer_step(self, optimizer: Any) -> None:
        # Under 16-mixed the grad scaler expects (and skips) inf gradients itself.
        if self.recipe.trainer.precision != "16-mixed":
            check_finite_grads(self.drafter, self.global_step)

    def validation_step(self, batch: dict[str, Tensor], batch_idx: int) -> None:
        gen = torch.Generator().manual_seed(self.recipe.run.seed + 7919 * batch_idx)  # same blocks every time
        loss, per_term, parts = self.step(batch, gen)
        self.val_tau.update(parts.correct, parts.mask, parts.block_valid)
        self.log("val/loss", loss, sync_dist=True)
        self.log_dict({f"val/loss/{k}": v for k, v in per_term.items()}, sync_dist=True)
        self.log_dict(self.term_metrics("val"))

    def term_metrics(self, prefix: str) -> dict[str, float]:
        """Side figures a loss term keeps via `pop_metrics()` (e.g. kept top-k mass): `<prefix>/<metric>/<term>`."""
        return {f"{prefix}/{key}/{wt.name}": value for wt in self.objective.terms
                for key, value in (getattr(wt.term, "pop_metrics", dict)() or {}).items()}

    def on_validation_epoch_end(self) -> None:
        self.log("val/tau_sim", self.val_tau.compute(), prog_bar=True)
        for k, rate in enumerate(self.val_tau.slot_acceptance().tolist(), start=1):
            self.log(f"val/accept/slot_{k}", rate)
        self.val_tau.reset()

    # -- distributed helpers -------------------------------------------------------------------
    def _world(self) -> int:
        return self.trainer.world_size if self._trainer is not None else 1

    def _global_sum(self, x: Tensor) -> Tensor:
        """Sum over data-parallel ranks (loss normalisers must count the whole global batch)."""
        if self._world() > 1 and torch.distributed.is_available() and torch.distributed.is_initialized():
            x = x.clone()
            torch.distributed.all_reduce(x)
        return x

    # -- optimiser, checkpoints ----------------------------------------------------------------
    def configure_optimizers(self) -> Any:
        o = self.recipe.optim
        params = [p for p in self.drafter.parameters() if p.requires_grad]  # never the frozen target
        opt = torch.optim.AdamW(params, lr=o.lr, weight_decay=o.weight_decay, betas=tuple(o.betas))
        total = self.recipe.trainer.max_steps
        warm = max(1, int(o.warmup_ratio * total))

        def schedule(step: int) -> float:
            if step < warm:
                return (step + 1) / warm
            t = min(1.0, (step - warm) / max(1, total - warm))
            return o.min_lr_ratio + (1 - o.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * t))

        sched = torch.optim.lr_scheduler.LambdaLR(opt, schedule)
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        # The frozen target is recorded by name and revision, never stored.
        sd = checkpoint["state_dict"]
        for key in [k for k in sd if k.startswith("target.")]:
            del sd[key]
        checkpoint["target"] = {"name": self.target.name, "revision": getattr(self.target, "revision", None)}

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        own = self.state_dict()
        checkpoint["state_dict"].update({k: v for k, v in own.items() if k.startswith("target.")})
