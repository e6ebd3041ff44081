"""Real decoding against the reference's own loop: `dflash_generate` and our engine, same exported weights,
float32, temperature 0 -> identical tokens and identical tokens committed per verify step.

Fast here on the tiny target with a drafter fitted to draft part of each continuation right (so steps accept
several drafts, not only the bonus). The SmolLM2 version over MT-Bench, HumanEval and GSM8K prompts is
tools/dflash_reference_parity.py (slow-marked below; docs/serving.md has its figures).
"""
from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

pytest.importorskip("dflash.model", reason="reference: pip install --no-deps dflash==0.1.0")

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "decoding"))
from decoding_setup import BLOCK, NEW_TOKENS, QUESTIONS, fit_drafter, make_drafter, single_thread  # noqa: E402

from specframe.data.chat import render_prompt  # noqa: E402
from specframe.decoding.engine import SpeculativeDecoder, target_only_decode  # noqa: E402
from specframe.export.reference import load_reference, reference_generate  # noqa: E402
from specframe.export.writer import export_drafter  # noqa: E402
from specframe.targets import TARGETS  # noqa: E402


def test_dflash_generate_and_our_engine_agree_step_by_step(tmp_path) -> None:
    with single_thread():
        target = TARGETS.build("tiny", {"initializer_range": 0.3})
        prompts = [render_prompt(target.tokenizer, [{"role": "user", "content": q}]) for q in QUESTIONS]
        refs = [target_only_decode(target, p, max_new_tokens=NEW_TOKENS, eos_ids=set()).tokens for p in prompts]
        drafter = fit_drafter(make_drafter(target), target, prompts, refs)  # frozen-row mask: serves anywhere
        export_drafter(drafter, target, None, tmp_path / "export", engine="reference")
        ref = load_reference(tmp_path / "export")
        ours_dec = SpeculativeDecoder.for_drafter(target, drafter, None, "single", eos_ids=set())
        accepted_any = 0
        for p, want in zip(prompts, refs):
            ours = ours_dec.generate(p, max_new_tokens=NEW_TOKENS)
            theirs = reference_generate(ref, target, p, max_new_tokens=NEW_TOKENS, eos_ids=set())
            assert ours.tokens == theirs["tokens"] == want
            assert [s.committed for s in ours.steps] == theirs["per_step"]
            accepted_any += sum(s.accepted for s in ours.steps)
    assert accepted_any > 0  # the comparison covers multi-token steps, not only bonus tokens


@pytest.mark.slow
def test_smollm2_parity_tool(tmp_path) -> None:
    """The SmolLM2 run of tools/dflash_reference_parity.py, with an untrained drafter exported from memory."""
    import importlib.util

    path = Path(__file__).resolve().parents[3] / "tools" / "dflash_reference_parity.py"
    spec = importlib.util.spec_from_file_location("dflash_reference_parity", path)
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    from specframe.drafters import DRAFTERS

    target = TARGETS.build("hf", {"model": "smollm2-135m-instruct"})
    with torch.random.fork_rng():
        torch.manual_seed(0)
        drafter = DRAFTERS.build("block_diffusion", {"block_size": 8}, spec=target.spec).eval()
    export_drafter(drafter, target, None, tmp_path / "export", engine="reference")
    ref = load_reference(tmp_path / "export")
    dec = SpeculativeDecoder.for_drafter(target, drafter, None, "single")
    for pid, ids in tool.first_turn_prompts(target.tokenizer, 1, tool.GSM8K if Path(tool.GSM8K).is_file() else None):
        ours = dec.generate(ids, max_new_tokens=24)
        theirs = reference_generate(ref, target, ids, max_new_tokens=24, eos_ids=dec.eos_ids)
        assert ours.tokens == theirs["tokens"], pid
        assert [s.committed for s in ours.steps] == theirs["per_step"], pid
