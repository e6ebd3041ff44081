"""TauRealCallback: decodes held-out prompts every N steps and logs val/tau_real."""
from __future__ import annotations

import types

from decoding_setup import BLOCK

from specframe.config import EvalConfig
from specframe.evaluation.callback import TauRealCallback, first_user_turns

CONVERSATIONS = [
    [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hello there"},
     {"role": "assistant", "content": "Hi."}],
    [{"role": "user", "content": "What is 2+2?"}, {"role": "assistant", "content": "4"}],
    [{"role": "user", "content": "Unused"}, {"role": "assistant", "content": "-"}],
]


def test_first_user_turns():
    got = first_user_turns(CONVERSATIONS, 2)
    assert got == [CONVERSATIONS[0][:2], CONVERSATIONS[1][:1]]


class FakeModule:
    def __init__(self, target, drafter):
        self.target, self.drafter, self.vocab = target, drafter, None
        self.logged: list[tuple[str, float]] = []

    def log(self, name, value, **kwargs):
        self.logged.append((name, value))


def test_logs_tau_real_every_n_steps(target, fitted_drafter):
    cfg = EvalConfig(tau_real_every_n_steps=2, tau_real_prompts=2, max_new_tokens=8)
    cb = TauRealCallback(cfg, CONVERSATIONS)
    module = FakeModule(target, fitted_drafter.train())
    logger = types.SimpleNamespace(rows=[])
    logger.log_metrics = lambda metrics, step: logger.rows.append((step, metrics))
    for step in [0, 1, 2, 2, 3, 4]:  # step 2 twice: two micro-batches of one accumulated step
        cb.on_train_batch_end(types.SimpleNamespace(global_step=step, loggers=[logger]), module, None, None, 0)
    assert [step for step, _ in logger.rows] == [1, 3]  # Lightning's step of the batch just trained
    assert all(1.0 <= m["val/tau_real"] <= BLOCK for _, m in logger.rows)
    assert [name for name, _ in module.logged] == ["val/tau_real", "val/tau_real"]
    assert fitted_drafter.training  # restored after decoding
    fitted_drafter.eval()


def test_follows_the_recipes_linear_kernel(target, fitted_drafter, routed_kernels):
    routed = routed_kernels
    for kernel, expected in [("f_linear", ()), ("small_batch", (target.model, fitted_drafter))]:
        routed.clear()
        cfg = EvalConfig(tau_real_every_n_steps=1, tau_real_prompts=1, max_new_tokens=4, linear_kernel=kernel)
        logger = types.SimpleNamespace(log_metrics=lambda metrics, step: None)
        TauRealCallback(cfg, CONVERSATIONS).on_train_batch_end(
            types.SimpleNamespace(global_step=1, loggers=[logger]), FakeModule(target, fitted_drafter), None, None, 0)
        assert routed and all(m == expected for m in routed)
    fitted_drafter.eval()
