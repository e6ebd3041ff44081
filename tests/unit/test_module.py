"""DraftTrainingModule: built from config only, frozen target kept apart, one step that reads as a sentence."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch

from specframe.config import validate_recipe
from specframe.data.datamodule import ChatDataModule
from specframe.module import DraftTrainingModule

# The frozen target is in eval mode on purpose (training.py silences this at import; pytest resets filters).
pytestmark = pytest.mark.filterwarnings(r"ignore:Found \d+ module\(s\) in eval mode")


@pytest.fixture
def module(tiny_recipe_dict) -> DraftTrainingModule:
    return DraftTrainingModule(tiny_recipe_dict)


def first_batch(module: DraftTrainingModule, conversations) -> dict[str, torch.Tensor]:
    data = ChatDataModule(module.recipe.data, module.target.tokenizer, seed=0, conversations=conversations)
    data.setup("fit")
    return next(iter(data.train_dataloader()))


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def test_hparams_hold_only_plain_config(module, tiny_recipe_dict) -> None:
    assert set(module.hparams) == {"config"}
    assert module.hparams["config"] == tiny_recipe_dict
    assert not any(isinstance(v, torch.nn.Module) for v in module.hparams.values())


def test_target_stays_frozen_through_a_step(module, conversations) -> None:
    batch = first_batch(module, conversations)
    module.train()  # what Lightning does at fit start
    assert not module.target.training and not any(m.training for m in module.target.modules())
    assert module.drafter.training
    loss, per_term, parts = module.step(batch, gen())
    loss.backward()
    assert torch.isfinite(loss)
    for name, p in module.target.named_parameters():
        assert not p.requires_grad and p.grad is None, name
    grads = [p.grad for p in module.drafter.parameters()]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    assert sum(float(g.abs().sum()) for g in grads) > 0


def test_optimiser_holds_only_drafter_params(module) -> None:
    opt = module.configure_optimizers()["optimizer"]
    in_opt = {id(p) for group in opt.param_groups for p in group["params"]}
    assert in_opt == {id(p) for p in module.drafter.parameters()}
    assert not in_opt & {id(p) for p in module.target.parameters()}


def test_checkpoint_drops_the_target_and_records_its_name(module) -> None:
    ckpt = {"state_dict": dict(module.state_dict())}
    assert any(k.startswith("target.") for k in ckpt["state_dict"])
    module.on_save_checkpoint(ckpt)
    assert not [k for k in ckpt["state_dict"] if k.startswith("target.")]
    assert any(k.startswith("drafter.") for k in ckpt["state_dict"])
    assert ckpt["target"] == {"name": module.target.name, "revision": None}
    module.on_load_checkpoint(ckpt)  # the frozen target's weights come from the target, not the file
    module.load_state_dict(ckpt["state_dict"], strict=True)


def test_lr_schedule_warms_up_then_decays_to_the_floor(recipe_factory, tmp_path) -> None:
    cfg = recipe_factory(tmp_path, trainer={"max_steps": 100}, optim={"lr": 1e-3, "warmup_ratio": 0.1,
                                                                      "min_lr_ratio": 0.1})
    m = DraftTrainingModule(cfg)
    sched = m.configure_optimizers()["lr_scheduler"]["scheduler"]
    lrs = []
    for _ in range(100):
        lrs.append(sched.get_last_lr()[0])
        sched.optimizer.step()
        sched.step()
    assert lrs[0] == pytest.approx(1e-4) and lrs[9] == pytest.approx(1e-3)
    assert all(a <= b for a, b in zip(lrs[:10], lrs[1:10]))  # warm-up rises
    assert all(a >= b for a, b in zip(lrs[10:], lrs[11:]))  # cosine falls
    assert lrs[-1] == pytest.approx(1e-4, rel=0.01)


def test_step_supervises_the_token_at_anchor_plus_k(module, conversations) -> None:
    """End to end through the module: a drafter whose slot k emits input_ids[a + k] (via the frozen head) gets
    every supervised slot right; one that emits input_ids[a + k + 1] does not."""
    batch = first_batch(module, conversations)
    W = module.target.lm_head_weight.detach()
    used = batch["input_ids"][batch["attention_mask"].bool()].unique()  # the pad row is zero
    assert torch.equal((W[used] @ W.T).argmax(-1), used)  # scaled rows of W decode to their own token
    K = module.drafter.block_size
    results = {}
    for shift in (0, 1):
        def fake_forward(context, context_valid, anchor_embeds, anchors, anchor_valid, mask_embed=None):
            pos = (anchors.unsqueeze(-1) + torch.arange(K) + shift).clamp(max=batch["input_ids"].shape[1] - 1)
            tokens = batch["input_ids"].gather(1, pos.flatten(1)).view(*anchors.shape, K)
            return W[tokens] * 1e4

        module.drafter.forward = fake_forward
        loss, per_term, parts = module.step(batch, gen())
        results[shift] = (float(per_term["ce"]), int(parts.correct.sum()), int(parts.mask.sum()))
    ce0, correct0, supervised = results[0]
    assert supervised > 0 and correct0 == supervised and ce0 < 1e-3
    assert results[1][1] < supervised / 2 and results[1][0] > 1.0


def test_anchors_are_per_sequence_in_a_step(module, conversations, recipe_factory, tmp_path) -> None:
    batch = first_batch(module, conversations)
    view = module.aligned_view(batch, gen())
    B = batch["input_ids"].shape[0]
    assert view.anchors.shape == (B, module.recipe.data.num_anchors)
    assert view.anchor_valid.sum(1).tolist() == [module.recipe.data.num_anchors] * B


def test_target_greedy_labels_use_the_targets_prediction_for_each_position(
        recipe_factory, tmp_path, conversations) -> None:
    cfg = recipe_factory(tmp_path, alignment=[{"name": "target_greedy_labels"}])
    m = DraftTrainingModule(cfg)
    assert m.needs_greedy and not m.needs_logits  # the argmax only: no [B, S, V] logits in the step
    batch = first_batch(m, conversations)
    view = m.aligned_view(batch, gen())
    assert view.target_logits is None
    with torch.no_grad():
        logits = m.target.model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    greedy = logits.argmax(-1)  # [p] predicts the token at p + 1
    valid = batch["attention_mask"].bool()
    assert torch.equal(view.labels[:, 1:][valid[:, 1:]], greedy[:, :-1][valid[:, 1:]])
    assert torch.equal(view.input_ids, batch["input_ids"])  # the drafter still reads the real tokens
    # From a features cache (top-1 ids and values, as `features_cache: auto` stores them): the same labels.
    top_values, top_ids = logits.topk(1, dim=-1)
    cached = {**batch, "target_hidden": m.target(batch["input_ids"], valid).hidden, "target_topk_ids": top_ids.int(),
              "target_topk_values": top_values}
    assert torch.equal(m.aligned_view(cached, gen()).labels, view.labels)


def test_a_lightning_step_keeps_the_target_frozen(tiny_recipe_dict, conversations, tmp_path) -> None:
    from specframe.training import build_trainer

    tiny_recipe_dict["trainer"]["max_steps"] = 1
    recipe = validate_recipe(tiny_recipe_dict)
    m = DraftTrainingModule(recipe.resolved)
    before = {k: v.clone() for k, v in m.target.state_dict().items()}
    drafter_before = {k: v.clone() for k, v in m.drafter.state_dict().items()}
    data = ChatDataModule(recipe.data, m.target.tokenizer, seed=0, conversations=conversations)
    trainer = build_trainer(recipe, Path(tmp_path) / "out")
    trainer.fit(m, datamodule=data)
    assert trainer.global_step == 1
    assert not m.target.training
    assert all(p.grad is None and not p.requires_grad for p in m.target.parameters())
    assert all(torch.equal(v, before[k]) for k, v in m.target.state_dict().items())
    assert any(not torch.equal(v, drafter_before[k]) for k, v in m.drafter.state_dict().items())
    opt_params = {id(p) for g in trainer.optimizers[0].param_groups for p in g["params"]}
    assert opt_params == {id(p) for p in m.drafter.parameters()}
