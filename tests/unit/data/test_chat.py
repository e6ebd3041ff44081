"""Tests for specframe.data.chat (loss masks from chat templates) and the tiny byte-level tokenizer."""
from __future__ import annotations

import pytest

from specframe.data.chat import render_conversation, render_prompt
from specframe.data.tiny_tokenizer import CHATML_TEMPLATE, tiny_tokenizer


@pytest.fixture(scope="module")
def tok():
    return tiny_tokenizer()


def _masked_runs(tokenizer, ids: list[int], mask: list[int]) -> list[str]:
    """Decode each maximal run of masked tokens separately."""
    runs, current = [], []
    for token, m in zip(ids, mask):
        if m:
            current.append(token)
        elif current:
            runs.append(current)
            current = []
    if current:
        runs.append(current)
    return [tokenizer.decode(run, skip_special_tokens=False) for run in runs]


def _expected_runs(messages: list[dict], end_of_turn: str) -> list[str]:
    return [m["content"] + end_of_turn for m in messages if m["role"] == "assistant"]


MULTI_TURN = [
    {"role": "system", "content": "You are terse."},
    {"role": "user", "content": "What is 2+2?"},
    {"role": "assistant", "content": "4"},
    {"role": "user", "content": "And in words? Ünïcödé 🙂"},
    {"role": "assistant", "content": "Four.\nThat's it — ✓ 🙂"},
]


def test_tiny_tokenizer_basics(tok) -> None:
    assert len(tok) == 260
    assert tok.eos_token == "<|im_end|>" and tok.eos_token_id == 257
    assert tok.pad_token == "<|pad|>" and tok.pad_token_id == 259
    assert tok.bos_token is None
    text = "héllo 🙂 wörld <|im_end|>"
    encoded = tok(text, add_special_tokens=False, return_offsets_mapping=True)
    assert encoded["input_ids"][:2] == [ord("h"), 0xC3]  # one token per UTF-8 byte
    assert encoded["input_ids"][-1] == 257
    assert tok.decode(encoded["input_ids"]) == text
    assert encoded["offset_mapping"][-1] == (len(text) - len("<|im_end|>"), len(text))
    assert tok.chat_template == CHATML_TEMPLATE


def test_mask_single_turn(tok) -> None:
    messages = [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello there"}]
    out = render_conversation(tok, messages, max_length=1000)
    text = tok.decode(out["input_ids"])
    assert text == "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\nHello there<|im_end|>\n"
    assert len(out["input_ids"]) == len(out["loss_mask"])
    assert _masked_runs(tok, out["input_ids"], out["loss_mask"]) == ["Hello there<|im_end|>"]
    # The role header and the newline after <|im_end|> are not trained on.
    header = tok("<|im_start|>assistant\n", add_special_tokens=False)["input_ids"]
    start = out["loss_mask"].index(1)
    assert out["input_ids"][start - len(header):start] == header
    assert out["loss_mask"][-1] == 0 and out["input_ids"][-1] == ord("\n")


def test_mask_multi_turn_with_system(tok) -> None:
    out = render_conversation(tok, MULTI_TURN, max_length=1000)
    assert _masked_runs(tok, out["input_ids"], out["loss_mask"]) == _expected_runs(MULTI_TURN, "<|im_end|>")
    assert sum(out["loss_mask"]) == sum(
        len(tok(r, add_special_tokens=False)["input_ids"]) for r in _expected_runs(MULTI_TURN, "<|im_end|>")
    )


def test_mask_assistant_text_also_in_user_turn(tok) -> None:
    # The reply "4" also occurs in the user's question: only the reply may be masked.
    messages = [{"role": "user", "content": "4 4 4"}, {"role": "assistant", "content": "4"},
                {"role": "user", "content": "4?"}, {"role": "assistant", "content": "4"}]
    out = render_conversation(tok, messages, max_length=1000)
    assert _masked_runs(tok, out["input_ids"], out["loss_mask"]) == ["4<|im_end|>", "4<|im_end|>"]


def test_mask_other_template_style() -> None:
    # A Llama-3-like template: a bos-like token first, trimmed content, a different end-of-turn token and no
    # newline after it. The mask must follow the template, not ChatML conventions.
    tokenizer = tiny_tokenizer()
    tokenizer.chat_template = (
        "{{ '<|endoftext|>' }}{% for m in messages %}{{ '<|im_start|>' + m['role'] + '<|pad|>\\n\\n' }}"
        "{{ m['content'] | trim }}{{ '<|endoftext|>' }}{% endfor %}"
        "{% if add_generation_prompt %}{{ '<|im_start|>assistant<|pad|>\\n\\n' }}{% endif %}"
    )
    messages = [{"role": "user", "content": "  hi  "}, {"role": "assistant", "content": " Hello \n"},
                {"role": "user", "content": "again"}, {"role": "assistant", "content": "Bye"}]
    out = render_conversation(tokenizer, messages, max_length=1000)
    runs = _masked_runs(tokenizer, out["input_ids"], out["loss_mask"])
    assert runs == ["Hello<|endoftext|>", "Bye<|endoftext|>"]


def test_truncation(tok) -> None:
    full = render_conversation(tok, MULTI_TURN, max_length=10_000)
    for n in (1, 17, len(full["input_ids"]) - 3):
        cut = render_conversation(tok, MULTI_TURN, max_length=n)
        assert cut["input_ids"] == full["input_ids"][:n]
        assert cut["loss_mask"] == full["loss_mask"][:n]
    with pytest.raises(ValueError, match="max_length"):
        render_conversation(tok, MULTI_TURN, max_length=0)


def test_invalid_messages(tok) -> None:
    with pytest.raises(ValueError, match="message 1"):
        render_conversation(tok, [{"role": "user", "content": "x"}, {"role": "bot", "content": "y"}], 100)
    with pytest.raises(ValueError, match="non-empty list"):
        render_prompt(tok, [])


def test_render_prompt(tok) -> None:
    ids = render_prompt(tok, [{"role": "user", "content": "Hi"}])
    assert tok.decode(ids) == "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n"
    # A conversation's rendering up to the reply equals the prompt rendering: training and generation agree.
    out = render_conversation(tok, [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Yo"}], 100)
    assert out["input_ids"][: len(ids)] == ids


@pytest.mark.slow
def test_mask_with_smollm2_tokenizer() -> None:
    from transformers import AutoTokenizer

    from specframe.targets.smollm2 import smollm2_folder

    tokenizer = AutoTokenizer.from_pretrained(smollm2_folder())
    for messages in (MULTI_TURN, MULTI_TURN[1:]):  # with and without a system turn (template adds a default)
        out = render_conversation(tokenizer, messages, max_length=4096)
        text = tokenizer.decode(out["input_ids"])
        if messages[0]["role"] != "system":
            assert "You are a helpful AI assistant named SmolLM" in text
        assert _masked_runs(tokenizer, out["input_ids"], out["loss_mask"]) == _expected_runs(messages, "<|im_end|>")
    ids = render_prompt(tokenizer, [{"role": "user", "content": "Hi"}])
    assert tokenizer.decode(ids).endswith("<|im_start|>assistant\n")
