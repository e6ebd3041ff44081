"""Two-process data-parallel training on CPU (gloo), repeated: does every run end cleanly, with one set of run
files written by rank 0? Prints a table and writes JSON.

    python tools/ddp_repeat.py --runs 10 --out ddp_repeat.json [--repo CHECKOUT] [--steps 4]

Each run is `specframe train` on the tiny random target with trainer.devices=2, strategy=ddp, accelerator=cpu,
into a fresh folder. A run passes when it exits 0, summary.json and tau_before.json parse, no *.tmp file is
left in the folder, and the logged train/loss rows are finite.
"""
from __future__ import annotations

import argparse
import csv
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

CHATS = [
    [{"role": "user", "content": f"Question {i}: what is {i}+{i}?"},
     {"role": "assistant", "content": f"{i}+{i} is {2 * i}. Adding {i} to itself gives {2 * i}, an even number."}]
    for i in range(24)
]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--runs", type=int, default=10)
    p.add_argument("--steps", type=int, default=4)
    p.add_argument("--repo", default=str(Path(__file__).resolve().parents[1]))
    p.add_argument("--workdir")
    p.add_argument("--out", default="ddp_repeat.json")
    p.add_argument("--timeout", type=int, default=900, help="seconds per run before it counts as failed")
    args = p.parse_args(argv)
    work = Path(args.workdir or tempfile.mkdtemp(prefix="ddp_repeat_"))
    work.mkdir(parents=True, exist_ok=True)
    data = work / "chats.jsonl"
    data.write_text("".join(json.dumps({"messages": c}) + "\n" for c in CHATS))
    env = {**os.environ, "PYTHONPATH": args.repo, "WANDB_MODE": "disabled", "HF_HUB_OFFLINE": "1",
           "OMP_NUM_THREADS": "1"}
    rows = []
    for i in range(args.runs):
        out = work / f"run{i}"
        recipe = {
            "run": {"name": f"ddp{i}", "output_dir": str(out)},
            "data": {"train": str(data), "val_conversations": 4, "max_length": 96, "batch_size": 2,
                     "num_anchors": 4},
            "target": {"name": "tiny"}, "drafter": {"name": "block_diffusion", "num_layers": 1, "block_size": 8},
            "loss": [{"name": "ce", "weight": 1.0}],
            "trainer": {"max_steps": args.steps, "val_every_n_steps": args.steps, "save_every_n_steps": 2,
                        "log_every_n_steps": 1, "precision": "32-true", "progress_bar": False,
                        "accelerator": "cpu", "devices": 2, "strategy": "ddp"},
        }
        path = work / f"recipe{i}.yaml"
        path.write_text(yaml.safe_dump(recipe))
        t0 = time.time()
        problems = []
        try:
            proc = subprocess.run([sys.executable, "-m", "specframe.cli", "train", str(path)], env=env, cwd=work,
                                  capture_output=True, text=True, timeout=args.timeout)
        except subprocess.TimeoutExpired:  # a hang and a starved machine look alike here: recorded, not hidden
            proc = subprocess.CompletedProcess([], 124, "", f"timed out after {args.timeout} s")
            problems.append(f"timed out after {args.timeout} s")
        for name in ("summary.json", "tau_before.json"):
            try:
                json.loads((out / name).read_text())
            except (OSError, ValueError) as e:
                problems.append(f"{name}: {type(e).__name__}")
        leftovers = [str(q.relative_to(out)) for q in out.rglob("*.tmp")]
        if leftovers:
            problems.append(f"left over: {leftovers}")
        metrics = out / "logs" / "metrics.csv"
        losses = []
        if metrics.is_file():
            with metrics.open() as f:
                losses = [float(r["train/loss"]) for r in csv.DictReader(f) if r.get("train/loss")]
        if not losses or not all(math.isfinite(x) for x in losses):
            problems.append(f"train/loss rows: {losses}")
        if proc.returncode != 0:
            tail = [ln for ln in (proc.stdout + proc.stderr).splitlines() if ln.strip()][-1:]
            problems.append(f"exit {proc.returncode}: {tail}")
        rows.append({"run": i, "rc": proc.returncode, "seconds": round(time.time() - t0, 1),
                     "steps_logged": len(losses), "ok": not problems, "problems": problems})
        print(f"run {i}: rc={proc.returncode} {'ok' if not problems else problems} ({rows[-1]['seconds']} s)",
              flush=True)
        Path(args.out).write_text(json.dumps({"runs": rows}, indent=2))
    ok = sum(r["ok"] for r in rows)
    print(f"\n{ok}/{len(rows)} two-process runs ended cleanly")
    return 0 if ok == len(rows) else 1


if __name__ == "__main__":
    sys.exit(main())
