"""Train/serve parity: τ_sim (the training forward, teacher-forced) and τ_real (real decoding) on the SAME blocks.

For each prompt:
  1. decode for real at temperature 0 (the output is the target's greedy continuation) and keep, per verify
     step, its anchor position, its drafts and its accepted length a_real;
  2. build the sequence prompt + the target's greedy continuation, long enough (max_new_tokens + B, EOS not
     stopping it) that every block of step 1 has labels;
  3. run the target over it once (teacher-forced): tapped features, and labels = its argmax at every position
     (the target's greedy token for exactly the context the real decode had);
  4. run the drafter's TRAINING forward with blocks at the real decode's anchors; a_sim = the prefix of slots
     whose argmax equals the label (metrics.accepted_prefix, the τ_sim of training).
If training and serving agree, a_sim == a_real at every step and the drafts are identical (up to float
rounding: exact at float32 on a small model). A gap means the drafter sees something different in training
and serving (context visibility, label shift, positions, mask token, template).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from specframe.decoding.engine import SpeculativeDecoder, eos_ids_of, target_only_decode
from specframe.metrics import accepted_prefix


@dataclass(kw_only=True)
class ParityResult:
    """One prompt: per verify step, the real and the simulated accepted length and drafts."""

    anchors: list[int]
    accepted_real: list[int]
    accepted_sim: list[int]
    drafts_real: list[list[int]]
    drafts_sim: list[list[int]]
    tau_real_committed: float | None  # the decode's τ (the cut last step counts what it committed)

    @property
    def tau_real(self) -> float | None:
        """Mean of a_real + 1 over steps (uncut, to compare with τ_sim block for block)."""
        return sum(a + 1 for a in self.accepted_real) / len(self.accepted_real) if self.accepted_real else None

    @property
    def tau_sim(self) -> float | None:
        return sum(a + 1 for a in self.accepted_sim) / len(self.accepted_sim) if self.accepted_sim else None


@torch.no_grad()
def parity_for_prompt(target: Any, drafter: nn.Module, vocab: Any, prompt_ids: list[int], *,
                      max_new_tokens: int) -> ParityResult:
    """τ_real and τ_sim on the blocks the real decode used (block size: the drafter's trained one)."""
    B = drafter.block_size
    device = next(drafter.parameters()).device
    real = SpeculativeDecoder.for_drafter(target, drafter, vocab, "single", block_size=B).generate(
        prompt_ids, max_new_tokens=max_new_tokens)
    if not real.steps:
        return ParityResult(anchors=[], accepted_real=[], accepted_sim=[], drafts_real=[], drafts_sim=[],
                            tau_real_committed=None)
    greedy = target_only_decode(target, prompt_ids, max_new_tokens=max_new_tokens + B, eos_ids=eos_ids_of(target),
                                stop_on_eos=False)
    ids = torch.tensor([prompt_ids + greedy.tokens], device=device)
    valid = torch.ones_like(ids, dtype=torch.bool)
    out = target(ids, valid, with_logits=True)
    labels = torch.cat([ids[:, :1], out.logits.argmax(-1)[:, :-1]], dim=1)  # labels[p] = argmax of logits at p-1
    anchors = torch.tensor([[s.anchor for s in real.steps]], device=device)
    mask_id = getattr(drafter, "mask_token_id", None)
    mask_embed = None if mask_id is None else target.embed(torch.tensor(mask_id, device=device))
    hidden = drafter(out.hidden, valid, target.embed(ids.gather(1, anchors)), anchors,
                     torch.ones_like(anchors, dtype=torch.bool), mask_embed)  # [1, N, B, H]
    weight = vocab.restrict_rows(target.lm_head_weight) if vocab is not None else target.lm_head_weight
    logits = F.linear(hidden[0, :, 1:].to(weight.dtype), weight)  # [N, B-1, V']
    drafts = vocab.to_target(logits.argmax(-1)) if vocab is not None else logits.argmax(-1)
    slot_labels = labels[0, anchors[0].unsqueeze(1) + torch.arange(1, B, device=device)]  # [N, B-1]
    a_sim = accepted_prefix(drafts == slot_labels, torch.ones_like(drafts, dtype=torch.bool))
    return ParityResult(
        anchors=anchors[0].tolist(), accepted_real=[s.accepted for s in real.steps], accepted_sim=a_sim.tolist(),
        drafts_real=[list(s.draft) for s in real.steps], drafts_sim=drafts.tolist(), tau_real_committed=real.tau)


def parity_report(target: Any, drafter: nn.Module, vocab: Any, prompts: list[list[int]], *,
                  max_new_tokens: int) -> dict[str, Any]:
    """Side-by-side τ_real and τ_sim over prompts, with how often the two agree step by step."""
    results = [parity_for_prompt(target, drafter, vocab, p, max_new_tokens=max_new_tokens) for p in prompts]
    real = [a for r in results for a in r.accepted_real]
    sim = [a for r in results for a in r.accepted_sim]
    slots = [(x == y) for r in results for dr, ds in zip(r.drafts_real, r.drafts_sim) for x, y in zip(dr, ds)]
    per_response = [(r.tau_real, r.tau_sim) for r in results if r.accepted_real]
    return {
        "prompts": len(prompts),
        "steps": len(real),
        "tau_real": sum(t for t, _ in per_response) / len(per_response) if per_response else None,
        "tau_sim": sum(t for _, t in per_response) / len(per_response) if per_response else None,
        "tau_real_committed": _mean([r.tau_real_committed for r in results if r.tau_real_committed is not None]),
        "steps_with_equal_accepted_length": sum(x == y for x, y in zip(real, sim)),
        "draft_slots_equal": f"{sum(slots)}/{len(slots)}",
        "per_response": [{"tau_real": t, "tau_sim": s} for t, s in per_response],
    }


def _mean(xs: list[float]) -> float | None:
    return sum(xs) / len(xs) if xs else None


def format_parity(rep: dict[str, Any]) -> str:
    def f(x: Any) -> str:
        return "-" if x is None else f"{x:.3f}"

    return (f"train/serve parity over {rep['prompts']} prompts, {rep['steps']} verify steps (same anchors):\n"
            f"  τ_real (decode, a+1 per step)   {f(rep['tau_real'])}\n"
            f"  τ_sim  (training forward)       {f(rep['tau_sim'])}\n"
            f"  τ_real (committed per step)     {f(rep['tau_real_committed'])}\n"
            f"  steps with equal accepted length: {rep['steps_with_equal_accepted_length']}/{rep['steps']}; "
            f"equal draft tokens: {rep['draft_slots_equal']}")
