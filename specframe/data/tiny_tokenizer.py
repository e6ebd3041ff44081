"""A tiny byte-level ChatML tokenizer, built offline, for unit tests and toy runs.

Every UTF-8 byte is one token (ids 0-255, no merges), so any text round-trips exactly and character offsets
are available; four special tokens follow (ids 256-259). The chat template is ChatML, the format SmolLM2 and
Qwen use, so code tested against this tokenizer exercises the same role headers and end-of-turn handling as a
real target, without downloading anything.
"""
from __future__ import annotations

from functools import lru_cache

IM_START = "<|im_start|>"
IM_END = "<|im_end|>"
ENDOFTEXT = "<|endoftext|>"
PAD = "<|pad|>"
SPECIAL_TOKENS = (IM_START, IM_END, ENDOFTEXT, PAD)

CHATML_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)


@lru_cache(maxsize=1)
def _bytes_to_unicode() -> dict[int, str]:
    """GPT-2's reversible byte -> printable character map, which byte-level BPE vocabularies are written in."""
    printable = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1))
    printable += list(range(ord("®"), ord("ÿ") + 1))
    chars = printable[:]
    extra = 0
    for b in range(256):
        if b not in printable:
            printable.append(b)
            chars.append(256 + extra)
            extra += 1
    return {b: chr(c) for b, c in zip(printable, chars)}


def tiny_tokenizer():
    """Build the byte-level ChatML tokenizer (260 tokens).

    Ids 0-255 are the bytes (id == byte value), then ``<|im_start|>`` (256), ``<|im_end|>`` (257, also eos),
    ``<|endoftext|>`` (258) and ``<|pad|>`` (259, pad). There is no bos token. It supports
    ``return_offsets_mapping`` and ``apply_chat_template`` like any fast Hugging Face tokenizer.

    Returns:
        A ``transformers.PreTrainedTokenizerFast``; each call builds a new one (about a millisecond).
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {char: byte for byte, char in _bytes_to_unicode().items()}
    backend = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    # use_regex=False: no GPT-2 word splitting is needed without merges, and it keeps offsets plain.
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    backend.decoder = decoders.ByteLevel()
    backend.add_special_tokens(list(SPECIAL_TOKENS))

    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend,
        eos_token=IM_END,
        pad_token=PAD,
        bos_token=None,
        unk_token=None,
        model_max_length=1 << 20,
    )
    tokenizer.chat_template = CHATML_TEMPLATE
    return tokenizer
