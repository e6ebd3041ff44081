"""Rendering conversations with a tokenizer's chat template, for training and for generation.

Training needs to know which tokens the model should learn to produce: the assistant's words and the token
that ends its turn, not the system prompt, the user's words or the role headers the template inserts.
:func:`render_conversation` finds those tokens from the template itself rather than from hard-coded ChatML
markers, so it works for any chat template that renders a conversation as a growing string:

1. render ``messages[:i]`` with the generation prompt and ``messages[:i + 1]`` for each assistant turn ``i``;
   the assistant content sits right after the first string inside the second one, which gives its character
   span, extended over the special end-of-turn token (``<|im_end|>``) that follows it;
2. tokenize the full rendering once with ``return_offsets_mapping=True`` and set the loss mask on the tokens
   whose characters start inside an assistant span.

:func:`render_prompt` renders the turns so far plus the generation prompt, for generation and evaluation.
"""
from __future__ import annotations

import logging
from typing import Any

logger = logging.getLogger(__name__)

_ROLES = ("system", "user", "assistant")


def _validate(messages: Any, where: str) -> list[dict[str, str]]:
    if not isinstance(messages, list) or not messages:
        raise ValueError(
            f"{where}: messages must be a non-empty list of {{'role', 'content'}} dicts, got {messages!r:.200}"
        )
    for i, message in enumerate(messages):
        valid = isinstance(message, dict) and message.get("role") in _ROLES
        if not valid or not isinstance(message.get("content"), str):
            raise ValueError(
                f"{where}: message {i} must be a dict with 'role' in {_ROLES} and a string 'content', got "
                f"{message!r:.200}"
            )
    return messages


def _render(tokenizer: Any, messages: list[dict[str, str]], add_generation_prompt: bool, kwargs: dict) -> str:
    if not messages:
        return ""  # some templates index messages[0]; an empty prefix renders as nothing anyway
    text = tokenizer.apply_chat_template(
        messages, tokenize=False, add_generation_prompt=add_generation_prompt, **kwargs
    )
    if not isinstance(text, str):
        raise RuntimeError(f"apply_chat_template(tokenize=False) returned {type(text).__name__}, expected a string")
    return text


def _special_strings(tokenizer: Any) -> list[str]:
    """Special/added token strings, longest first, for recognising the end-of-turn token after a reply."""
    tokens = set(getattr(tokenizer, "all_special_tokens", []) or [])
    added = getattr(tokenizer, "get_added_vocab", None)
    if callable(added):
        tokens.update(added().keys())
    if getattr(tokenizer, "eos_token", None):
        tokens.add(tokenizer.eos_token)
    return sorted((t for t in tokens if t), key=len, reverse=True)


def _assistant_spans(
    tokenizer: Any, messages: list[dict[str, str]], full: str, kwargs: dict
) -> list[tuple[int, int]]:
    """Character spans in ``full`` of each assistant turn's content plus its end-of-turn token."""
    specials = _special_strings(tokenizer)
    spans: list[tuple[int, int]] = []
    cursor = 0
    for i, message in enumerate(messages):
        if message["role"] != "assistant":
            continue
        header = _render(tokenizer, messages[:i], True, kwargs)
        content = message["content"]
        # Templates often strip the content (e.g. Llama 3's `| trim`): look for the stripped text as well.
        candidates = [c for c in dict.fromkeys((content, content.strip())) if c]
        start = -1
        if full.startswith(header):
            # The usual case: the reply follows the generation prompt, possibly after template whitespace.
            for candidate in candidates:
                found = full.find(candidate, len(header))
                if found >= 0 and not full[len(header):found].strip():
                    start, content = found, candidate
                    break
        if start < 0:
            # The template rewrites earlier turns (e.g. drops reasoning from history): search from the end
            # of the previous assistant turn instead.
            for candidate in candidates:
                found = full.find(candidate, max(cursor, 0))
                if found >= 0:
                    start, content = found, candidate
                    break
        if start < 0:
            logger.warning(
                "Assistant turn %d was not found verbatim in the chat-template rendering; it gets no loss", i
            )
            continue
        end = start + len(content)
        # Extend over the end-of-turn special token, allowing only whitespace between (none for ChatML).
        rest = full[end:]
        stripped = rest.lstrip(" \t")
        for special in specials:
            if stripped.startswith(special):
                end += len(rest) - len(stripped) + len(special)
                break
        spans.append((start, end))
        cursor = end
    return spans


def render_conversation(
    tokenizer: Any,
    messages: list[dict[str, str]],
    max_length: int,
    chat_template_kwargs: dict[str, Any] | None = None,
) -> dict[str, list[int]]:
    """Tokenize a conversation with the chat template and mark the tokens to train on.

    Args:
        tokenizer: a fast Hugging Face tokenizer with a chat template (it must support
            ``return_offsets_mapping``).
        messages: the conversation, OpenAI format (``role`` in system/user/assistant, ``content`` a string).
        max_length: keep at most this many tokens (the rest is cut off, mask included).
        chat_template_kwargs: extra variables for the template, e.g. ``{"enable_thinking": False}``.

    Returns:
        ``{"input_ids": [...], "loss_mask": [...]}`` of equal length; ``loss_mask`` is 1 on the tokens of
        assistant content and each assistant turn's end-of-turn token, 0 elsewhere (system prompt - including
        one the template adds by itself -, user turns, role headers, separators).

    Raises:
        ValueError: on malformed messages or a max_length that is not a positive integer.
        RuntimeError: if the tokenizer has no chat template or no offset mapping.
    """
    if not isinstance(max_length, int) or isinstance(max_length, bool) or max_length <= 0:
        raise ValueError(f"max_length must be a positive integer, got {max_length!r}")
    _validate(messages, "render_conversation")
    if not getattr(tokenizer, "chat_template", None):
        raise RuntimeError(
            f"{type(tokenizer).__name__} has no chat template: set tokenizer.chat_template or use the tokenizer "
            "of an instruct/chat model"
        )
    kwargs = dict(chat_template_kwargs or {})
    full = _render(tokenizer, messages, False, kwargs)
    spans = _assistant_spans(tokenizer, messages, full, kwargs)

    try:
        # verbose=False: a long conversation is cut to max_length below, so the tokenizer need not warn.
        encoded = tokenizer(full, add_special_tokens=False, return_offsets_mapping=True, verbose=False)
    except NotImplementedError as err:  # slow (Python) tokenizers have no offsets
        raise RuntimeError(
            f"{type(tokenizer).__name__} cannot return offsets; load a fast tokenizer (use_fast=True)"
        ) from err
    input_ids = list(encoded["input_ids"])
    offsets = encoded["offset_mapping"]
    loss_mask = [0] * len(input_ids)
    k = 0  # spans and tokens are both in text order: one merge-like pass
    for t, (s, e) in enumerate(offsets):
        while k < len(spans) and spans[k][1] <= s:
            k += 1
        if k == len(spans):
            break
        if e > s and spans[k][0] <= s < spans[k][1]:
            loss_mask[t] = 1
    return {"input_ids": input_ids[:max_length], "loss_mask": loss_mask[:max_length]}


def render_prompt(
    tokenizer: Any,
    turns_so_far: list[dict[str, str]],
    chat_template_kwargs: dict[str, Any] | None = None,
) -> list[int]:
    """Token ids of the conversation so far followed by the assistant generation prompt.

    ``enable_thinking=False`` is passed to the template so that templates with a reasoning mode (Qwen3) answer
    directly; templates that do not use the variable ignore it.

    Args:
        tokenizer: a Hugging Face tokenizer with a chat template.
        turns_so_far: the messages so far, usually ending with a user turn.
        chat_template_kwargs: extra template variables; they override the default ``enable_thinking=False``.

    Returns:
        The prompt's token ids, ready for generation.
    """
    _validate(turns_so_far, "render_prompt")
    if not getattr(tokenizer, "chat_template", None):
        raise RuntimeError(f"{type(tokenizer).__name__} has no chat template: set tokenizer.chat_template")
    kwargs = {"enable_thinking": False, **(chat_template_kwargs or {})}
    text = _render(tokenizer, turns_so_far, True, kwargs)
    # The template already wrote any bos it wants: adding special tokens again would double it.
    return list(tokenizer(text, add_special_tokens=False)["input_ids"])


def eos_ids(model: Any, tokenizer: Any) -> list[int]:
    """End-of-sequence ids: the model's generation config's (an int or a list), then the tokenizer's eos.

    The one lookup shared by decoding (when a response ends) and regeneration (when a reply ends).
    """
    extra = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
    ids = [] if extra is None else [int(e) for e in (extra if isinstance(extra, (list, tuple)) else [extra])]
    own = getattr(tokenizer, "eos_token_id", None)
    if own is not None and int(own) not in ids:
        ids.append(int(own))
    return ids
