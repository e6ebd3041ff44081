"""`specframe export`: a trained block_diffusion run -> a DFlash drafter folder an engine can serve.

    from specframe.export.writer import export_dflash
    files = export_dflash("runs/quickstart", "exports/quickstart", engine="vllm")

Everything is checked before anything is written: the engine's limits (engines.py), then the exact key set and
shapes of the format (dflash_format.py). The folder is written under a temporary name and renamed into place,
so a folder at `out` is always complete.
"""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import torch

from specframe.errors import ConfigError
from specframe.export import dflash_format as fmt
from specframe.export.engines import engine_issues

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def export_dflash(run: str | Path, out: str | Path, engine: str = "vllm", dtype: str = "float32",
                  force: bool = False) -> list[Path]:
    """Export the drafter of `run` (run folder or .ckpt) to folder `out` for `engine`; returns the files written.

    Raises:
        ConfigError: the engine cannot represent the drafter (each reason with the recipe setting that fixes it),
            the drafter is not a block_diffusion one, `out` exists (without force), or the state is not the format.
    """
    from specframe.checkpoint import load_trained, resolve_checkpoint, run_folder_of

    if dtype not in DTYPES:
        raise ConfigError(f"--dtype {dtype!r}: choose one of {sorted(DTYPES)}")
    out = Path(out).expanduser()
    if out.exists() and not force:
        if not (out.is_dir() and not any(out.iterdir())):
            raise ConfigError(f"{out} exists; choose another --out or pass --force to replace it")
        out.rmdir()  # an empty folder holds nothing to lose
    ckpt = resolve_checkpoint(run)
    recipe, target, drafter, vocab = load_trained(ckpt)
    if recipe["drafter"]["name"] != "block_diffusion":
        raise ConfigError(f"only block_diffusion drafters have a DFlash form; this run's drafter is "
                          f"'{recipe['drafter']['name']}'")
    return export_drafter(drafter, target, vocab, out, engine=engine, dtype=dtype, force=force,
                          source=ckpt, run_folder=run_folder_of(ckpt))


def export_drafter(drafter: Any, target: Any, vocab: Any, out: str | Path, engine: str = "vllm",
                   dtype: str = "float32", force: bool = False, source: Path | None = None,
                   run_folder: Path | None = None) -> list[Path]:
    """Export an in-memory block_diffusion drafter for `target` (what export_dflash does after loading a run)."""
    out = Path(out).expanduser()
    if out.exists() and not force:
        raise ConfigError(f"{out} exists; choose another --out or pass --force to replace it")
    issues = engine_issues(engine, drafter, vocab)
    if issues:
        raise ConfigError([f"export --engine {engine}: {i}" for i in issues])
    config = config_of(drafter, target, vocab, dtype)
    state = tensors_of(drafter, target, vocab, DTYPES[dtype])
    problems = fmt.check_state(fmt.expected_shapes(config), state)
    if problems:  # a drafter whose names drifted from the format: never written
        raise ConfigError([f"export: the drafter's state is not the DFlash format: {p}" for p in problems])
    extras: dict[str, Any] = {}
    if drafter.mask_kind == "learned":  # vLLM substitutes this vector wherever mask_token_id appears
        extras["mask_embedding.pt"] = {"mask_token_id": config["dflash_config"]["mask_token_id"],
                                       "embedding": drafter.mask_embedding.detach().float().cpu().clone()}
    readme = readme_text(target.name, config, engine, run_folder, source, extras)
    return write_folder(out, config, state, extras, readme, force)


def config_of(drafter: Any, target: Any, vocab: Any, dtype: str) -> dict[str, Any]:
    spec = target.spec
    attn = drafter.layers[0].self_attn
    mconf = getattr(getattr(target, "model", None), "config", None)
    return fmt.build_config(
        hidden_size=spec.hidden_size, num_heads=attn.heads, num_kv_heads=attn.kv_heads, head_dim=attn.head_dim,
        intermediate_size=drafter.layers[0].mlp.gate_proj.out_features, num_layers=len(drafter.layers),
        rms_norm_eps=spec.rms_norm_eps, rope_theta=spec.rope_theta, vocab_size=spec.vocab_size,
        num_target_layers=spec.num_layers, target_layer_ids=list(spec.tap_layers),
        mask_token_id=export_mask_id(drafter, spec), block_size=drafter.block_size,
        max_position_embeddings=int(getattr(mconf, "max_position_embeddings", None) or 32768), dtype=dtype,
        draft_vocab_size=vocab.size if vocab is not None and vocab.reduced else None,
        extra={"specframe": {"target": target.name, "mask_token": drafter.mask_kind}})


def export_mask_id(drafter: Any, spec: Any) -> int:
    """The mask_token_id of the export: the frozen row, or for a learned vector the id vLLM substitutes it at."""
    if drafter.mask_token_id is not None:
        return int(drafter.mask_token_id)
    chosen = drafter.cfg.mask_token_id
    if isinstance(chosen, int):
        return chosen
    if isinstance(chosen, str) and spec.token_id is not None and spec.token_id(chosen) is not None:
        return int(spec.token_id(chosen))
    return int(spec.spare_token_id if spec.spare_token_id is not None else spec.mask_row or 0)


def tensors_of(drafter: Any, target: Any, vocab: Any, dtype: torch.dtype) -> dict[str, torch.Tensor]:
    state = {k: v.detach().to(dtype).contiguous() for k, v in drafter.state_dict().items() if k != "mask_embedding"}
    if vocab is not None and vocab.reduced:  # vLLM: draft id i is target id i + d2t[i]
        ids = vocab.ids.cpu()
        state["lm_head.weight"] = target.lm_head_weight.detach()[ids].to(dtype).contiguous()
        state["d2t"] = (ids - torch.arange(ids.numel())).to(torch.long).contiguous()
    return state


def write_folder(out: Path, config: dict[str, Any], state: dict[str, torch.Tensor], extras: dict[str, Any],
                 readme: str, force: bool) -> list[Path]:
    from safetensors.torch import save_file

    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    try:
        save_file(state, str(tmp / "model.safetensors"), metadata={"format": "pt"})
        os.chmod(tmp / "model.safetensors", 0o644)  # safetensors creates it 0600: the server's user must read it
        for name, obj in extras.items():
            torch.save(obj, tmp / name)
        (tmp / "README.md").write_text(readme)
        (tmp / "config.json").write_text(json.dumps(config, indent=2) + "\n")  # last: marks a complete folder
        if out.exists():
            if not force:
                raise ConfigError(f"{out} appeared while exporting; nothing replaced")
            old = out.with_name(f".{out.name}.old-{os.getpid()}")
            out.replace(old)
            tmp.replace(out)
            shutil.rmtree(old, ignore_errors=True)
        else:
            tmp.replace(out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return sorted(out.iterdir())


def measured_tau(run_folder: Path | None) -> list[str]:
    """Lines about the τ measured for this run: τ_sim from summary.json, τ_real from eval reports."""
    lines: list[str] = []
    if run_folder is None:
        return ["- not measured (exported from memory, not from a run folder)"]
    summary = run_folder / "summary.json"
    if summary.is_file():
        s = json.loads(summary.read_text())
        if s.get("tau_sim_after") is not None:
            lines.append(f"- τ_sim (held-out, training's estimate): {s['tau_sim_after']:.3f}")
    for report in sorted((run_folder / "eval").glob("*.json")) if (run_folder / "eval").is_dir() else []:
        try:
            r = json.loads(report.read_text())
            tau = r["summary"]["all"]["tau_mean_over_benchmarks"] if "summary" in r else None
        except (ValueError, KeyError, TypeError):
            continue
        if tau is not None:
            lines.append(f"- τ_real (`specframe eval`, {report.stem}): {tau:.3f}")
    return lines or ["- not measured yet: run `specframe eval RUN` and export again"]


def readme_text(target: str, config: dict[str, Any], engine: str, run_folder: Path | None, ckpt: Path | None,
                extras: dict[str, Any]) -> str:
    B = config["block_size"]
    serve_target = "HuggingFaceTB/SmolLM2-135M-Instruct" if target == "smollm2-135m-instruct" else target
    mask = config["dflash_config"]["mask_token_id"]
    mask_line = (f"a learned vector, substituted by vLLM wherever token id {mask} appears (mask_embedding.pt); "
                 f"SGLang and the reference cannot serve it" if "mask_embedding.pt" in extras
                 else f"the target's own frozen embedding row {mask}")
    vocab_line = (f"reduced to {config['draft_vocab_size']} tokens (lm_head.weight, d2t: target id = i + d2t[i]); "
                  f"vLLM only" if config.get("draft_vocab_size") else "the target's full vocabulary and LM head")
    spec_cfg = json.dumps({"method": "dflash", "model": "THIS_FOLDER", "num_speculative_tokens": B - 1})
    return "\n".join([
        "# DFlash drafter exported by specframe", "",
        f"- target: `{target}` (serve it with exactly this target; the drafter reads its layers "
        f"{config['dflash_config']['target_layer_ids']} of {config['num_target_layers']})",
        f"- exported for: {engine}; from: `{ckpt or 'a drafter in memory'}`",
        f"- block size B = {B}; {config['num_hidden_layers']} layer(s), hidden {config['hidden_size']}, "
        f"{config['num_attention_heads']} heads ({config['num_key_value_heads']} kv), per-head q/k norm",
        f"- mask token: {mask_line}",
        f"- vocabulary: {vocab_line}", "",
        "## τ measured for it", "", *measured_tau(run_folder), "",
        "## Serve it", "", "vLLM (`method: dflash`, num_speculative_tokens = B - 1):", "", "```",
        f"vllm serve {serve_target} --speculative-config '{spec_cfg}'", "```", "",
        "SGLang (num draft tokens = B):", "", "```",
        f"python -m sglang.launch_server --model-path {serve_target} --speculative-algorithm DFLASH \\",
        f"    --speculative-draft-model-path THIS_FOLDER --speculative-num-draft-tokens {B}", "```", "",
        "The reference (`pip install --no-deps dflash==0.1.0`):", "", "```python",
        "from dflash.model import DFlashDraftModel, dflash_generate",
        "drafter = DFlashDraftModel.from_pretrained('THIS_FOLDER')",
        "out = dflash_generate(drafter, target_model, input_ids, max_new_tokens=256, stop_token_ids=[eos])",
        "```", "",
        "Replace THIS_FOLDER with this folder's path. Fine-tune it again with specframe: "
        "`drafter.init_from: THIS_FOLDER` (docs/serving.md).", ""])
