"""`val/tau_real` during training: decode a few held-out prompts for real every N steps (recipe `eval:` section).

    eval: {tau_real_every_n_steps: 200, tau_real_prompts: 2, max_new_tokens: 64}

Logged beside `val/tau_sim`, so a run shows at once whether training accuracy turns into real acceptance.
"""
from __future__ import annotations

import logging
from typing import Any

import lightning as L

from specframe.config import EvalConfig
from specframe.data.chat import render_prompt
from specframe.evaluation.runner import decode_tau

log = logging.getLogger(__name__)


def first_user_turns(conversations: list[list[dict[str, str]]], n: int) -> list[list[dict[str, str]]]:
    """The messages up to and including the first user turn (system turn kept) of the first n conversations."""
    out = []
    for conv in conversations:
        if len(out) >= n:
            break
        first = next((i for i, m in enumerate(conv) if m["role"] == "user"), None)
        if first is not None:
            out.append(conv[: first + 1])
    return out


class TauRealCallback(L.Callback):
    """Every `eval.tau_real_every_n_steps` optimizer steps, logs τ_real of `eval.tau_real_prompts` held-out prompts."""

    def __init__(self, eval_cfg: EvalConfig, val_conversations: list[list[dict[str, str]]]):
        self.cfg = eval_cfg
        self.every = int(eval_cfg.tau_real_every_n_steps)
        self.messages = first_user_turns(val_conversations, eval_cfg.tau_real_prompts)
        self._last_step = -1
        if self.every > 0 and not self.messages:
            log.warning("tau_real: no held-out conversation with a user turn; val/tau_real will not be logged")

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        step = trainer.global_step
        # global_step repeats over the micro-batches of one accumulated step: decode once per step.
        if self.every <= 0 or not self.messages or step == 0 or step % self.every or step == self._last_step:
            return
        self._last_step = step
        tau = self.measure(pl_module)
        if tau is None:
            return
        # Straight to the loggers: self.log from this hook would wait for a step divisible by log_every_n_steps.
        # Lightning logs this batch's metrics (and a validation run right after it) at global_step - 1.
        for logger in trainer.loggers:
            logger.log_metrics({"val/tau_real": tau}, step=step - 1)
        # For the progress bar and callbacks (e.g. a checkpoint monitor), without logging it twice.
        pl_module.log("val/tau_real", tau, on_step=True, on_epoch=False, prog_bar=True, logger=False,
                      rank_zero_only=True)

    def measure(self, pl_module: Any) -> float | None:
        """τ_real (mean over responses) of the held-out prompts with the module's target and drafter."""
        target, drafter = pl_module.target, pl_module.drafter
        prompts = [render_prompt(target.tokenizer, m) for m in self.messages]
        was_training = drafter.training
        drafter.eval()
        try:
            summary = decode_tau(target, drafter, pl_module.vocab, prompts, max_new_tokens=self.cfg.max_new_tokens,
                                 temperature=self.cfg.temperature, strategy=self.cfg.strategy,
                                 block_size=None if self.cfg.block_size == "auto" else self.cfg.block_size,
                                 small_batch_kernel=self.cfg.small_batch_kernel)
        finally:
            drafter.train(was_training)
        return summary["tau"]
