"""The memory planner behind `specframe plan RECIPE [--gpus N --gpu-mem GiB]` (specframe/cli/plan.py).

Per-device memory of one training step, from the recipe and the target's shape alone (a table of known hub
models, a local config.json, or the tiny target's options; no weights are read):

  * the frozen target's weights (replicated on every device, in target.dtype);
  * the drafter's weights, gradients and AdamW state under the strategy (DDP: a full replica plus its gradient
    buckets; FSDP: sharded over the devices plus one gathered layer);
  * activations: the target's forward (all of its hidden states are returned, then the tapped ones kept), the
    drafter's saved activations for N x B block queries over S context keys (attention scores are held in full
    by dense SDPA, never by flex attention), and one chunk of the LM head and loss (chunk_blocks x (B-1) x V
    logits, recomputed in backward);
  * the feature cache's disk size per token.

The model is checked against measured peak memory of a real CPU step at small shapes (tests/unit/test_plan.py)
and its arithmetic against hand-computed figures for the Qwen3-8B and Llama-3-8B recipes. docs/scaling.md
explains each term.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from specframe.errors import ConfigError

GiB = 1024 ** 3
BYTES = {"float32": 4, "bfloat16": 2, "float16": 2}


@dataclass(frozen=True, kw_only=True)
class Arch:
    """The shape of a decoder-only target (what its config.json says)."""

    hidden: int
    layers: int
    heads: int
    kv_heads: int
    head_dim: int
    intermediate: int
    vocab: int
    tied: bool = False
    qk_norm: bool = False


# Shapes of hub targets the recipes name, so that planning needs neither the hub nor the weights.
KNOWN_ARCHS: dict[str, Arch] = {
    "qwen/qwen3-8b": Arch(hidden=4096, layers=36, heads=32, kv_heads=8, head_dim=128, intermediate=12288,
                          vocab=151936, qk_norm=True),
    "qwen/qwen3-32b": Arch(hidden=5120, layers=64, heads=64, kv_heads=8, head_dim=128, intermediate=25600,
                           vocab=151936, qk_norm=True),
    "meta-llama/meta-llama-3-8b-instruct": Arch(hidden=4096, layers=32, heads=32, kv_heads=8, head_dim=128,
                                                intermediate=14336, vocab=128256),
    "meta-llama/llama-3.1-8b-instruct": Arch(hidden=4096, layers=32, heads=32, kv_heads=8, head_dim=128,
                                             intermediate=14336, vocab=128256),
    "meta-llama/meta-llama-3-70b-instruct": Arch(hidden=8192, layers=80, heads=64, kv_heads=8, head_dim=128,
                                                 intermediate=28672, vocab=128256),
    "meta-llama/llama-3.3-70b-instruct": Arch(hidden=8192, layers=80, heads=64, kv_heads=8, head_dim=128,
                                              intermediate=28672, vocab=128256),
    "smollm2-135m-instruct": Arch(hidden=576, layers=30, heads=9, kv_heads=3, head_dim=64, intermediate=1536,
                                  vocab=49152, tied=True),
}


def arch_from_config(cfg: dict[str, Any]) -> Arch:
    heads = int(cfg["num_attention_heads"])
    return Arch(hidden=int(cfg["hidden_size"]), layers=int(cfg["num_hidden_layers"]), heads=heads,
                kv_heads=int(cfg.get("num_key_value_heads") or heads),
                head_dim=int(cfg.get("head_dim") or int(cfg["hidden_size"]) // heads),
                intermediate=int(cfg["intermediate_size"]), vocab=int(cfg["vocab_size"]),
                tied=bool(cfg.get("tie_word_embeddings", False)),
                qk_norm=str(cfg.get("model_type", "")).startswith("qwen3"))


def target_arch(recipe: Any, config_path: str | None = None) -> Arch:
    """The target's shape without loading it: --target-config, the tiny target's options, a local folder's
    config.json, or the table of known hub models."""
    if config_path:
        return arch_from_config(json.loads(Path(config_path).read_text()))
    t = recipe.target
    if t.name == "tiny":
        from specframe.data.tiny_tokenizer import tiny_tokenizer
        from specframe.targets.tiny import TinyTargetConfig

        known = {f for f in TinyTargetConfig.__dataclass_fields__}
        c = TinyTargetConfig(**{k: v for k, v in t.options.items() if k in known})
        return Arch(hidden=c.hidden_size, layers=c.num_layers, heads=c.num_heads, kv_heads=c.num_kv_heads,
                    head_dim=c.hidden_size // c.num_heads, intermediate=c.intermediate_size,
                    vocab=len(tiny_tokenizer()), tied=True)
    model = str(t.options.get("model", ""))
    folder = Path(model).expanduser()
    if (folder / "config.json").is_file():
        return arch_from_config(json.loads((folder / "config.json").read_text()))
    if model.lower() in KNOWN_ARCHS:
        return KNOWN_ARCHS[model.lower()]
    raise ConfigError(f"target.model {model!r}: its shape is not known offline. Pass --target-config "
                      f"path/to/config.json (the model's Hugging Face config). Known: {sorted(KNOWN_ARCHS)}")


# --------------------------------------------------------------------------------------------------
# Parameter counts
# --------------------------------------------------------------------------------------------------
def layer_params(hidden: int, heads: int, kv_heads: int, head_dim: int, intermediate: int,
                 qk_norm: bool = False) -> int:
    attn = hidden * heads * head_dim + 2 * hidden * kv_heads * head_dim + heads * head_dim * hidden
    return attn + 3 * hidden * intermediate + 2 * hidden + (2 * head_dim if qk_norm else 0)


def target_params(a: Arch) -> int:
    embed = a.vocab * a.hidden
    body = a.layers * layer_params(a.hidden, a.heads, a.kv_heads, a.head_dim, a.intermediate, a.qk_norm)
    return embed * (1 if a.tied else 2) + body + a.hidden


def drafter_shape(a: Arch, opts: dict[str, Any]) -> tuple[int, int, int, int]:
    """(heads, kv_heads, head_dim, intermediate) of the drafter's layers (defaults: the target's)."""
    heads = opts.get("num_heads") or a.heads
    kv = opts.get("num_kv_heads") or a.kv_heads
    hd = a.head_dim if heads == a.heads else a.hidden // heads
    return heads, kv, hd, opts.get("intermediate_size") or a.intermediate


def drafter_params(a: Arch, opts: dict[str, Any], num_taps: int) -> int:
    heads, kv, hd, inter = drafter_shape(a, opts)
    n = int(opts.get("num_layers", 1))
    learned_mask = a.hidden  # the learned mask embedding (no spare embedding row in these targets)
    return num_taps * a.hidden * a.hidden + a.hidden + n * layer_params(a.hidden, heads, kv, hd, inter) + \
        a.hidden + learned_mask


# --------------------------------------------------------------------------------------------------
# The estimate
# --------------------------------------------------------------------------------------------------
@dataclass(kw_only=True)
class Plan:
    devices: int
    strategy: str
    precision: str
    items: dict[str, int] = field(default_factory=dict)
    """Bytes per device of each term."""
    notes: list[str] = field(default_factory=list)
    cache_bytes_per_token: int = 0
    target_params: int = 0
    drafter_params: int = 0

    @property
    def total(self) -> int:
        return sum(self.items.values())


def num_taps(recipe: Any, a: Arch) -> int:
    """Tapped target layers: the recipe's num_taps (else the target's default), spread as the target spreads
    them (`default_tap_layers`, which merges duplicates on shallow targets)."""
    import dataclasses

    from specframe.config import registries
    from specframe.targets.hf import default_tap_layers

    n = recipe.target.options.get("num_taps")
    if n is None:
        cfg = registries()["target"].get(recipe.target.name).config
        fields = {f.name: f.default for f in dataclasses.fields(cfg)} if cfg else {}
        n = fields.get("num_taps", 3)
    return len(default_tap_layers(a.layers, int(n)))


def shape_of(recipe: Any) -> dict[str, Any]:
    d, dr, o = recipe.data, recipe.drafter.options, recipe.optim
    return {"B": d.batch_size, "S": d.max_length, "N": d.num_anchors, "K": int(dr.get("block_size", 16)),
            "chunk": o.chunk_blocks, "layers": int(dr.get("num_layers", 1)), "vocab": dr.get("draft_vocab_size")}


def _needs_target_logits(recipe: Any) -> bool:
    """Whether a loss term or alignment strategy requires target logits or their argmax (registry classes)."""
    from specframe.config import registries

    regs = registries()
    pairs = [("loss", x.name) for x in recipe.loss] + [("alignment", x.name) for x in recipe.alignment]
    return any({"target_logits", "target_greedy"} & set(getattr(regs[kind].get(name).obj, "requires", ()))
               for kind, name in pairs)


def estimate(recipe: Any, *, devices: int | None = None, arch: Arch | None = None, strategy: str | None = None,
             overrides: dict[str, Any] | None = None, attention: str | None = None) -> Plan:
    """Per-device bytes of one training step of `recipe` on `devices` devices (see the module docstring).

    `overrides` changes the shape (B, S, N, K, chunk) for what-if questions; `attention` 'dense' or 'flex'
    (default: flex on an accelerator, dense SDPA on CPU, as the drafter's `auto` does)."""
    a = arch or target_arch(recipe)
    t, tr = recipe.target, recipe.trainer
    sh = {**shape_of(recipe), **(overrides or {})}
    n_dev = devices or (tr.devices if isinstance(tr.devices, int) else 1)
    strat = strategy or (tr.strategy if tr.strategy != "auto" else ("ddp" if n_dev > 1 else "single"))
    precision, target_dtype = _resolved_auto(tr.precision, str(t.options.get("dtype", "float32")), tr.accelerator)
    taps = num_taps(recipe, a)
    tb = BYTES.get(target_dtype, 4) if t.name != "tiny" else 4
    mixed = precision.startswith(("bf16-mixed", "16-mixed"))
    true16 = precision in ("bf16-true", "16-true", "bf16", "16")
    act = 2 if (mixed or true16) else 4  # bytes of a matmul output under the precision
    pb = 2 if true16 else 4  # bytes of a drafter parameter / gradient / AdamW moment
    if attention is None:
        attention = "flex" if tr.accelerator in ("gpu", "cuda") or recipe.drafter.options.get("attention") == "flex" \
            else "dense"
    B, S, N, K, chunk = sh["B"], sh["S"], sh["N"], sh["K"], sh["chunk"]
    V = sh["vocab"] or a.vocab
    H, L = a.hidden, sh["layers"]
    heads, kv, hd, inter = drafter_shape(a, recipe.drafter.options)
    T, C = N * K, S + N * K  # block queries and keys per sequence

    p = Plan(devices=n_dev, strategy=strat, precision=precision)
    p.target_params = target_params(a)
    p.drafter_params = P = drafter_params(a, recipe.drafter.options, taps)
    p.items["target weights"] = p.target_params * tb
    # drafter: weights + gradients + AdamW's two moments (+ DDP's gradient buckets); FSDP shards all of it
    state = P * (pb + pb + 2 * pb)
    if strat.startswith("fsdp"):
        per_layer = layer_params(H, heads, kv, hd, inter)
        p.items["drafter weights+grads+AdamW (sharded)"] = state // n_dev + per_layer * pb * 2
    else:
        p.items["drafter weights+grads+AdamW"] = state
        if strat.startswith("ddp") and n_dev > 1:
            p.items["DDP gradient buckets"] = P * pb
    # A step has two phases that never overlap in time: the target's forward (no grad; every hidden state is
    # returned, then the tapped ones are concatenated and kept), then the drafter's forward and backward (its
    # saved activations, one chunk of LM head + loss). The peak is the larger phase on top of what persists.
    taps_kept = B * S * taps * H * tb
    if recipe.data.features_cache and recipe.data.features_cache != "auto":
        target_phase = 0
        p.notes.append("features come from the cache: no target forward")
    else:  # online, or `auto`: the run first caches the features with this same forward (then steps read them)
        target_phase = (a.layers + 1) * B * S * H * tb + B * S * (2 * a.intermediate + 4 * H) * tb
        if recipe.data.features_cache == "auto":
            p.notes.append("features_cache: auto: the target's forward runs once per row while the cache is built")
        if _needs_target_logits(recipe):  # logits, then their shifted copy, kept for the loss
            taps_kept += 2 * B * S * a.vocab * tb
    p.items["target features kept for the step" if not recipe.data.features_cache else "cached target features"] = \
        taps_kept
    # drafter: saved activations per layer (norms in float32, projections at `act` bytes)
    per_tok = (3 * 4 * H          # input norm: float copy, normalised, output
               + 3 * 4 * H        # post norm
               + act * (heads * hd + 2 * kv * hd) * 2  # q, k, v before and after rotary
               + act * heads * hd * 2                   # attention output, its transpose for o_proj
               + act * H * 2                            # o_proj output, residual
               + act * 4 * inter)                       # gate, up, silu(gate), product
    kv_full = 2 * B * heads * C * hd * act * 2  # keys/values concatenated with the context, repeated to all heads
    scores = 0
    if attention == "dense":
        # dense SDPA with a boolean mask: the mask and the score/probability matrices of one layer, in the
        # compute dtype (bf16 under autocast)
        scores = B * T * C + 2 * B * heads * T * C * act
    drafter_acts = L * (B * T * per_tok + kv_full) + scores + B * S * (taps * H * act + 3 * H * 4) + B * T * H * act * 2
    # LM head + loss terms: one chunk of blocks at a time (checkpointed: recomputed in backward)
    rows = min(chunk, B * N) * (K - 1)
    head = rows * V * 4 * 4 + B * N * (K - 1) * H * 4
    if target_phase > drafter_acts + head:
        p.items["target forward (all hidden states + one layer; the larger phase)"] = target_phase
    else:
        p.items["drafter activations (the larger phase)"] = drafter_acts
        p.items["LM head chunk (logits, softmax, grad)"] = head
    p.cache_bytes_per_token = taps * H * 2 + 4
    if attention == "dense" and T * C > 4 * 10 ** 6:
        p.notes.append("dense attention holds N*B x (S + N*B) scores per head: flex attention (CUDA) does not")
    return p


def advise(recipe: Any, plan: Plan, budget: int, arch: Arch) -> list[str]:
    """Knobs that make the recipe fit in `budget` bytes per device, each with the estimate it gives."""
    sh = shape_of(recipe)
    tries: list[tuple[str, dict[str, Any], dict[str, Any]]] = []
    for frac in (2, 4, 8):
        if sh["N"] // frac >= 1:
            tries.append((f"data.num_anchors={sh['N'] // frac}", {"N": sh["N"] // frac}, {}))
        if sh["S"] // frac >= 64:
            tries.append((f"data.max_length={sh['S'] // frac}", {"S": sh["S"] // frac}, {}))
        if sh["B"] // frac >= 1:
            tries.append((f"data.batch_size={sh['B'] // frac} (trainer.accumulate_grad_batches={frac})",
                          {"B": sh["B"] // frac}, {}))
        if sh["chunk"] // frac >= 1:
            tries.append((f"optim.chunk_blocks={sh['chunk'] // frac}", {"chunk": sh["chunk"] // frac}, {}))
    tries.append(("trainer.strategy=fsdp", {}, {"strategy": "fsdp"}))
    tries.append(("drafter.attention=flex (CUDA)", {}, {"attention": "flex"}))
    out = []
    for label, ov, kw in tries:
        q = estimate(recipe, devices=plan.devices, arch=arch, overrides=ov,
                     **({"strategy": plan.strategy} | kw))
        if q.total <= budget:
            out.append(f"{label}: {q.total / GiB:.1f} GiB")
    if not out and not plan.strategy.startswith("fsdp"):  # no single knob: FSDP together with a shape knob
        for label, ov, kw in tries:
            if not kw:
                q = estimate(recipe, devices=plan.devices, arch=arch, overrides=ov, strategy="fsdp")
                if q.total <= budget:
                    out.append(f"trainer.strategy=fsdp and {label}: {q.total / GiB:.1f} GiB")
    if not out and plan.items["target weights"] > budget:
        out.append("the frozen target alone does not fit: a larger GPU, or target features from the feature cache "
                   "(specframe cache-features) / a serving engine (docs/scaling.md)")
    elif not out:
        out.append("no knob fits on its own or with FSDP: more memory per device, or a target served apart from the "
                   "drafter (docs/scaling.md, 'Targets too large to sit beside the drafter')")
    return out


def _resolved_auto(precision: str, dtype: str, accelerator: str) -> tuple[str, str]:
    """`auto` precision / target dtype as the planned run would resolve them: a GPU plan assumes a device with
    bf16 (every GPU these recipes are sized for); a CPU plan asks this machine's CPU (specframe/precision.py)."""
    from specframe.precision import AUTO, default_device, resolve_dtype, resolve_precision

    if AUTO not in (precision, dtype):
        return precision, dtype
    on_gpu = accelerator in ("gpu", "cuda") or default_device(accelerator) == "cuda"
    if on_gpu:
        return ("bf16-mixed" if precision == AUTO else precision), ("bfloat16" if dtype == AUTO else dtype)
    return resolve_precision(precision, "cpu"), resolve_dtype(dtype, "cpu", what="target.dtype") or dtype

