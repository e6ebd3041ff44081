"""Train/serve parity: on the real decode's anchors, the training forward must accept exactly what decoding did."""
from __future__ import annotations

from decoding_setup import NEW_TOKENS

import specframe.drafters.attention as attention
from specframe.evaluation.parity import format_parity, parity_for_prompt, parity_report


def test_tau_sim_equals_tau_real_step_for_step(target, prompts, fitted_drafter):
    for prompt in prompts:
        r = parity_for_prompt(target, fitted_drafter, None, prompt, max_new_tokens=NEW_TOKENS)
        assert r.accepted_sim == r.accepted_real
        assert r.drafts_sim == r.drafts_real  # every slot, not only the accepted prefix
    rep = parity_report(target, fitted_drafter, None, prompts, max_new_tokens=NEW_TOKENS)
    assert rep["tau_sim"] == rep["tau_real"] and rep["tau_real"] > 1.5  # multi-token acceptance was exercised
    assert rep["steps_with_equal_accepted_length"] == rep["steps"] > 0
    assert "τ_sim" in format_parity(rep)


def test_parity_exposes_a_context_leak(target, prompts, fitted_drafter, monkeypatch):
    """The known bug: training lets a block see context up to AND including its anchor (<= instead of <)."""
    honest = attention.block_visibility

    def leaky(anchors, anchor_valid, context_valid, block_size):
        return honest(anchors + 1, anchor_valid, context_valid, block_size)

    monkeypatch.setattr(attention, "block_visibility", leaky)
    rep = parity_report(target, fitted_drafter, None, prompts, max_new_tokens=NEW_TOKENS)
    equal, total = map(int, rep["draft_slots_equal"].split("/"))
    assert equal < total
