"""Bad inputs against a specframe checkout: every case of issue 10, its exit code, first error line and where it
was caught. Prints a table and writes JSON.

    python tools/bad_inputs.py --repo /path/to/checkout --out bad_inputs.json [--only 2.,3.] [--workdir DIR]
    python tools/bad_inputs.py --compare before.json after.json      # one before/after markdown table

Each case runs the real command (`specframe train/validate/eval/export`, `tools/sweep.py`) of the checkout
given by --repo in a subprocess on the tiny random target, with the network off (HF_HUB_OFFLINE=1) and
SPECFRAME_GSM8K unset. Run it from a checkout that has no ../shared folder next to it to see what a fresh
machine sees. "where" is measured, not read from the code:
  validate           `specframe validate` with the same arguments already refuses it;
  before model load  the command failed and no target was built (a sitecustomize the tool puts on PYTHONPATH
                     prints a marker whenever a target registry entry is built);
  during the run     the command failed after a target was built;
  accepted           exit code 0.
Side effects are checked per case: a planted pickle's marker file, a run folder's checksums, what a failed run
left behind, a second writer, a sweep's orphaned child.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

MARKER = "[bad_inputs] target built"
SITECUSTOMIZE = f'''
import sys
try:
    import specframe.registry as _r
    _orig = _r.Registry.build
    def _build(self, *a, **k):
        if self.kind == "target":
            print({MARKER!r}, file=sys.stderr, flush=True)
        return _orig(self, *a, **k)
    _r.Registry.build = _build
except Exception:
    pass
'''
CONVERSATIONS = [
    [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "What is 2+2?"},
     {"role": "assistant", "content": "2+2 is 4. Adding two and two gives four."},
     {"role": "user", "content": "And 3+3?"}, {"role": "assistant", "content": "3+3 is 6, an even number."}],
    [{"role": "user", "content": "Name a colour."},
     {"role": "assistant", "content": "Blue, the colour of a clear sky at noon."}],
    [{"role": "user", "content": "Two fruits?"}, {"role": "assistant", "content": "1. apple\n2. pear\nBoth grow."}],
    [{"role": "user", "content": "Say hello in French."},
     {"role": "assistant", "content": "Bonjour! That is hello in French."}],
    [{"role": "user", "content": "Capital of Italy?"}, {"role": "assistant", "content": "Rome is the capital."}],
    [{"role": "user", "content": "Count to five."}, {"role": "assistant", "content": "one, two, three, four, five."}],
]


def base_recipe(out: Path, data: str) -> dict[str, Any]:
    return {
        "run": {"name": "bad", "output_dir": str(out)},
        "data": {"train": data, "val_conversations": 2, "max_length": 160, "batch_size": 2, "num_anchors": 4},
        "target": {"name": "tiny"},
        "drafter": {"name": "block_diffusion", "num_layers": 1, "block_size": 8},
        "loss": [{"name": "ce", "weight": 1.0}],
        "trainer": {"max_steps": 2, "val_every_n_steps": 2, "save_every_n_steps": 1, "log_every_n_steps": 1,
                    "precision": "32-true", "progress_bar": False, "accelerator": "cpu", "devices": 1},
        "eval": {"num_prompts": 1, "max_new_tokens": 8},
    }


@dataclass
class Ctx:
    repo: Path
    work: Path
    env: dict[str, str]
    data: Path  # a good jsonl of chats
    good_run: Path  # a trained run folder (2 steps), made once

    def cli(self, *args: str) -> list[str]:
        return [sys.executable, "-m", "specframe.cli", *args]


@dataclass
class Case:
    id: str
    item: str
    what: str
    run: Callable[[Ctx, Path], dict[str, Any]]
    extra: dict[str, Any] = field(default_factory=dict)


def sh(ctx: Ctx, argv: list[str], timeout: int = 900, cwd: Path | None = None) -> tuple[int, str]:
    try:
        p = subprocess.run(argv, cwd=cwd or ctx.work, env=ctx.env, capture_output=True, text=True, timeout=timeout)
        return p.returncode, p.stdout + p.stderr
    except subprocess.TimeoutExpired as e:
        out = (e.stdout or b"").decode() if isinstance(e.stdout, bytes) else (e.stdout or "")
        return 124, out + "\n(timed out)"


def first_error(output: str) -> str:
    """The line a user would read: 'error: ...' (with the first listed problem), else a traceback's last line."""
    lines = [ln for ln in output.splitlines() if ln.strip() and MARKER not in ln]
    for i, ln in enumerate(lines):
        if ln.startswith("error:"):
            if ln.rstrip().endswith("in the recipe:") and i + 1 < len(lines):
                return f"{ln.strip()} {lines[i + 1].strip()}"
            return ln.strip()
    if any(ln.startswith("Traceback") for ln in lines):
        tail = [ln for ln in lines if not ln.startswith(" ")]
        return "Traceback: " + (tail[-1].strip() if tail else "")
    return lines[-1].strip() if lines else ""


def where(rc: int, output: str, validate_rc: int | None) -> str:
    if rc == 0:
        return "accepted"
    if rc == 124:
        return "still running at the timeout"
    if validate_rc not in (None, 0):
        return "validate"
    return "during the run" if MARKER in output else "before model load"


def write_recipe(case_dir: Path, recipe: dict[str, Any] | str, name: str = "recipe.yaml") -> Path:
    path = case_dir / name
    path.write_text(recipe if isinstance(recipe, str) else yaml.safe_dump(recipe, sort_keys=False))
    return path


def folder_digest(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()[:16]
            for p in sorted(folder.rglob("*")) if p.is_file()}


def train_case(recipe_fn: Callable[[Ctx, Path], dict[str, Any] | str], overrides: list[str] = (),
               check: Callable[[Ctx, Path, dict[str, Any]], None] | None = None,
               pre_args: list[str] = (), timeout: int = 900) -> Callable[[Ctx, Path], dict[str, Any]]:
    def run(ctx: Ctx, d: Path) -> dict[str, Any]:
        recipe = write_recipe(d, recipe_fn(ctx, d))
        vrc, vout = sh(ctx, ctx.cli("validate", *pre_args, str(recipe), *overrides), timeout=timeout)
        rc, out = sh(ctx, ctx.cli("train", *pre_args, str(recipe), *overrides), timeout=timeout)
        res = {"rc": rc, "error": first_error(out) if rc else "", "where": where(rc, out, vrc),
               "validate_rc": vrc, "validate": first_error(vout) if vrc else vout.strip().splitlines()[-1:]}
        run_dir = d / "run"
        res["left_in_run_folder"] = sorted(str(p.relative_to(run_dir)) for p in run_dir.rglob("*")
                                           if p.is_file()) if run_dir.is_dir() else []
        if check:
            check(ctx, d, res)
        return res
    return run


def R(**changes: Any) -> Callable[[Ctx, Path], dict[str, Any]]:
    """The base recipe with some sections updated (None deletes a key)."""
    def make(ctx: Ctx, d: Path) -> dict[str, Any]:
        r = base_recipe(d / "run", str(ctx.data))
        for key, value in changes.items():
            section, _, sub = key.partition("__")
            if sub:
                if value is None:
                    r[section].pop(sub, None)
                else:
                    r[section][sub] = value
            else:
                r[section] = value
        return r
    return make


def data_file(name: str, content: bytes | None, directory: bool = False, **extra: Any):
    def make(ctx: Ctx, d: Path) -> dict[str, Any]:
        path = d / name
        if directory:
            path.mkdir()
        elif content is not None:
            path.write_bytes(content)
        r = base_recipe(d / "run", str(path))
        r["data"].update(extra)
        return r
    return make


def jl(rows: list[Any]) -> bytes:
    return "".join(json.dumps(r) + "\n" for r in rows).encode()


# ------------------------------------------------------------------------------------------------ item 1
class _CreatesFile:
    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


def plant(ckpt: Path, marker: Path) -> None:
    import torch

    ckpt.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"global_step": 1, "state_dict": {}, "payload": _CreatesFile(str(marker))}, ckpt)


def pickle_train(ctx: Ctx, d: Path) -> dict[str, Any]:
    marker = d / "PWNED"
    plant(d / "run" / "checkpoints" / "last.ckpt", marker)
    rc, out = sh(ctx, ctx.cli("train", str(write_recipe(d, R()(ctx, d)))))
    return {"rc": rc, "error": first_error(out) if rc else "", "where": where(rc, out, None),
            "pickle_ran": marker.exists()}


def pickle_in_real_run(ctx: Ctx, d: Path) -> dict[str, Any]:
    """A real trained run folder (its own recipe.resolved.yaml) whose last.ckpt was swapped for the pickle."""
    marker = d / "PWNED"
    shutil.copytree(ctx.good_run, d / "run")
    plant(d / "run" / "checkpoints" / "last.ckpt", marker)
    recipe = write_recipe(d, R(trainer__max_steps=3)(ctx, d))
    rc, out = sh(ctx, ctx.cli("train", str(recipe)))
    return {"rc": rc, "error": first_error(out) if rc else "", "where": where(rc, out, None),
            "pickle_ran": marker.exists()}


def pickle_sweep(ctx: Ctx, d: Path) -> dict[str, Any]:
    marker = d / "PWNED"
    recipe = write_recipe(d, R()(ctx, d))
    plant(d / "sweep" / "base" / "checkpoints" / "last.ckpt", marker)
    rc, out = sh(ctx, [sys.executable, str(ctx.repo / "tools" / "sweep.py"), str(recipe), "--sweep-dir",
                       str(d / "sweep"), "--no-eval"])
    log = (d / "sweep" / "base" / "train.log")
    log_text = log.read_text() if log.is_file() else ""
    return {"rc": rc, "error": first_error(log_text) or first_error(out), "where": where(rc, out + log_text, None),
            "pickle_ran": marker.exists()}


def pickle_eval(ctx: Ctx, d: Path) -> dict[str, Any]:
    marker = d / "PWNED"
    plant(d / "run" / "checkpoints" / "last.ckpt", marker)
    rc, out = sh(ctx, ctx.cli("eval", str(d / "run"), "--benchmarks", "mt_bench", "--num-prompts", "1",
                              "--max-new-tokens", "4"))
    return {"rc": rc, "error": first_error(out) if rc else "", "where": where(rc, out, None),
            "pickle_ran": marker.exists()}


def pickle_export(ctx: Ctx, d: Path) -> dict[str, Any]:
    marker = d / "PWNED"
    plant(d / "run" / "checkpoints" / "last.ckpt", marker)
    hrc, hout = sh(ctx, ctx.cli("export", "-h"))
    if hrc != 0:
        return {"rc": None, "error": "`specframe export` does not exist in this checkout", "where": "n/a",
                "pickle_ran": False}
    rc, out = sh(ctx, ctx.cli("export", str(d / "run"), "--out", str(d / "exported")))
    return {"rc": rc, "error": first_error(out) if rc else "", "where": where(rc, out, None),
            "pickle_ran": marker.exists()}


# ------------------------------------------------------------------------------------------------ item 3
def changed_resume(override: str) -> Callable[[Ctx, Path], dict[str, Any]]:
    def run(ctx: Ctx, d: Path) -> dict[str, Any]:
        shutil.copytree(ctx.good_run, d / "run")
        before = folder_digest(d / "run")
        recipe = write_recipe(d, R()(ctx, d))
        rc, out = sh(ctx, ctx.cli("train", str(recipe), override, "trainer.max_steps=3"))
        after = folder_digest(d / "run")
        changed = sorted(k for k in set(before) | set(after) if before.get(k) != after.get(k))
        return {"rc": rc, "error": first_error(out) if rc else "", "where": where(rc, out, None),
                "folder_unchanged": not changed, "files_changed": changed[:8]}
    return run


# ------------------------------------------------------------------------------------------------ item 4
def second_writer(ctx: Ctx, d: Path) -> dict[str, Any]:
    recipe = write_recipe(d, R(trainer__max_steps=400, trainer__val_every_n_steps=400,
                               trainer__save_every_n_steps=400)(ctx, d))
    first = subprocess.Popen(ctx.cli("train", str(recipe)), cwd=ctx.work, env=ctx.env, stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline = time.time() + 600
        while time.time() < deadline and not (d / "run" / "tau_before.json").is_file():
            time.sleep(0.5)
        rc, out = sh(ctx, ctx.cli("train", str(recipe)), timeout=240)
        first_alive = first.poll() is None
    finally:
        os.killpg(first.pid, signal.SIGKILL)
        first.wait()
    return {"rc": rc, "error": first_error(out) if rc else "", "where": where(rc, out, None),
            "first_writer_still_running": first_alive}


def sweep_killed(ctx: Ctx, d: Path) -> dict[str, Any]:
    recipe = write_recipe(d, R(trainer__max_steps=400, trainer__val_every_n_steps=400,
                               trainer__save_every_n_steps=400)(ctx, d))
    sweep = subprocess.Popen([sys.executable, str(ctx.repo / "tools" / "sweep.py"), str(recipe), "--sweep-dir",
                              str(d / "sweep"), "--no-eval"], cwd=ctx.work, env=ctx.env,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 600
    while time.time() < deadline and not (d / "sweep" / "base" / "tau_before.json").is_file():
        time.sleep(0.5)
    children = subprocess.run(["pgrep", "-P", str(sweep.pid)], capture_output=True, text=True).stdout.split()
    os.kill(sweep.pid, signal.SIGKILL)
    sweep.wait()
    time.sleep(5)
    alive = [c for c in children if Path(f"/proc/{c}").exists()]
    for c in alive:
        os.kill(int(c), signal.SIGKILL)
    return {"rc": -9, "error": f"sweep killed with SIGKILL; {len(alive)} of {len(children)} child trainer(s) "
                               f"still running 5 s later", "where": "n/a", "orphans": len(alive)}


# ------------------------------------------------------------------------------------------------ item 6
def eval_case(*args: str, run: str = "good") -> Callable[[Ctx, Path], dict[str, Any]]:
    def go(ctx: Ctx, d: Path) -> dict[str, Any]:
        shutil.copytree(ctx.good_run, d / "run")
        rc, out = sh(ctx, ctx.cli("eval", str(d / "run"), "--num-prompts", "1", "--max-new-tokens", "4",
                                  "--no-progress", *args))
        written = sorted(p.name for p in (d / "run" / "eval").glob("*")) if (d / "run" / "eval").is_dir() else []
        return {"rc": rc, "error": first_error(out) if rc else "", "where": where(rc, out, None),
                "eval_files": written}
    return go


def ckpt_case(content: Callable[[bytes], bytes]) -> Callable[[Ctx, Path], dict[str, Any]]:
    def go(ctx: Ctx, d: Path) -> dict[str, Any]:
        shutil.copytree(ctx.good_run, d / "run")
        for p in (d / "run" / "checkpoints").glob("*.ckpt"):
            p.write_bytes(content(p.read_bytes()))
        rc, out = sh(ctx, ctx.cli("eval", str(d / "run"), "--benchmarks", "mt_bench", "--num-prompts", "1",
                                  "--max-new-tokens", "4"))
        return {"rc": rc, "error": first_error(out) if rc else "", "where": where(rc, out, None)}
    return go


def plugin_first(ctx: Ctx, d: Path) -> dict[str, Any]:
    (d / "my_plugin.py").write_text("X = 1\n")
    recipe = write_recipe(d, R()(ctx, d))
    rc, out = sh(ctx, ctx.cli("validate", str(recipe), "--plugin", str(d / "my_plugin.py"), "trainer.max_steps=3"))
    return {"rc": rc, "error": first_error(out) if rc else "", "where": "validate" if rc else "accepted"}


def partial_regenerate(ctx: Ctx, d: Path) -> dict[str, Any]:
    """A regenerate folder with a shard but an unfinished manifest (a killed `specframe regenerate`)."""
    folder = d / "regen"
    folder.mkdir()
    (folder / "shard-00000.jsonl").write_bytes(jl([{"messages": c} for c in CONVERSATIONS * 4]))
    (folder / "manifest.json").write_text(json.dumps({"complete": False, "rows_written": 24}))
    recipe = write_recipe(d, base_recipe(d / "run", str(folder)))
    vrc, _ = sh(ctx, ctx.cli("validate", str(recipe)))
    rc, out = sh(ctx, ctx.cli("train", str(recipe)))
    return {"rc": rc, "error": first_error(out) if rc else "", "where": where(rc, out, vrc)}


CASES: list[Case] = [
    Case("1.train", "1", "planted pickle last.ckpt, `specframe train` resumes", pickle_train),
    Case("1.train_real_run", "1", "a trained run folder with last.ckpt swapped for the pickle, train resumes",
         pickle_in_real_run),
    Case("1.sweep", "1", "planted pickle last.ckpt in a sweep point, tools/sweep.py", pickle_sweep),
    Case("1.eval", "1", "planted pickle last.ckpt, `specframe eval RUN`", pickle_eval),
    Case("1.export", "1", "planted pickle last.ckpt, `specframe export RUN`", pickle_export),
    Case("2.nan_weight", "2", "loss.0.weight=.nan", train_case(R(), ["loss.0.weight=.nan"])),
    Case("2.inf_weight", "2", "loss.0.weight=.inf", train_case(R(), ["loss.0.weight=.inf"])),
    Case("2.neg_weight", "2", "loss.0.weight=-1", train_case(R(), ["loss.0.weight=-1"])),
    Case("2.save_every", "2", "trainer.save_every_n_steps=2.5", train_case(R(), ["trainer.save_every_n_steps=2.5"])),
    Case("2.precision", "2", "trainer.precision=bf17-mixed", train_case(R(), ["trainer.precision=bf17-mixed"])),
    Case("2.accumulate0", "2", "trainer.accumulate_grad_batches=0",
         train_case(R(), ["trainer.accumulate_grad_batches=0"])),
    Case("2.empty", "2", "an empty recipe file (capped at 240 s: the old code starts the all-defaults run)",
         train_case(lambda ctx, d: "", timeout=240)),
    Case("2.diverges", "2", "optim.lr=1e30 (finite, diverges to a non-finite loss)",
         train_case(R(), ["optim.lr=1e30"])),
    Case("3.num_layers", "3", "resume a trained folder with drafter.num_layers 1 -> 2",
         changed_resume("drafter.num_layers=2")),
    Case("3.block_size", "3", "resume a trained folder with drafter.block_size 8 -> 4",
         changed_resume("drafter.block_size=4")),
    Case("3.failed_on_data", "3", "a run that fails on its data (no usable conversation)",
         train_case(data_file("noassist.jsonl", jl([{"messages": [{"role": "user", "content": "hi"}]}] * 6)))),
    Case("4.second_writer", "4", "a second `specframe train` on a folder being trained", second_writer),
    Case("4.sweep_killed", "4", "tools/sweep.py killed (SIGKILL) while its child trains", sweep_killed),
    Case("5.empty_file", "5", "data.train: an empty .jsonl", train_case(data_file("empty.jsonl", b""))),
    Case("5.broken_json", "5", "data.train: a .jsonl with a broken line 3",
         train_case(data_file("broken.jsonl", jl([{"messages": CONVERSATIONS[0]}] * 2) + b"{not json\n"
                              + jl([{"messages": CONVERSATIONS[1]}] * 8)))),
    Case("5.no_assistant", "5", "data.train: conversations without an assistant turn",
         train_case(data_file("noassist.jsonl", jl([{"messages": [{"role": "user", "content": "hi"}]}] * 6)))),
    Case("5.only_system", "5", "data.train: only system messages",
         train_case(data_file("system.jsonl", jl([{"messages": [{"role": "system", "content": "be nice"}]}] * 6)))),
    Case("5.non_utf8", "5", "data.train: non-UTF-8 bytes in line 2",
         train_case(data_file("latin1.jsonl", jl([{"messages": CONVERSATIONS[0]}])
                              + b'{"messages": [{"role": "user", "content": "caf\xe9"}]}\n'
                              + jl([{"messages": c} for c in CONVERSATIONS] * 2)))),
    Case("5.missing_file", "5", "data.train: a file that does not exist",
         train_case(data_file("missing.jsonl", None))),
    Case("5.directory", "5", "data.train: a directory named like a file",
         train_case(data_file("adir.jsonl", None, directory=True))),
    Case("5.unknown_roles", "5", "data.train: ShareGPT .json with unknown roles (narrator, tool)",
         train_case(data_file("roles.json", json.dumps(
             [{"id": str(i), "conversations": [{"from": "narrator", "value": "once"},
                                               {"from": "human", "value": c[-2]["content"]},
                                               {"from": "tool", "value": "x"},
                                               {"from": "gpt", "value": c[-1]["content"]}]}
              for i, c in enumerate(CONVERSATIONS * 3)]).encode()))),
    Case("5.limit_neg", "5", "data.limit=-1", train_case(R(), ["data.limit=-1"])),
    Case("5.partial_regen", "5", "data.train: a partial `specframe regenerate` folder", partial_regenerate),
    Case("6.unknown_benchmark", "6", "eval --benchmarks mt_bench gsm9k", eval_case("--benchmarks", "mt_bench", "gsm9k")),
    Case("6.strategy_typo", "6", "eval --strategy self_selectoin", eval_case("--benchmarks", "mt_bench",
                                                                             "--strategy", "self_selectoin")),
    Case("6.missing_prompts", "6", "eval --benchmarks mt_bench missing.jsonl",
         eval_case("--benchmarks", "mt_bench", "/nonexistent/prompts.jsonl")),
    Case("6.default_benchmarks", "6", "eval RUN with the default benchmarks, no ../shared, offline",
         eval_case("--no-baseline")),
    Case("8.plugin_first", "8", "validate RECIPE --plugin FILE key=value", plugin_first),
    Case("8.truncated_ckpt", "8", "eval on a truncated checkpoint", ckpt_case(lambda b: b[: len(b) // 2])),
    Case("8.random_ckpt", "8", "eval on a checkpoint of random bytes", ckpt_case(lambda b: os.urandom(4096))),
    Case("8.loss_mapping", "8", "loss: given as a mapping {name: ce}",
         train_case(R(loss={"name": "ce", "weight": 1.0}))),
]


def setup(repo: Path, work: Path) -> Ctx:
    work.mkdir(parents=True, exist_ok=True)
    hook = work / "_hook"
    hook.mkdir(exist_ok=True)
    (hook / "sitecustomize.py").write_text(SITECUSTOMIZE)
    env = {k: v for k, v in os.environ.items() if k not in ("SPECFRAME_GSM8K",)}
    env.update(PYTHONPATH=f"{repo}{os.pathsep}{hook}", HF_HUB_OFFLINE="1", WANDB_MODE="disabled",
               TOKENIZERS_PARALLELISM="false", PYTHONUNBUFFERED="1")
    data = work / "chats.jsonl"
    data.write_bytes(jl([{"messages": c} for c in CONVERSATIONS] * 4))
    ctx = Ctx(repo=repo, work=work, env=env, data=data, good_run=work / "good_run")
    if not (ctx.good_run / "summary.json").is_file():
        shutil.rmtree(ctx.good_run, ignore_errors=True)
        recipe = write_recipe(work, base_recipe(ctx.good_run, str(data)), "good.yaml")
        rc, out = sh(ctx, ctx.cli("train", str(recipe)))
        if rc != 0:
            raise SystemExit(f"setup: training the reference run failed:\n{out[-3000:]}")
    return ctx


def _side(r: dict[str, Any]) -> str:
    keys = ("pickle_ran", "folder_unchanged", "first_writer_still_running", "orphans", "eval_files",
            "left_in_run_folder")
    return "; ".join(f"{k}={r[k]}" for k in keys if k in r)


def _norm_where(r: dict[str, Any]) -> str:
    return "still running at the timeout" if r.get("rc") == 124 else r.get("where", "")


def compare(before_path: str, after_path: str) -> None:
    """One markdown table: each case before and after (exit code, where, first error line, side effects)."""
    before = {r["id"]: r for r in json.loads(Path(before_path).read_text())["cases"]}
    after_doc = json.loads(Path(after_path).read_text())
    print(f"| case | input | before: exit, where, first line | after: exit, where, first line | after: side effects |")
    print("| --- | --- | --- | --- | --- |")
    for a in after_doc["cases"]:
        b = before.get(a["id"], {})
        cell = lambda r: (f"{r.get('rc')}, {_norm_where(r)}, `{(r.get('error') or '-')[:150]}`"
                          + (f" ({_side(r)})" if _side(r) else "")) if r else "not run"
        print(f"| {a['id']} | {a['what']} | {cell(b)} | {a.get('rc')}, {_norm_where(a)}, "
              f"`{(a.get('error') or '-')[:200]}` | {_side(a)} |")


def main(argv: list[str] | None = None) -> int:
    if argv is None and len(sys.argv) == 4 and sys.argv[1] == "--compare":
        compare(sys.argv[2], sys.argv[3])
        return 0
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--repo", default=str(Path(__file__).resolve().parents[1]), help="checkout to test")
    p.add_argument("--workdir", help="scratch folder (default: a fresh one under /tmp)")
    p.add_argument("--out", default="bad_inputs.json", help="JSON written here")
    p.add_argument("--only", help="comma-separated case id prefixes, e.g. 1.,2.nan_weight")
    args = p.parse_args(argv)
    repo = Path(args.repo).resolve()
    import tempfile

    work = Path(args.workdir or tempfile.mkdtemp(prefix="bad_inputs_")).resolve()
    ctx = setup(repo, work)
    rev = subprocess.run(["git", "-C", str(repo), "rev-parse", "--short", "HEAD"], capture_output=True,
                         text=True).stdout.strip()
    wanted = [w for w in (args.only or "").split(",") if w]
    results = []
    for case in CASES:
        if wanted and not any(case.id.startswith(w) for w in wanted):
            continue
        d = work / case.id
        shutil.rmtree(d, ignore_errors=True)
        d.mkdir(parents=True)
        t0 = time.time()
        res = case.run(ctx, d)
        res.update(id=case.id, item=case.item, what=case.what, seconds=round(time.time() - t0, 1))
        results.append(res)
        print(f"{case.id:<22} rc={res['rc']!s:<4} {res['where']:<18} {res['error'][:110]}", flush=True)
        Path(args.out).write_text(json.dumps({"repo": str(repo), "revision": rev, "cases": results}, indent=2))
    print()
    print(f"| case | what | exit | where | first line of the error | side effects |  ({repo} @ {rev})")
    print("| --- | --- | --- | --- | --- | --- |")
    for r in results:
        side = {k: v for k, v in r.items() if k in ("pickle_ran", "folder_unchanged", "left_in_run_folder",
                                                     "first_writer_still_running", "orphans", "eval_files")}
        print(f"| {r['id']} | {r['what']} | {r['rc']} | {r['where']} | {r['error'][:140]} | {side or ''} |")
    print(f"\nwrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
