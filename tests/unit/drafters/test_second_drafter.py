"""A second drafter, written from `interfaces.Drafter` alone (not from BlockDiffusionDrafter), trains through the
LightningModule's step and decodes losslessly through the engine: the Protocol is all a new drafter needs."""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from specframe.config import validate_recipe
from specframe.data.datamodule import ChatDataModule
from specframe.decoding.engine import SpeculativeDecoder, target_only_decode
from specframe.drafters import DRAFTERS
from specframe.interfaces import Drafter, TargetSpec
from specframe.module import DraftTrainingModule


@dataclass(kw_only=True)
class MeanContextConfig:
    block_size: int = 4


class MeanContextDrafter(nn.Module):
    """Each slot: its input embedding plus a learned slot vector plus the mean fused context before the anchor."""

    def __init__(self, cfg: MeanContextConfig, spec: TargetSpec):
        super().__init__()
        H = spec.hidden_size
        self.block_size = cfg.block_size
        self.mask_token_id = None  # its own mask embedding
        self.mask_embedding = nn.Parameter(torch.zeros(H))
        self.fuse = nn.Linear(len(spec.tap_layers) * H, H, bias=False)
        self.slot = nn.Parameter(torch.zeros(cfg.block_size, H))
        self.out = nn.Linear(H, H)

    def fuse_context(self, context: Tensor) -> Tensor:
        return self.fuse(context.to(self.fuse.weight.dtype))

    def context_kv(self, ctx: Tensor, positions: Tensor) -> list[tuple[Tensor, Tensor]]:
        return [(ctx.unsqueeze(1), ctx.unsqueeze(1))]  # [B, 1, S, H]: the decoder appends along dim 2

    def block_inputs(self, anchor_embeds: Tensor, mask_embed: Tensor | None = None) -> Tensor:
        B, N, H = anchor_embeds.shape
        mask = (self.mask_embedding if mask_embed is None else mask_embed).to(anchor_embeds.dtype)
        return torch.cat([anchor_embeds.unsqueeze(2), mask.expand(B, N, self.block_size - 1, H)], dim=2)

    def run_layers(self, blocks: Tensor, anchors: Tensor, ctx_kv: list[tuple[Tensor, Tensor]], mask) -> Tensor:
        ctx = ctx_kv[0][0][:, 0]  # [B, S, H]
        visible = torch.arange(ctx.shape[1], device=ctx.device).view(1, 1, -1) < anchors.unsqueeze(-1)  # [B, N, S]
        if mask is not None:  # training: (anchors, anchor_valid, context_valid, block_size)
            visible = visible & mask[2].bool().unsqueeze(1)
        w = visible.to(ctx.dtype)
        mean = (w @ ctx) / w.sum(-1, keepdim=True).clamp(min=1)  # [B, N, H]
        return self.out(blocks + mean.unsqueeze(2) + self.slot[: blocks.shape[2]])

    def forward(self, context: Tensor, context_valid: Tensor, anchor_embeds: Tensor, anchors: Tensor,
                anchor_valid: Tensor, mask_embed: Tensor | None = None) -> Tensor:
        ctx = self.fuse_context(context)
        positions = torch.arange(ctx.shape[1], device=ctx.device).expand(ctx.shape[:2])
        blocks = self.block_inputs(anchor_embeds.to(ctx.dtype), mask_embed)
        return self.run_layers(blocks, anchors, self.context_kv(ctx, positions),
                               (anchors, anchor_valid, context_valid, self.block_size))


def test_a_drafter_written_from_the_protocol_trains_and_decodes(recipe_factory, conversations, tmp_path,
                                                                tiny_target) -> None:
    with DRAFTERS.isolated():
        DRAFTERS.register("mean_context", config=MeanContextConfig)(MeanContextDrafter)
        doc = recipe_factory(tmp_path / "run")
        doc["drafter"] = {"name": "mean_context", "block_size": 4}
        recipe = validate_recipe(doc)
        torch.manual_seed(0)
        module = DraftTrainingModule(recipe.resolved, recipe=recipe)
    drafter = module.drafter
    assert isinstance(drafter, MeanContextDrafter) and isinstance(drafter, Drafter)

    # training: the module's own step
    data = ChatDataModule(recipe.data, module.target.tokenizer, seed=0, conversations=conversations)
    data.setup("fit")
    batch = next(iter(data.train_dataloader()))
    loss, per_term, parts = module.step(batch, module.train_generator(0))
    assert torch.isfinite(loss) and parts.mask.sum() > 0 and set(per_term) == {"ce"}
    loss.backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in drafter.parameters())
    assert all(p.grad is None for p in module.target.parameters())

    # decoding: the engine drives the same drafter block by block; greedy output stays the target's
    drafter.eval()
    prompt = module.target.tokenizer("Hello there, how are you?")["input_ids"]
    with torch.no_grad():
        spec = SpeculativeDecoder.for_drafter(module.target, drafter, module.vocab, "single", eos_ids=set())
        out = spec.generate(prompt, max_new_tokens=12)
        base = target_only_decode(module.target, prompt, max_new_tokens=12, eos_ids=set())
    assert out.tokens == base.tokens and len(out.tokens) == 12
    assert all(st.width == drafter.block_size for st in out.steps)
