"""The evaluation runner: what each summary number is, multi-turn prompts, reports on disk."""
from __future__ import annotations

import json

import pytest
from decoding_setup import BLOCK

from specframe.data.chat import render_prompt
from specframe.decoding.engine import eos_ids_of, target_only_decode
from specframe.evaluation.runner import (EvalSettings, Evaluator, ResponseRecord, markdown, response_text,
                                         summarize, write_report)


def record(accepted, committed, widths, seconds, target_seconds=None, identical=None):
    return ResponseRecord(benchmark="b", prompt_id="p", turn=0, prompt_tokens=5, tokens=1 + sum(committed),
                          stop_reason="max_new_tokens", accepted=accepted, committed=committed, widths=widths,
                          tau=sum(committed) / len(committed) if committed else None, decode_seconds=seconds,
                          decode_tokens=sum(committed), target_decode_seconds=target_seconds,
                          target_decode_tokens=sum(committed) if target_seconds else None, identical=identical)


def test_summary_numbers():
    recs = [record([3, 0, 1], [4, 1, 2], [4, 4, 4], 1.0, 3.5, True),  # τ 7/3
            record([3], [2], [4], 1.0, 1.5, True),  # last step cut: committed 2 of 4, τ 2
            record([], [], [], 0.0)]  # the prefill's token ended it: no τ
    s = summarize(recs, BLOCK)
    assert s["tau"] == pytest.approx((7 / 3 + 2) / 2)  # mean over responses that had a verify step
    assert s["tau_pooled"] == pytest.approx(9 / 4)  # committed tokens / verify steps
    assert s["accept_hist"] == [1, 1, 0, 2]
    assert s["slot_acceptance"] == pytest.approx([3 / 4, 2 / 4, 2 / 4])  # P(a >= k)
    assert s["verify_width"] == 4
    assert s["spec_tokens_per_s"] == pytest.approx(9 / 2)
    assert s["target_tokens_per_s"] == pytest.approx(9 / 5)
    assert s["speedup"] == pytest.approx(5 / 2)  # target time per token / speculative time per token
    assert s["identical"] == "2/2"


def test_oracle_only_at_temperature_zero():
    with pytest.raises(ValueError, match="temperature 0"):
        EvalSettings(oracle=True, temperature=0.7)


@pytest.fixture
def prompt_file(tmp_path):
    path = tmp_path / "prompts.jsonl"
    rows = [{"id": "a", "turns": ["Hello there", "Now say it backwards."]}, {"id": "b", "prompt": "What is 2+2?"}]
    path.write_text("\n".join(json.dumps(r) for r in rows))
    return path


def test_evaluator_multi_turn_lossless_and_oracle(target, fitted_drafter, prompt_file, tmp_path):
    settings = EvalSettings(benchmarks=[str(prompt_file)], num_prompts=2, max_new_tokens=12, oracle=True,
                            progress=False)
    report = Evaluator(target, fitted_drafter, None, settings).run()
    summary = report["summary"][str(prompt_file)]
    assert summary["responses"] == 3  # two turns + one
    assert summary["identical"] == "3/3"
    assert sum(summary["accept_hist"]) == summary["verify_steps"]
    assert 1 <= summary["tau"] <= BLOCK and summary["oracle_tau"] >= summary["tau"]
    assert summary["verify_width"] == BLOCK
    # Turn 2 is asked after the model's own answer to turn 1 (= the target's greedy answer).
    tok, eos = target.tokenizer, eos_ids_of(target)
    first = [{"role": "user", "content": "Hello there"}]
    answer = target_only_decode(target, render_prompt(tok, first), max_new_tokens=12).tokens
    second = first + [{"role": "assistant", "content": response_text(tok, answer, eos)},
                      {"role": "user", "content": "Now say it backwards."}]
    responses = report["responses"]
    assert [r["turn"] for r in responses] == [0, 1, 0]
    assert responses[1]["prompt_tokens"] == len(render_prompt(tok, second))

    json_path, md_path = write_report(report, tmp_path / "eval", "test")
    assert json.loads(json_path.read_text())["summary"][str(prompt_file)]["responses"] == 3
    text = md_path.read_text()
    assert "| benchmark | responses | τ |" in text and "oracle τ" in text
    assert report["settings"]["linear_kernel"] == "small_batch" and "linear kernel small_batch" in text
    assert sorted(p.name for p in (tmp_path / "eval").iterdir()) == sorted([json_path.name, md_path.name])
    assert markdown(report).count("\n| all |") == 3  # the summary, histogram and per-slot tables


def test_self_selection_reports_its_width(target, fitted_drafter, prompt_file):
    settings = EvalSettings(benchmarks=[str(prompt_file)], num_prompts=1, max_new_tokens=12, progress=False,
                            strategy={"name": "self_selection", "num_drafts": 3})
    summary = Evaluator(target, fitted_drafter, None, settings).run()["summary"][str(prompt_file)]
    assert summary["identical"] == "2/2"
    assert BLOCK < summary["verify_width"] <= 1 + 3 * (BLOCK - 1)


@pytest.mark.parametrize("kernel", ["small_batch", "f_linear"])
def test_linear_kernel_setting_reaches_both_decodings(target, fitted_drafter, prompt_file, routed_kernels, kernel):
    """`eval.linear_kernel` decides which modules both decodings route through the small-batch kernel."""
    routed = routed_kernels
    settings = EvalSettings(benchmarks=[str(prompt_file)], num_prompts=1, max_new_tokens=6, progress=False,
                            warmup=False, linear_kernel=kernel)
    report = Evaluator(target, fitted_drafter, None, settings).run()
    assert report["settings"]["linear_kernel"] == kernel
    assert report["summary"][str(prompt_file)]["identical"] == "2/2"
    if kernel == "small_batch":  # speculative: target and drafter; target-only: the target
        assert (target.model, fitted_drafter) in routed and (target.model,) in routed
    else:
        assert routed and all(m == () for m in routed)


def test_linear_kernel_typo_names_the_choices():
    with pytest.raises(ValueError, match=r"linear_kernel must be one of \['small_batch', 'f_linear'\].*small_batch"):
        EvalSettings(linear_kernel="small-batch")
