"""`drafter.init_from`: start training from a drafter in the DFlash format (a local folder or a hub id).

    drafter: {name: block_diffusion, init_from: z-lab/Qwen3-8B-DFlash-b16, num_layers: 5, block_size: 16}

`compat_issues` lists, one per mismatch, what keeps the published drafter from being the recipe's drafter on
the recipe's target, each with the setting that would fix it. `specframe validate` runs it when both
config.json files can be read without the network (local folders, the hub cache, the built-in SmolLM2);
training runs it again on the built target before loading any weight, and then loads the weights strictly.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from torch import nn

from specframe.errors import ConfigError
from specframe.export import dflash_format as fmt

WHERE = "drafter.init_from"


def local_folder(source: str, download: bool) -> Path | None:
    """The folder of `source`: a local path, else the hub cache, else (download=True) the hub. None: unavailable."""
    path = Path(source).expanduser()
    if path.exists():
        return path
    if source.count("/") != 1:
        raise ConfigError(f"{WHERE}: {source!r} is neither an existing folder nor a hub id like 'org/name'")
    from huggingface_hub import snapshot_download

    patterns = ["config.json", "*.safetensors", "mask_embedding.pt"]
    try:
        return Path(snapshot_download(source, allow_patterns=patterns, local_files_only=not download))
    except Exception as e:  # noqa: BLE001 - offline, unknown repo, no access: all mean "not available"
        if download:
            raise ConfigError(f"{WHERE}: cannot fetch {source!r} from the hub: {e}") from None
        return None


def read_config(folder: Path) -> dict[str, Any]:
    path = folder / "config.json"
    if not path.is_file():
        raise ConfigError(f"{WHERE}: {folder} has no config.json; is it a DFlash drafter folder?")
    config = json.loads(path.read_text())
    if fmt.ARCHITECTURE not in (config.get("architectures") or []):
        raise ConfigError(f"{WHERE}: {path} is not a DFlash drafter (architectures "
                          f"{config.get('architectures')}, expected ['{fmt.ARCHITECTURE}'])")
    return config


def compat_issues(config: dict[str, Any], spec: Any, options: dict[str, Any], has_mask_vector: bool = False
                  ) -> list[str]:
    """Every reason the DFlash drafter `config` cannot be the recipe's drafter (`options`) on target `spec`."""
    from specframe.drafters.block_diffusion import BlockDiffusionConfig, resolve_mask_token

    cfg = BlockDiffusionConfig(**{k: v for k, v in options.items() if k != "name"})
    issues = []

    def differ(what: str, theirs: Any, ours: Any, fix: str) -> None:
        if theirs != ours:
            issues.append(f"{WHERE}: {what} is {theirs} in the published drafter but {ours} here; {fix}")

    differ("hidden_size", config["hidden_size"], spec.hidden_size, "it was trained for another target")
    differ("vocab_size", config.get("vocab_size"), spec.vocab_size, "it was trained for another target")
    differ("num_target_layers", config.get("num_target_layers", spec.num_layers), spec.num_layers,
           "it was trained for another target")
    ids = fmt.target_layer_ids(config)
    beyond = [i for i in ids if not 0 <= i < spec.num_layers]
    if beyond:
        issues.append(f"{WHERE}: target layer ids {beyond} are outside the target's {spec.num_layers} layers")
    else:
        differ("target_layer_ids", ids, list(spec.tap_layers), f"set target.tap_layers: {ids}")
    differ("num_hidden_layers", config["num_hidden_layers"], cfg.num_layers, f"set drafter.num_layers: "
           f"{config['num_hidden_layers']}")
    heads = cfg.num_heads or spec.num_heads
    differ("num_attention_heads", config["num_attention_heads"], heads,
           f"set drafter.num_heads: {config['num_attention_heads']}")
    differ("num_key_value_heads", config.get("num_key_value_heads"), cfg.num_kv_heads or spec.num_kv_heads,
           f"set drafter.num_kv_heads: {config.get('num_key_value_heads')}")
    head_dim = spec.head_dim if heads == spec.num_heads else spec.hidden_size // heads
    differ("head_dim", config.get("head_dim") or config["hidden_size"] // config["num_attention_heads"], head_dim,
           "it was trained for another target")
    differ("intermediate_size", config["intermediate_size"], cfg.intermediate_size or spec.intermediate_size,
           f"set drafter.intermediate_size: {config['intermediate_size']}")
    differ("block_size", config.get("block_size", 16), cfg.block_size,
           f"set drafter.block_size: {config.get('block_size', 16)} (train at the size it was trained at)")
    if not cfg.qk_norm:
        issues.append(f"{WHERE}: the DFlash format has per-head q/k norm; set drafter.qk_norm: true")
    if abs(fmt.rope_theta(config) - spec.rope_theta) > 1e-6 * spec.rope_theta:
        issues.append(f"{WHERE}: rope_theta is {fmt.rope_theta(config)} in the published drafter but the "
                      f"target's is {spec.rope_theta}; it was trained for another target")
    if fmt.rope_scaling(config):
        issues.append(f"{WHERE}: the published drafter uses rope scaling {fmt.rope_scaling(config)}, which "
                      f"specframe's drafter does not compute")
    if config.get("draft_vocab_size"):
        issues.append(f"{WHERE}: reduced-vocabulary DFlash drafters (draft_vocab_size) cannot be imported yet")
    mask = fmt.mask_token_id(config)
    try:
        kind, row = resolve_mask_token(cfg, spec)
    except ValueError as e:
        issues.append(f"drafter: {e}")
    else:
        if kind == "learned" and not has_mask_vector:
            issues.append(f"{WHERE}: the published drafter has no mask_embedding.pt (its mask is the target's row "
                          f"{mask}); set drafter.mask_token: frozen_row, drafter.mask_token_id: {mask}")
        elif kind != "learned" and row != mask:
            issues.append(f"{WHERE}: the published drafter's mask token is the target's row {mask}, this "
                          f"recipe's is {row}; set drafter.mask_token: frozen_row, drafter.mask_token_id: {mask}")
    return issues


def load_into(drafter: nn.Module, source: str, spec: Any) -> Path:
    """Check `source` against the built drafter's target and recipe, then load its weights strictly."""
    from safetensors.torch import load_file

    folder = local_folder(source, download=True)
    assert folder is not None
    config = read_config(folder)
    vector = folder / "mask_embedding.pt"
    issues = compat_issues(config, spec, vars(drafter.cfg), has_mask_vector=vector.is_file())
    if issues:
        raise ConfigError(issues)
    files = sorted(folder.glob("*.safetensors"))
    if not files:
        raise ConfigError(f"{WHERE}: no *.safetensors in {folder}")
    state: dict[str, torch.Tensor] = {}
    for f in files:
        state.update(load_file(f))
    problems = fmt.check_state(fmt.expected_shapes(config), state)
    if problems:
        raise ConfigError([f"{WHERE}: {folder} is not the DFlash format: {p}" for p in problems])
    own = drafter.state_dict()
    if drafter.mask_embedding is not None:
        state["mask_embedding"] = torch.load(vector, weights_only=True)["embedding"]
    with torch.no_grad():
        drafter.load_state_dict({k: v.to(own[k].dtype) for k, v in state.items()}, strict=True)
    return folder


def validate_issues(target: Any, drafter: Any) -> list[str]:
    """`specframe validate`'s check of drafter.init_from (ComponentSpecs), when it needs neither the network
    nor any weights; otherwise [] and the same check runs when training starts."""
    source = drafter.options.get("init_from") if drafter is not None else None
    if not source or target is None:
        return []
    try:
        folder = local_folder(str(source), download=False)
        if folder is None:
            return []
        config = read_config(folder)
    except ConfigError as e:
        return list(e.issues)
    spec = light_spec(target)
    if spec is None:
        return []
    try:
        return compat_issues(config, spec, drafter.options, (folder / "mask_embedding.pt").is_file())
    except (TypeError, ValueError, KeyError) as e:
        return [f"{WHERE}: {folder}/config.json: {e!r}"]


def light_spec(target: Any) -> Any:
    """The recipe target's spec without its weights, for the built-in kinds (None for others)."""
    from specframe.targets import TARGETS

    if target.name == "tiny":  # random weights of a few kB: building it is the cheapest way
        return TARGETS.build("tiny", target.options, where="target").spec
    if target.name == "hf":
        from specframe.targets.hf import spec_without_weights

        return spec_without_weights(TARGETS.get("hf").make_config(dict(target.options), "target"))
    return None
