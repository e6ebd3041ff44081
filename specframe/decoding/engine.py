"""Real speculative decoding at batch size 1, and the target-only decoding it is compared with.

One response, as `method.md` §6 describes it:

1. **Prefill.** The target runs over the prompt (P tokens) with a fresh KV cache and hidden states on; its
   last logits give the first new token. This token is the first anchor. Prefill is timed apart.
2. **Step** (repeated): the anchor is the last committed token, at position a; the target's cache and the
   drafter's context hold exactly the positions before it (0..a-1).
   * draft: one drafter forward over the block [anchor, mask, ...] gives logits for slots 1..B-1;
   * propose: the test-time strategy turns them into K candidate chains (K = 1: the argmax, or a sample);
   * verify: ONE target forward over the anchor and the drafts (a tree with merged prefixes when K > 1, under
     an ancestor mask) on the KV cache;
   * select: greedy longest-prefix at temperature 0, (multi-candidate) speculative sampling above
     (specframe/decoding/sampling.py); the target's token after the accepted drafts (the bonus) comes with it;
   * commit: the anchor's and the accepted drafts' keys/values stay in the target cache (crop, or index-select
     for a tree) and their tapped features are appended to the drafter's context; the bonus is the next anchor.
3. **Stop** on an end-of-sequence token (the step is cut right after the first EOS among its tokens) or when
   exactly `max_new_tokens` tokens were generated (the step is cut there).

Conventions (docs/evaluation.md):
* A step's `accepted` is a, the number of drafts the verification accepted (0..B-1), before any cut; its
  `committed` is the tokens it added to the output: a + 1, fewer only in a last step cut by EOS or
  `max_new_tokens`. τ of a response = committed tokens / verify steps (so τ <= B; the cut last step counts
  what it really committed). The prefill's token belongs to no step.
* decode time runs from the end of the prefill to the last token, and includes the drafter reading the
  prompt's features (a prompt-length cost the target-only baseline does not pay: counting it is conservative).
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Literal

import torch
from torch import Tensor, nn

from specframe.decoding.drafts import BlockDrafterSource, DraftSource, OracleDraftSource
from specframe.decoding.sampling import probabilities, sample
from specframe.decoding.small_batch import small_batch_linears
from specframe.decoding.target_cache import (cache_length, forward_with_cache, keep_positions, new_cache,
                                             tree_attention_mask)
from specframe.decoding.tree import build_tree
from specframe.errors import ConfigError
from specframe.interfaces import DecodeStrategy

StopReason = Literal["eos", "max_new_tokens"]


@dataclass(frozen=True, kw_only=True)
class StepRecord:
    """One verify step."""

    anchor: int  # absolute position of the anchor (slot 0)
    accepted: int  # a: drafts the target accepted, 0..B-1, before any EOS / max_new_tokens cut
    committed: int  # tokens this step added to the output (a + 1 unless the step was cut)
    width: int  # tokens the target verified in this forward (B for one draft)
    draft: tuple[int, ...] = ()  # the selected chain's drafts, slots 1..B-1


@dataclass(kw_only=True)
class DecodeResult:
    """One generated response with its per-step record and timings."""

    prompt_length: int
    tokens: list[int]  # generated tokens (the prefill's first), ending with EOS when it stopped on one
    steps: list[StepRecord]
    prefill_seconds: float
    decode_seconds: float  # after the prefill; see the module docstring
    stop_reason: StopReason
    block_size: int
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def decode_tokens(self) -> int:
        """Tokens produced after the prefill (what decode time is divided by)."""
        return len(self.tokens) - 1

    @property
    def tau(self) -> float | None:
        """Committed tokens per verify step (None when the prefill's token ended the response)."""
        if not self.steps:
            return None
        return sum(s.committed for s in self.steps) / len(self.steps)


def eos_ids_of(target: Any) -> set[int]:
    """End-of-sequence ids of a target: the tokenizer's eos plus the model's generation config's."""
    from specframe.data.chat import eos_ids

    return set(eos_ids(getattr(target, "model", None), getattr(target, "tokenizer", None)))


def build_strategy(spec: str | dict[str, Any] | DecodeStrategy | None = None,
                   where: str = "eval.strategy") -> DecodeStrategy:
    """A test-time strategy from a name or {name, **options}: an entry of the DECODE_STRATEGIES registry."""
    from specframe.decoding.strategies import DECODE_STRATEGIES

    if spec is not None and not isinstance(spec, (str, dict)):
        return spec
    opts = {"name": spec} if isinstance(spec, str) else dict(spec or {"name": "single"})
    name = str(opts.pop("name", "single"))
    check_strategy_name(name, where)
    return DECODE_STRATEGIES.build(name, opts, where)


def check_strategy_name(name: str, where: str = "eval.strategy") -> None:
    """A ConfigError when `name` is a training-time alignment strategy, or (with a suggestion) no strategy at all."""
    from specframe.alignment import ALIGNMENTS
    from specframe.decoding.strategies import DECODE_STRATEGIES

    if name not in DECODE_STRATEGIES and name in ALIGNMENTS:
        raise ConfigError(f"{where}.name: '{name}' is a training-time alignment strategy; test-time strategies "
                          f"are {DECODE_STRATEGIES.names()}. List '{name}' under `alignment:` in the recipe instead.")
    DECODE_STRATEGIES.get(name, where=f"{where}.name")


def _features(hidden_states: tuple[Tensor, ...], taps: tuple[int, ...]) -> Tensor:
    """[1, n, F] concatenated tapped states; tap id t is the output of decoder layer t = hidden_states[t + 1]."""
    return torch.cat([hidden_states[t + 1] for t in taps], dim=-1)


def _pick(logits: Tensor, temperature: float, generator: torch.Generator | None) -> int:
    if temperature <= 0:
        return int(logits.argmax())
    return sample(probabilities(logits, temperature), generator)


def _check_tree_attention(model: Any) -> None:
    """A tree verify needs an attention that reads a custom 4D mask; flash kernels would silently ignore it."""
    impl = getattr(model.config, "_attn_implementation", None) or "eager"
    if impl not in ("sdpa", "eager"):
        raise ValueError(f"verifying several drafts at once needs the target's attention to take a 4D tree mask; "
                         f"its attn_implementation is {impl!r}. Load the target with attn_implementation 'sdpa' "
                         f"(target.attn_implementation: sdpa) or use eval.strategy single.")


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _check_budget(max_new_tokens: int, temperature: float) -> None:
    if not isinstance(max_new_tokens, int) or max_new_tokens < 1:
        raise ValueError(f"max_new_tokens must be an integer >= 1, got {max_new_tokens!r}")
    if temperature < 0:
        raise ValueError(f"temperature must be >= 0, got {temperature}")


class _Stopper:
    """Cuts a step's tokens at the first EOS and at the token budget, and says whether to stop."""

    def __init__(self, eos_ids: set[int], max_new_tokens: int, stop_on_eos: bool = True):
        self.eos = eos_ids if stop_on_eos else set()
        self.max_new_tokens = max_new_tokens

    def cut(self, new: list[int], generated: int) -> list[int]:
        new = new[: self.max_new_tokens - generated]
        for i, tok in enumerate(new):
            if tok in self.eos:
                return new[: i + 1]
        return new

    def reason(self, tokens: list[int]) -> StopReason | None:
        if tokens and tokens[-1] in self.eos:
            return "eos"
        if len(tokens) >= self.max_new_tokens:
            return "max_new_tokens"
        return None


class _Prefill:
    """Runs the target over the prompt; timing starts here."""

    def __init__(self, target: Any, prompt_ids: list[int], temperature: float, generator: torch.Generator | None,
                 hidden_states: bool):
        if not prompt_ids:
            raise ValueError("the prompt is empty: decoding needs at least one prompt token")
        model = target.model
        self.device = next(model.parameters()).device
        _sync(self.device)
        self.t0 = time.perf_counter()
        ids = torch.tensor([prompt_ids], device=self.device)
        self.cache = new_cache(model)
        out = forward_with_cache(model, ids, torch.arange(len(prompt_ids), device=self.device).unsqueeze(0),
                                 self.cache, hidden_states=hidden_states, last_logits_only=True)
        self.first = _pick(out.logits[0, -1], temperature, generator)
        self.features = _features(out.hidden_states, target.tap_layers) if hidden_states else None
        _sync(self.device)
        self.t1 = time.perf_counter()


class SpeculativeDecoder:
    """Draft -> verify -> accept at batch size 1 over an HF target, lossless at every temperature.

    Args:
        target: an HFTarget (`.model`, `.tap_layers`, `.embed`, `.lm_head_weight`, `.tokenizer`).
        drafts: where drafts come from (a BlockDrafterSource or an OracleDraftSource).
        strategy: a test-time strategy (a DECODE_STRATEGIES entry), a name, or {name, **options}.
        block_size: B, slots per block including the anchor (any B >= 2).
        eos_ids: tokens that end a response (default: the target's eos ids).
        small_batch_kernel: run the linear layers of the target and of `kernel_modules` through
            `small_batch_linear` (CPU float32, <= 16 rows: about half the cost of a 2-16-token verify;
            specframe/decoding/small_batch.py). `target_only_decode` takes the same switch: compare the two with
            the same setting.
        kernel_modules: the draft side's modules whose linear layers take the kernel too (`for_drafter` passes
            the drafter; an oracle has none).
    """

    def __init__(self, target: Any, drafts: DraftSource, strategy: Any = None, *, block_size: int,
                 eos_ids: set[int] | None = None, small_batch_kernel: bool = True,
                 kernel_modules: tuple[nn.Module, ...] = ()):
        if not isinstance(block_size, int) or block_size < 2:
            raise ValueError(f"block_size must be an integer >= 2 (the anchor and at least one draft), "
                             f"got {block_size!r}")
        self.target = target
        self.drafts = drafts
        self.strategy = build_strategy(strategy)
        self.block_size = block_size
        self.eos_ids = eos_ids_of(target) if eos_ids is None else set(eos_ids)
        self.small_batch_kernel = small_batch_kernel
        self.kernel_modules = tuple(kernel_modules)

    @classmethod
    def for_drafter(cls, target: Any, drafter: Any, vocab: Any = None, strategy: Any = None, *,
                    block_size: int | None = None, eos_ids: set[int] | None = None,
                    small_batch_kernel: bool = True) -> SpeculativeDecoder:
        """A decoder over a trained block drafter (block size defaults to the drafter's)."""
        return cls(target, BlockDrafterSource(drafter, target, vocab), strategy,
                   block_size=block_size or drafter.block_size, eos_ids=eos_ids, small_batch_kernel=small_batch_kernel,
                   kernel_modules=(drafter,))

    @classmethod
    def oracle(cls, target: Any, sequence: list[int], strategy: Any = None, *, block_size: int,
               eos_ids: set[int] | None = None) -> SpeculativeDecoder:
        """A decoder whose drafts are `sequence` (prompt + the target's greedy continuation): the τ ceiling."""
        device = next(target.model.parameters()).device
        return cls(target, OracleDraftSource(sequence, target.vocab_size, device), strategy,
                   block_size=block_size, eos_ids=eos_ids)

    @torch.inference_mode()
    def generate(self, prompt_ids: list[int], *, max_new_tokens: int, temperature: float = 0.0,
                 seed: int = 0) -> DecodeResult:
        """Generate one response to `prompt_ids`; the output is the target's own (greedy, or its distribution)."""
        modules = (self.target.model, *self.kernel_modules) if self.small_batch_kernel else ()
        with small_batch_linears(*modules):
            return self._generate(prompt_ids, max_new_tokens, temperature, seed)

    def _generate(self, prompt_ids: list[int], max_new_tokens: int, temperature: float, seed: int) -> DecodeResult:
        _check_budget(max_new_tokens, temperature)
        model, B = self.target.model, self.block_size
        device = next(model.parameters()).device
        gen = torch.Generator(device=device).manual_seed(seed)  # strategies may sample drafts even at T = 0
        pre = _Prefill(self.target, prompt_ids, temperature, gen, hidden_states=True)
        cache, P = pre.cache, len(prompt_ids)
        stopper = _Stopper(self.eos_ids, max_new_tokens)
        tokens, steps = [pre.first], []
        reason = stopper.reason(tokens)
        if reason is None:
            self.drafts.start(pre.features)  # positions 0..P-1: everything before the first anchor
        mask_dtype = next(model.parameters()).dtype
        while reason is None:
            anchor_pos, anchor = P + len(tokens) - 1, tokens[-1]
            slot_logits = self.drafts.draft(anchor, anchor_pos, B)
            proposal = self.strategy.propose(slot_logits, temperature, gen)
            tree = build_tree(anchor, proposal.candidates)
            past = cache_length(cache)
            mask = None
            if not tree.is_chain:
                _check_tree_attention(model)
                mask = tree_attention_mask(tree.ancestor_mask(), past, mask_dtype, device)
            positions = (anchor_pos + torch.tensor(tree.depths, device=device)).unsqueeze(0)
            out = forward_with_cache(model, torch.tensor([tree.tokens], device=device), positions, cache, mask,
                                     hidden_states=True)
            chain_logits = out.logits[0][tree.chain_nodes.to(device)]  # [K, B, V]
            sel = self.strategy.select(proposal, chain_logits, temperature, gen)
            path = tree.chain_nodes[sel.chain, : sel.accepted + 1].tolist()  # anchor + accepted drafts
            keep_positions(cache, past, path)
            self.drafts.extend(_features(out.hidden_states, self.target.tap_layers)[:, path])
            new = stopper.cut([tree.tokens[n] for n in path[1:]] + [sel.next_token], len(tokens))
            tokens += new
            steps.append(StepRecord(anchor=anchor_pos, accepted=sel.accepted, committed=len(new), width=tree.width,
                                    draft=tuple(proposal.candidates[sel.chain].tolist())))
            reason = stopper.reason(tokens)
        _sync(device)
        return DecodeResult(prompt_length=P, tokens=tokens, steps=steps, prefill_seconds=pre.t1 - pre.t0,
                            decode_seconds=time.perf_counter() - pre.t1, stop_reason=reason, block_size=B)


@torch.inference_mode()
def target_only_decode(target: Any, prompt_ids: list[int], *, max_new_tokens: int, temperature: float = 0.0,
                       seed: int = 0, eos_ids: set[int] | None = None, stop_on_eos: bool = True,
                       small_batch_kernel: bool = True) -> DecodeResult:
    """Plain decoding with the target's KV cache, one token per forward, timed like speculative decoding.

    Each forward is recorded as a step with accepted = 0 and committed = 1 (τ = 1).

    Args:
        stop_on_eos: False continues past EOS (labels for parity checks need the continuation).
        small_batch_kernel: as for SpeculativeDecoder (the same linear kernels on both sides of a comparison).
    """
    with small_batch_linears(*((target.model,) if small_batch_kernel else ())):
        return _target_only(target, prompt_ids, max_new_tokens, temperature, seed, eos_ids, stop_on_eos)


def _target_only(target: Any, prompt_ids: list[int], max_new_tokens: int, temperature: float, seed: int,
                 eos_ids: set[int] | None, stop_on_eos: bool) -> DecodeResult:
    _check_budget(max_new_tokens, temperature)
    model = target.model
    device = next(model.parameters()).device
    gen = torch.Generator(device=device).manual_seed(seed)
    pre = _Prefill(target, prompt_ids, temperature, gen, hidden_states=False)
    stopper = _Stopper(eos_ids_of(target) if eos_ids is None else set(eos_ids), max_new_tokens, stop_on_eos)
    P, tokens, steps = len(prompt_ids), [pre.first], []
    reason = stopper.reason(tokens)
    while reason is None:
        pos = P + len(tokens) - 1
        out = forward_with_cache(model, torch.tensor([[tokens[-1]]], device=device),
                                 torch.tensor([[pos]], device=device), pre.cache)
        tokens.append(_pick(out.logits[0, -1], temperature, gen))
        steps.append(StepRecord(anchor=pos, accepted=0, committed=1, width=1))
        reason = stopper.reason(tokens)
    _sync(device)
    return DecodeResult(prompt_length=P, tokens=tokens, steps=steps, prefill_seconds=pre.t1 - pre.t0,
                        decode_seconds=time.perf_counter() - pre.t1, stop_reason=reason, block_size=1)
