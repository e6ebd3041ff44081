"""The extension points of specframe (Protocols) and the typed data that flows through a training step.

Shapes use: B batch, S sequence, N anchors (blocks) per sequence, K block size, H hidden, F = n_taps * H,
V vocabulary (or draft vocabulary), n blocks in a loss chunk.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property
from collections.abc import Iterator
from typing import Any, ClassVar, Literal, Protocol, runtime_checkable

import torch
from torch import Tensor, nn

# Names of step outputs that loss terms may require and alignment strategies may produce.
TARGET_LOGITS = "target_logits"
TARGET_GREEDY = "target_greedy"  # the argmax of target_logits only: a features cache with top-1 logits has it
TARGET_HIDDEN = "target_hidden"
LABELS = "labels"


@dataclass(frozen=True, kw_only=True)
class TargetOutputs:
    """What one frozen target pass gives a training step."""

    hidden: Tensor  # [B, S, F] tapped hidden states, concatenated in tap order
    logits: Tensor | None = None  # [B, S, V] next-token logits at each position (None unless requested)


@dataclass(frozen=True, kw_only=True)
class AlignedBatch:
    """The training view after the alignment strategy: what the drafter sees and what it must predict.

    `labels[b, p]` is the token a slot sitting at position p must predict (slot k of a block anchored at a
    predicts labels[a + k]: same position, no shift). `target_logits[b, p]` is the target's distribution for
    the token at position p, i.e. the target's logits computed at position p - 1.
    """

    input_ids: Tensor  # [B, S] tokens of the sequence (slot 0 of a block is input_ids[anchor])
    labels: Tensor  # [B, S] what each position should be predicted as
    loss_mask: Tensor  # [B, S] bool, positions whose label is supervised
    context: Tensor  # [B, S, F] target features
    context_valid: Tensor  # [B, S] bool, real (non-padding) positions
    anchors: Tensor  # [B, N] long, anchor positions (sorted; meaningless where not anchor_valid)
    anchor_valid: Tensor  # [B, N] bool
    target_logits: Tensor | None = None  # [B, S, V] aligned as above
    target_greedy: Tensor | None = None  # [B, S] long, target_logits[b, p].argmax(): the target's token for p


@dataclass(frozen=True, kw_only=True)
class SlotChunk:
    """Drafter predictions for slots 1..K-1 of a chunk of n blocks, given to every loss term.

    Slot 0 (the anchor) is never supervised, so index j here is slot k = j + 1.
    """

    logits: Tensor  # [n, K-1, V] drafter logits, float32
    labels: Tensor  # [n, K-1] label ids in the drafter's vocabulary; -1 where the label is not draftable
    mask: Tensor  # [n, K-1] bool, supervised slots (label inside the sequence and in the loss mask)
    block_valid: Tensor  # [n] bool, real blocks (padding blocks get no loss)
    target_logits: Tensor | None = None  # [n, K-1, V] target logits for the same slots, float32

    @cached_property
    def log_probs(self) -> Tensor:
        """[n, K-1, V] drafter log-probabilities."""
        return torch.log_softmax(self.logits.float(), dim=-1)

    @cached_property
    def label_logp(self) -> Tensor:
        """[n, K-1] log p_k of the label; -inf where the label cannot be drafted (reduced vocabulary)."""
        lp = self.log_probs.gather(-1, self.labels.clamp(min=0).unsqueeze(-1)).squeeze(-1)
        return lp.masked_fill(self.labels < 0, float("-inf"))

    @cached_property
    def correct(self) -> Tensor:
        """[n, K-1] bool, drafter argmax equals the label (never true on unsupervised slots)."""
        return (self.logits.argmax(-1) == self.labels) & self.mask

    @cached_property
    def target_log_probs(self) -> Tensor:
        if self.target_logits is None:
            raise RuntimeError("this loss term needs target logits, but none were computed")
        return torch.log_softmax(self.target_logits.float(), dim=-1)


@dataclass(frozen=True)
class LossValue:
    """A loss term's contribution from one chunk: the term is sum(numerator) / sum(denominator) overall."""

    numerator: Tensor  # scalar, differentiable
    denominator: Tensor  # scalar, no gradient (counted across the whole global batch)


@runtime_checkable
class Target(Protocol):
    """A frozen autoregressive LM: gives tapped features (and logits) and lends its embedding and head.

    What the code uses (components.py, module.py, decoding/, evaluation/, feature_cache.py); an `nn.Module`
    (`to`, `eval`, `requires_grad_`, `parameters` come from there). Optional: `final_norm_weight` [H] (a
    drafter may start its final norm from it), `decoder_layer_state(index)` (a drafter may start its layers
    from the target's top ones) and `revision` (recorded in checkpoints and caches).
    """

    hidden_size: int
    vocab_size: int
    num_layers: int
    tap_layers: tuple[int, ...]  # decoder layers whose outputs are tapped, in order (F = len(tap_layers) * H)
    model: nn.Module  # the underlying causal LM (used by the decoding engine with its KV cache)
    tokenizer: Any  # a Hugging Face tokenizer with a chat template
    name: str  # hub id or path, recorded in checkpoints
    spec: TargetSpec  # the shape facts a drafter is built against

    def forward(self, input_ids: Tensor, attention_mask: Tensor, *, with_logits: bool = False) -> TargetOutputs:
        """input_ids, attention_mask: [B, S] -> hidden [B, S, F] (+ logits [B, S, V] when asked)."""
        ...

    def embed(self, input_ids: Tensor) -> Tensor:
        """[...] token ids -> [..., H] input embeddings (the drafter's anchor and mask inputs)."""
        ...

    @property
    def lm_head_weight(self) -> Tensor: ...  # [V, H], the drafter's output head

    def to(self, *args: Any, **kwargs: Any) -> Any: ...

    def parameters(self, recurse: bool = True) -> Iterator[nn.Parameter]: ...


@runtime_checkable
class Drafter(Protocol):
    """A block drafter (an `nn.Module`), built as `cls(cfg, spec=TargetSpec)` by the DRAFTERS registry.

    Training (module.py) calls `forward` on every block of every sequence at once. Decoding
    (decoding/drafts.py) runs the same pieces one block at a time with a growing context cache:
    `fuse_context` and `context_kv` on new target features, then `block_inputs` and `run_layers` per block.
    Both paths read `block_size` and `mask_token_id`. Optional: `cfg.init_norm_from_target` with a `norm`
    submodule (components.init_from_target copies the target's final norm into it),
    `cfg.init_layers_from_target` with a `layers` list named as the target's decoder layers, and
    `cfg.init_fusion_from_top_tap` with `fc` and `hidden_norm` (a pass-through of the last tap).
    """

    block_size: int  # K: slot 0 is the anchor, slots 1..K-1 are drafted
    mask_token_id: int | None  # target token whose embedding fills the masked slots (None: the drafter's own)

    def forward(
        self,
        context: Tensor,  # [B, S, F] tapped target features
        context_valid: Tensor,  # [B, S] bool
        anchor_embeds: Tensor,  # [B, N, H] embedding of the anchor token (slot 0)
        anchors: Tensor,  # [B, N] positions
        anchor_valid: Tensor,  # [B, N] bool
        mask_embed: Tensor | None = None,  # [H] target embedding of mask_token_id (when it is not None)
    ) -> Tensor: ...  # [B, N, K, H] final hidden states (before the LM head)

    def fuse_context(self, context: Tensor) -> Tensor:
        """[B, S, F] tapped features -> [B, S, H] fused context."""
        ...

    def context_kv(self, ctx: Tensor, positions: Tensor) -> list[tuple[Tensor, Tensor]]:
        """Fused context [B, S, H] at absolute positions [B, S] -> per-layer (keys, values) to attend to."""
        ...

    def block_inputs(self, anchor_embeds: Tensor, mask_embed: Tensor | None = None) -> Tensor:
        """[B, N, H] anchor embeddings -> [B, N, K, H] block of [anchor, mask, ..., mask]."""
        ...

    def run_layers(self, blocks: Tensor, anchors: Tensor, ctx_kv: list[tuple[Tensor, Tensor]],
                   mask: Any) -> Tensor:
        """blocks [B, N, K, H] at anchors [B, N] over `ctx_kv` -> [B, N, K, H] (mask None: all context)."""
        ...

    def parameters(self, recurse: bool = True) -> Iterator[nn.Parameter]: ...


@runtime_checkable
class Benchmark(Protocol):
    """A prompt set of the BENCHMARKS registry (evaluation/benchmarks.py)."""

    name: str
    domain: str

    def prompts(self, limit: int | None = None) -> list[Any]:
        """At most `limit` prompts (`evaluation.prompt_sets.Prompt`: an id, user turns, a reference)."""
        ...


@runtime_checkable
class LossTerm(Protocol):
    """One term of the training objective, additive over chunks of blocks."""

    requires: ClassVar[frozenset[str]]

    def __call__(self, chunk: SlotChunk) -> LossValue: ...


@runtime_checkable
class AlignmentStrategy(Protocol):
    """Anything beyond the per-slot loss that makes the drafter agree with what the target will accept."""

    stage: ClassVar[Literal["train", "data"]]
    requires: ClassVar[frozenset[str]]
    produces: ClassVar[frozenset[str]]


@dataclass(frozen=True, kw_only=True)
class TargetSpec:
    """Shape facts about a target that a drafter is built against (no weights)."""

    hidden_size: int
    vocab_size: int
    num_layers: int
    num_heads: int
    num_kv_heads: int
    head_dim: int
    intermediate_size: int
    rope_theta: float
    rms_norm_eps: float
    tap_layers: tuple[int, ...]
    spare_token_id: int | None = None  # an unused embedding row, usable as the mask token
    mask_row: int | None = None  # the default frozen row for a mask token (unk, else pad, else eos)
    token_id: Callable[[str], int | None] | None = field(default=None, compare=False, repr=False)  # text -> id


# -- decoding: the protocol of test-time strategies (specframe.decoding.strategies) ------------------
@dataclass(frozen=True, kw_only=True)
class Proposal:
    """What a test-time strategy drafts in one step: K candidate chains that share the anchor.

    D = B - 1 drafted slots. Chains are verified together in one target forward (a tree whose identical
    prefixes are merged); `q` is what every chain was sampled from, slot by slot, i.i.d. across chains.
    """

    candidates: Tensor  # [K, D] long, target token ids of slots 1..B-1 of each chain
    q: Tensor | None = None  # [D, V] float, per-slot proposal distribution (needed at temperature > 0)


@dataclass(frozen=True, kw_only=True)
class Selection:
    """The outcome of verifying a proposal: which chain, how many of its drafts stand, and the target's token."""

    chain: int  # index of a chain whose first `accepted` drafts are the committed ones
    accepted: int  # a, 0 <= a <= D
    next_token: int  # the target's own token after them (the bonus, or the correction of a rejected draft)


@runtime_checkable
class DecodeStrategy(Protocol):
    """A test-time strategy: proposes candidate chains from the drafter's slot logits and picks the winner.

    It must keep decoding lossless: greedy output at temperature 0, the target's distribution above.
    """

    stage: ClassVar[Literal["decode"]]

    def propose(self, slot_logits: Tensor, temperature: float, generator: torch.Generator | None) -> Proposal:
        """slot_logits: [D, V] drafter logits (target vocabulary, -inf where the drafter cannot emit)."""
        ...

    def select(self, proposal: Proposal, target_logits: Tensor, temperature: float,
               generator: torch.Generator | None) -> Selection:
        """target_logits: [K, D+1, V]; row d of chain k is the target's logits after its first d drafts."""
        ...
