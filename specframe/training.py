"""`specframe train`: recipe -> run folder -> Lightning Trainer -> drafter checkpoints, τ_sim before/after."""
from __future__ import annotations

import csv
import dataclasses
import json
import logging
import os
import warnings
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import LearningRateMonitor, ModelCheckpoint, TQDMProgressBar
from lightning.pytorch.loggers import CSVLogger, Logger

from specframe.atomic_files import atomic_path, write_json
from specframe.checkpoint import load_checkpoint
from specframe.config import Recipe, save_resolved
from specframe.data.datamodule import EpochShuffle
from specframe.metrics import AcceptanceLength
from specframe.plugins import loaded_plugins
from specframe.numerics import check_finite_weights
from specframe.run_folder import claim_run_folder, is_rank_zero

log = logging.getLogger(__name__)
# The frozen target is in eval mode on purpose; Lightning warns about any module in eval mode at fit start.
warnings.filterwarnings("ignore", message=r"Found \d+ module\(s\) in eval mode")
# ResumeDataPosition (below) makes a mid-epoch resume exact, which Lightning cannot see from the DataLoader.
warnings.filterwarnings("ignore", message=r"You're resuming from a checkpoint that ended before the epoch ended")


@torch.no_grad()
def held_out_tau(module: Any, loader: Any) -> dict[str, Any]:
    """τ_sim on held-out batches with the same fixed anchors as validation (no Trainer needed)."""
    was_training = module.drafter.training
    module.drafter.eval()
    metric = AcceptanceLength(module.drafter.block_size)
    precision = trainer_precision(module.recipe)
    # Same numerics as validation inside the Trainer (bf16-mixed autocasts there).
    for i, batch in enumerate(loader):
        batch = {k: v.to(module.device) for k, v in batch.items()}
        gen = torch.Generator().manual_seed(module.recipe.run.seed + 7919 * i)
        with torch.autocast(module.device.type, dtype=torch.bfloat16, enabled=precision.startswith("bf16")):
            _, _, parts = module.step(batch, gen)
        metric.update(parts.correct.cpu(), parts.mask.cpu(), parts.block_valid.cpu())
    module.drafter.train(was_training)
    return {"tau_sim": float(metric.compute()), "blocks": int(metric.blocks),
            "slot_acceptance": [round(x, 4) for x in metric.slot_acceptance().tolist()]}


def trainer_precision(recipe: Recipe) -> str:
    """The Lightning precision this run uses (`auto` resolved for the device it trains on)."""
    from specframe.precision import default_device, resolve_precision

    return resolve_precision(recipe.trainer.precision, default_device(recipe.trainer.accelerator))


def make_loggers(recipe: Recipe, out: Path) -> list[Logger]:
    # Flushed at every logged step (not every 100): a kill loses no logged row (resume keeps rows before its step).
    loggers: list[Logger] = [CSVLogger(str(out), name="logs", version="", flush_logs_every_n_steps=1)]
    if recipe.run.wandb:
        from lightning.pytorch.loggers import WandbLogger

        mode = recipe.run.wandb_mode
        if mode == "auto":
            configured = bool(os.environ.get("WANDB_API_KEY")) or "api.wandb.ai" in _netrc()
            mode = "online" if configured else "offline"
        loggers.append(WandbLogger(project=recipe.run.wandb_project, name=recipe.run.name, save_dir=str(out),
                                   group=recipe.run.wandb_group, mode=mode, config=recipe.resolved))
    return loggers


def _netrc() -> str:
    p = Path.home() / ".netrc"
    return p.read_text() if p.is_file() else ""


class ResumeDataPosition(L.Callback):
    """On a mid-epoch resume, skip the batches of the epoch that the checkpoint already trained on.

    Lightning restores step, optimiser and scheduler, but restarts a plain DataLoader at the epoch's first batch.
    Our sampler's order depends only on (seed, epoch), so skipping the completed batches gives exactly the data
    an uninterrupted run would see, on every data-parallel rank (each skips its own share).
    """

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        # `processed`, not `completed`: last.ckpt is written in on_train_batch_end, before `completed` counts it.
        done = trainer.fit_loop.epoch_loop.batch_progress.current.processed
        loader = trainer.train_dataloader
        sampler = getattr(loader, "sampler", None)
        # A checkpoint taken at an epoch's end restores `completed` = the whole epoch: the next one starts fresh.
        if 0 < done < trainer.num_training_batches and isinstance(sampler, EpochShuffle):
            sampler.skip = done * loader.batch_size


def build_trainer(recipe: Recipe, out: Path, callbacks: list[Any] = ()) -> L.Trainer:
    t = recipe.trainer
    ckpt_dir = out / "checkpoints"
    cbs: list[Any] = [
        # Best by held-out τ_sim, judged after each validation (first: trainer.checkpoint_callback).
        ModelCheckpoint(dirpath=ckpt_dir, filename="best-step{step}", monitor="val/tau_sim", mode="max",
                        save_top_k=1, auto_insert_metric_name=False),
        # The resumable last.ckpt, on its own schedule: a monitored ModelCheckpoint defers step-triggered saves
        # until the monitored metric is fresh (the next validation), which would tie resumability to val_every.
        ModelCheckpoint(dirpath=ckpt_dir, save_top_k=0, save_last=True, every_n_train_steps=t.save_every_n_steps),
        LearningRateMonitor(logging_interval="step"),
        ResumeDataPosition(),
        *callbacks,
    ]
    if t.progress_bar:
        cbs.append(TQDMProgressBar(refresh_rate=1))
    return L.Trainer(
        max_steps=t.max_steps, accelerator=t.accelerator, devices=t.devices, num_nodes=t.num_nodes,
        strategy=t.strategy,
        precision=trainer_precision(recipe), gradient_clip_val=t.gradient_clip_val,
        accumulate_grad_batches=t.accumulate_grad_batches, val_check_interval=t.val_every_n_steps,
        check_val_every_n_epoch=None, limit_val_batches=t.limit_val_batches, log_every_n_steps=t.log_every_n_steps,
        logger=make_loggers(recipe, out), callbacks=cbs, enable_progress_bar=t.progress_bar,
        num_sanity_val_steps=0, default_root_dir=str(out), enable_model_summary=False,
    )


def train(recipe: Recipe, conversations: list[Any] | None = None) -> dict[str, Any]:
    """Train a drafter as the recipe says; returns (and writes) a summary with τ_sim before and after.

    Raises:
        RunError: the folder holds another recipe's run or has another writer (nothing in it is touched), or
            the loss or a gradient became non-finite (no summary is written).
        ConfigError: last.ckpt is not a checkpoint that can be loaded safely (it is never unpickled).
    """
    out = recipe.output_dir
    last = out / "checkpoints" / "last.ckpt"
    with claim_run_folder(out, recipe.resolved) as folder:
        resume = recipe.run.resume and last.is_file()
        # Read before anything is written: a planted or broken last.ckpt is refused with the folder untouched.
        resume_step = int(load_checkpoint(last, mmap=True).get("global_step", 0)) if resume else 0
        folder.touch()
        if is_rank_zero():
            save_resolved(recipe, out, loaded_plugins())
        summary = _train(recipe, conversations, out, last, resume, resume_step)
        folder.succeeded()
    return summary


def _train(recipe: Recipe, conversations: list[Any] | None, out: Path, last: Path, resume: bool,
           resume_step: int) -> dict[str, Any]:
    from specframe.data.datamodule import ChatDataModule
    from specframe.module import DraftTrainingModule

    L.seed_everything(recipe.run.seed, workers=True, verbose=False)
    module = DraftTrainingModule(recipe.resolved, recipe=recipe)  # validated once, by the command
    data_cfg = recipe.data
    if data_cfg.features_cache == "auto":  # built here, with the target already loaded; reused by later runs
        from specframe.data.auto_cache import ensure_auto_cache

        folder = ensure_auto_cache(recipe, module.target, needs_logits=module.needs_logits or module.needs_greedy,
                                   loss_needs_logits=module.objective.needs_target_logits, conversations=conversations)
        data_cfg = dataclasses.replace(data_cfg, features_cache=str(folder))
    data = ChatDataModule(data_cfg, module.target.tokenizer, seed=recipe.run.seed, conversations=conversations)
    data.setup("fit")
    if module.vocab.reduced and not resume:
        from specframe.vocab_fit import coverage, fit_draft_vocab

        report = fit_draft_vocab(module.vocab, data.train_rows)
        report["heldout_coverage"] = coverage(module.vocab, data.val_rows)
        print(f"draft vocabulary: {report['size']} tokens cover {report['coverage']:.1%} of the training "
              f"targets and {report['heldout_coverage']:.1%} of the held-out ones")
    if getattr(getattr(module.drafter, "cfg", None), "init_fusion_from_features", False) and not resume:
        from specframe.fusion_fit import feature_rms, fit_fusion_scale

        seen = fit_fusion_scale(module.drafter.fc, feature_rms(module.target, data.train_rows[:8]))
        print(f"fusion layer scaled to the target's features (feature RMS: max {seen['max_rms']:.1f}, median "
              f"{seen['median_rms']:.2f}; the top 5 dimensions hold {seen['top5_energy']:.0%} of the energy)")
    before_path = out / "tau_before.json"
    if before_path.is_file():
        before = json.loads(before_path.read_text())
    else:
        before = held_out_tau(module, data.val_dataloader())
        if is_rank_zero():  # every rank computes the same figure; one writes it
            write_json(before_path, before)
    callbacks = []
    if recipe.eval.tau_real_every_n_steps > 0:
        from specframe.evaluation.callback import TauRealCallback

        callbacks.append(TauRealCallback(recipe.eval, data.val_conversations))
    if resume and is_rank_zero():
        _set_aside_metrics(out / "logs", resume_step)
    trainer = build_trainer(recipe, out, callbacks)
    # weights_only: a last.ckpt planted in the run folder must not run code on resume (Lightning's own load too).
    try:
        trainer.fit(module, datamodule=data, ckpt_path=str(last) if resume else None, weights_only=True)
    finally:
        _release_process_group()  # what follows is local to each rank
    if trainer.is_global_zero:
        _merge_metrics(out / "logs")
    check_finite_weights(module.drafter, trainer.global_step)
    best = trainer.checkpoint_callback.best_model_path if trainer.checkpoint_callback else ""
    after = held_out_tau(module, data.val_dataloader())
    summary = {"run": recipe.run.name, "output_dir": str(out), "steps": trainer.global_step,
               "tau_sim_before": before["tau_sim"], "tau_sim_after": after["tau_sim"],
               "slot_acceptance_after": after["slot_acceptance"], "held_out_blocks": after["blocks"],
               "best_checkpoint": best, "last_checkpoint": str(last)}
    if trainer.is_global_zero:
        write_json(out / "summary.json", summary)
    return summary


def _release_process_group() -> None:
    """Destroy a DDP process group before the interpreter exits: left to interpreter teardown, gloo's threads can
    abort a run that finished ("terminate called without an active exception", exit code -6)."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


_EARLIER = "metrics.earlier.csv"


def _read_csv(path: Path) -> list[dict[str, str]]:
    if not path.is_file():
        return []
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


def _write_csv(path: Path, rows: list[dict[str, str]]) -> None:
    keys = sorted(set().union(*rows)) if rows else []
    with atomic_path(path) as tmp, tmp.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=keys, restval="")
        writer.writeheader()
        writer.writerows(rows)


def _set_aside_metrics(log_dir: Path, resume_step: int) -> None:
    """Lightning's CSVLogger deletes logs/metrics.csv when a run resumes: keep the earlier legs' rows (those
    before the resumed step; later ones are about to be logged again) until `_merge_metrics` puts them back."""
    rows = _read_csv(log_dir / _EARLIER) + _read_csv(log_dir / "metrics.csv")
    rows = [r for r in rows if r.get("step") and int(float(r["step"])) < resume_step]
    if rows:
        _write_csv(log_dir / _EARLIER, rows)
    (log_dir / "metrics.csv").unlink(missing_ok=True)


def _merge_metrics(log_dir: Path) -> None:
    """Earlier legs' rows + this leg's rows -> logs/metrics.csv, one file for the whole run."""
    earlier = log_dir / _EARLIER
    if earlier.is_file():
        _write_csv(log_dir / "metrics.csv", _read_csv(earlier) + _read_csv(log_dir / "metrics.csv"))
        earlier.unlink()
