"""tools/sweep.py: grid expansion and up-front validation, skipping finished points, aggregation, a real resume."""
from __future__ import annotations

import csv
import importlib.util
import json
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
BASE = ROOT / "recipes" / "block_diffusion" / "smollm2_baseline.yaml"
TINY = ROOT / "recipes" / "debug" / "tiny.yaml"


def _load_sweep():
    spec = importlib.util.spec_from_file_location("specframe_tools_sweep", ROOT / "tools" / "sweep.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up by name
    spec.loader.exec_module(module)
    return module


sweep = _load_sweep()


def _grid(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "grid.yaml"
    path.write_text(text)
    return path


def _never(argv, log, env):  # a runner for tests where nothing may run
    raise AssertionError(f"nothing should run, got {argv}")


class FakeRunner:
    """Stands in for the subprocess: records each command and writes what a successful train / eval leaves."""

    def __init__(self) -> None:
        self.calls: list[list[str]] = []

    def __call__(self, argv: list[str], log: Path, env: dict[str, str]) -> int:
        self.calls.append(argv)
        if "train" in argv:
            out = Path(json.loads(next(a.split("=", 1)[1] for a in argv if a.startswith("run.output_dir="))))
            out.mkdir(parents=True, exist_ok=True)
            (out / "summary.json").write_text(json.dumps({"tau_sim_before": 1.0, "tau_sim_after": 1.2}))
        else:
            out = Path(argv[argv.index("--out") + 1])
            out.mkdir(parents=True, exist_ok=True)
            (out / "single.json").write_text(json.dumps({"benchmarks": {"mt_bench": {"tau": 1.5}}}))
        return 0


def test_dry_run_of_a_2x2_grid_validates_4_points_with_deterministic_names(tmp_path: Path, capsys) -> None:
    argv = [str(BASE), "--overlay", str(TINY), "optim.lr=1e-3,3e-3", "loss.0.weight=1.0,0.5",
            "--sweep-dir", str(tmp_path / "sw"), "--dry-run"]
    assert sweep.main(argv, runner=_never) == 0
    out = capsys.readouterr().out
    expected = ["optim.lr-1e-3_loss.0.weight-1.0", "optim.lr-1e-3_loss.0.weight-0.5",
                "optim.lr-3e-3_loss.0.weight-1.0", "optim.lr-3e-3_loss.0.weight-0.5"]
    assert all(name in out for name in expected) and out.count("pending") == 4
    plan = sweep.plan(sweep.parse_args(argv))
    assert [p.name for p in plan.points] == expected
    assert [p.name for p in sweep.plan(sweep.parse_args(argv)).points] == expected  # deterministic
    got = set()
    for p in plan.points:
        r = plan.recipes[p.name]  # validated by the same code as `specframe train`
        assert r.run.name == p.name and Path(r.run.output_dir) == (tmp_path / "sw" / p.name).resolve()
        assert r.target.name == "tiny"  # the overlay applies to every point
        got.add((r.optim.lr, r.loss[0].weight))
    assert got == {(1e-3, 1.0), (1e-3, 0.5), (3e-3, 1.0), (3e-3, 0.5)}
    assert not (tmp_path / "sw").exists()  # a dry run writes nothing


def test_names_and_value_splitting() -> None:
    assert sweep.split_values("[{name: ce, weight: 1.0}],[{name: chain, weight: 40}]") == [
        "[{name: ce, weight: 1.0}]", "[{name: chain, weight: 40}]"]
    assert sweep.sanitize("optim.lr-1e-3_loss.0.gamma-7") == "optim.lr-1e-3_loss.0.gamma-7"
    assert sweep.sanitize("loss-[{name: ce, weight: 1.0}]") == "loss-name-ce-weight-1.0"
    long = sweep.sanitize("x" * 300)
    assert len(long) <= sweep.MAX_NAME and long != sweep.sanitize("x" * 301)


def test_an_invalid_point_fails_the_whole_sweep_up_front(tmp_path: Path, capsys) -> None:
    grid = _grid(tmp_path, """
variants:
  good: ["loss=[{name: ce, weight: 1.0}]"]
  bad_gamma: ["loss=[{name: positional, weight: 1.0, gamma: -1}]"]
  typo: ["optim.lrr=1e-3"]
""")
    rc = sweep.main([str(BASE), "--overlay", str(TINY), "--grid", str(grid), "--sweep-dir", str(tmp_path / "sw")],
                    runner=_never)
    err = capsys.readouterr().err
    assert rc == 2
    assert "point 'bad_gamma'" in err and "gamma" in err
    assert "point 'typo'" in err and "did you mean 'optim.lr'" in err
    assert "point 'good'" not in err
    assert not (tmp_path / "sw").exists()


def test_grid_file_errors_are_listed(tmp_path: Path) -> None:
    grid = _grid(tmp_path, "variants: {ok: [], 'bad name': []}\nseeds: [a]\nbasline: ok\n")
    with pytest.raises(sweep.ConfigError) as e:
        sweep.load_grid(grid)
    text = str(e.value)
    assert "'bad name'" in text and "seeds" in text and "unknown key 'basline'" in text


def test_finished_points_are_skipped_and_eval_runs_with_the_recipe_settings(tmp_path: Path, capsys) -> None:
    grid = _grid(tmp_path, """
name: skiptest
baseline: a
seeds: [0, 1]
variants:
  a: {overrides: ["loss=[{name: ce, weight: 1.0}]"]}
  b: [{loss: [{name: ce, weight: 0.5}]}]
""")
    argv = [str(BASE), "--overlay", str(TINY), "--grid", str(grid), "--sweep-dir", str(tmp_path / "sw"), "--no-eval"]
    plan = sweep.plan(sweep.parse_args(argv))
    assert [p.name for p in plan.points] == ["a_seed-0", "a_seed-1", "b_seed-0", "b_seed-1"]
    assert plan.recipes["b_seed-1"].loss[0].weight == 0.5 and plan.recipes["b_seed-1"].run.seed == 1
    done = tmp_path / "sw" / "a_seed-0"
    done.mkdir(parents=True)
    (done / "summary.json").write_text(json.dumps({"tau_sim_before": 1.0, "tau_sim_after": 1.1}))
    (tmp_path / "sw" / "b_seed-0" / "checkpoints").mkdir(parents=True)
    (tmp_path / "sw" / "b_seed-0" / "checkpoints" / "last.ckpt").write_text("")
    assert sweep.main([*argv, "--dry-run"], runner=_never) == 0
    table = capsys.readouterr().out
    assert [line.split()[-1] for line in table.splitlines()[3:]] == ["done", "pending", "resumes", "pending"]

    runner = FakeRunner()
    assert sweep.main(argv, runner=runner) == 0
    trained = [a[a.index("--overlay") - 1] if "--overlay" in a else next(x for x in a if x.startswith("run.name="))
               for a in runner.calls]
    assert trained == ["run.name=a_seed-1", "run.name=b_seed-0", "run.name=b_seed-1"]
    assert all("run.resume=true" in a for a in runner.calls)
    assert json.loads((tmp_path / "sw" / "b_seed-1" / "timing.json").read_text())["train_attempts"][0]["returncode"] == 0

    # with eval on, trained points only get their eval, with the recipe's eval settings
    runner = FakeRunner()
    failed = sweep.run_sweep(plan, with_eval=True, runner=runner, log=lambda s: None)
    assert failed == [] and len(runner.calls) == 4 and all(a[3] == "eval" for a in runner.calls)
    e = plan.recipes["a_seed-0"].eval
    first = runner.calls[0]
    assert first[first.index("--benchmarks") + 1: first.index("--num-prompts")] == list(e.benchmarks)
    assert first[first.index("--num-prompts") + 1] == str(e.num_prompts)
    assert sweep.run_sweep(plan, with_eval=True, runner=_never, log=lambda s: None) == []  # all done now


def test_a_failing_point_does_not_stop_the_sweep(tmp_path: Path) -> None:
    argv = [str(BASE), "--overlay", str(TINY), "optim.lr=1e-3,2e-3", "--sweep-dir", str(tmp_path / "sw"), "--no-eval"]
    plan = sweep.plan(sweep.parse_args(argv))
    ok = FakeRunner()

    def crashes_first(argv, log, env):
        return 1 if "run.name=optim.lr-1e-3" in argv else ok(argv, log, env)

    assert sweep.run_sweep(plan, with_eval=False, runner=crashes_first, log=lambda s: None) == ["optim.lr-1e-3"]
    assert (tmp_path / "sw" / "optim.lr-2e-3" / "summary.json").is_file()


def test_parallel_jobs_share_the_cores(tmp_path: Path, monkeypatch) -> None:
    argv = [str(BASE), "--overlay", str(TINY), "optim.lr=1e-3,2e-3,3e-3", "--sweep-dir", str(tmp_path / "sw")]
    plan = sweep.plan(sweep.parse_args(argv))
    monkeypatch.setattr(sweep.os, "cpu_count", lambda: 8)
    ok, threads = FakeRunner(), []

    def record(argv, log, env):
        threads.append(env["OMP_NUM_THREADS"])
        return ok(argv, log, env)

    assert sweep.run_sweep(plan, with_eval=False, jobs=2, runner=record, log=lambda s: None) == []
    assert threads == ["4", "4", "4"]
    assert all((p.output_dir / "summary.json").is_file() for p in plan.points)


def test_aggregation_gives_mean_std_and_percent_vs_baseline(tmp_path: Path) -> None:
    grid = _grid(tmp_path, """
baseline: base
seeds: [0, 1]
variants:
  base: ["loss=[{name: ce, weight: 1.0}]"]
  better: ["loss=[{name: positional, weight: 1.0, gamma: 10}]"]
  unfinished: ["optim.lr=2e-3"]
""")
    argv = [str(BASE), "--overlay", str(TINY), "--grid", str(grid), "--sweep-dir", str(tmp_path / "sw")]
    plan = sweep.plan(sweep.parse_args(argv))
    figures = {"base_seed-0": (1.0, 1.5, 10.0), "base_seed-1": (1.2, 1.7, 14.0),
               "better_seed-0": (1.3, 2.0, 20.0), "better_seed-1": (1.5, 2.2, 22.0)}
    for name, (tau_sim, tau_real, seconds) in figures.items():
        d = tmp_path / "sw" / name
        (d / "eval").mkdir(parents=True)
        (d / "summary.json").write_text(json.dumps({"tau_sim_before": 1.0, "tau_sim_after": tau_sim}))
        (d / "timing.json").write_text(json.dumps({"train_wall_s": seconds}))
        e = plan.recipes[name].eval
        if name.startswith("base"):  # `specframe eval`'s own shape, with the settings it ran with
            report = {"settings": {"benchmarks": list(e.benchmarks), "num_prompts": e.num_prompts,
                                   "max_new_tokens": e.max_new_tokens, "temperature": e.temperature,
                                   "strategy": {"name": "single"}, "block_size": 8},
                      "summary": {"mt_bench": {"tau": tau_real, "tau_pooled": tau_real, "speedup": 1.1,
                                               "verify_width": 16.0},
                                  "gsm8k": {"tau": tau_real + 0.2, "verify_width": 16.0}}}
        else:  # the plain documented shape
            report = {"benchmarks": {"mt_bench": {"tau": tau_real, "speedup": 1.3}, "gsm8k": {"tau": tau_real + 0.2}}}
        (d / "eval" / "single.json").write_text(json.dumps(report))
    stale = tmp_path / "sw" / "base_seed-0" / "eval" / "other.json"  # an eval with other settings is ignored
    stale.write_text(json.dumps({"settings": {"num_prompts": 999}, "summary": {"mt_bench": {"tau": 9.0}}}))

    rows = {r["point"]: r for r in sweep.aggregate(plan)}
    assert rows["base"]["tau_sim_after"][:2] == (pytest.approx(1.1), pytest.approx(0.1414, abs=1e-4))
    assert rows["better"]["tau_sim_after vs baseline %"] == pytest.approx(100 * (1.4 / 1.1 - 1))
    assert rows["better"]["tau_real/mt_bench vs baseline %"] == pytest.approx(100 * (2.1 / 1.6 - 1))
    assert rows["unfinished"]["runs"] == 0 and rows["unfinished"]["tau_sim_after"][0] is None
    # the mean over benchmarks per run, then over seeds: base (1.6, 1.8), better (2.2, 2.4)... of (τ, τ + 0.2)
    assert rows["base"]["tau_real_mean"][0] == pytest.approx(1.7)
    assert rows["better"]["tau_real_mean vs baseline %"] == pytest.approx(100 * (2.2 / 1.7 - 1))
    assert rows["base"]["verify_width"][0] == 16.0 and rows["better"]["verify_width"][0] is None

    md = (tmp_path / "sw" / "results.md").read_text()
    assert ("| `better` | 2/2 | 1.000 ± 0.000 | 1.400 ± 0.141 | +27.3% | 2.100 ± 0.141 | +31.2% | 2.300 ± 0.141 | "
            "+27.8% | 2.200 ± 0.141 | +29.4% | - | 1.30 ± 0.00 | 0.3 ± 0.0 |") in md  # no gsm8k speedup: no column
    assert "| `base` | 2/2 |" in md and "baseline" in md and "0.2 ± 0.0" in md  # train time in minutes
    with open(tmp_path / "sw" / "results.csv") as f:
        table = list(csv.DictReader(f))
    assert [r["point"] for r in table] == ["base", "better", "unfinished"]
    assert float(table[1]["tau_real_mt_bench_mean"]) == pytest.approx(2.1)
    assert float(table[1]["tau_sim_after_vs_baseline_pct"]) == pytest.approx(27.2727, abs=1e-3)
    png = (tmp_path / "sw" / "results.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 5000


def _paper_grid(tmp_path: Path, which: str = "paper_ablation.yaml") -> Path:
    """The paper's grid without its shared feature cache (data/ is not in a clone): the rest as it is."""
    text = (ROOT / "recipes" / "sweeps" / which).read_text()
    text = text.replace("include: paper_ablation.yaml", f"include: {ROOT / 'recipes' / 'sweeps' / 'paper_ablation.yaml'}")
    if which == "paper_ablation.yaml":
        text = f"include: {ROOT / 'recipes' / 'sweeps' / which}\n"
    return _grid(tmp_path, text + "common: [data.features_cache=null]\n")


PAPER_POINTS = ["baseline_seed-0", "baseline_seed-1", "baseline_seed-2", "positional", "focal", "chain",
                "positional_focal", "full_seed-0", "full_seed-1", "full_seed-2", "full_selfselect"]


def test_the_paper_grids_expand_and_validate(tmp_path: Path) -> None:
    plan = sweep.plan(sweep.parse_args(
        [str(BASE), "--grid", str(_paper_grid(tmp_path)), "--sweep-dir", str(tmp_path / "sw")]))
    assert [p.name for p in plan.points] == PAPER_POINTS
    assert plan.baseline == "baseline"
    assert {p.group for p in plan.points if p.seed is not None} == {"baseline", "full"}
    full = plan.recipes["full_seed-0"]
    assert [t.name for t in full.loss] == ["positional", "first_error_focal", "chain"]
    assert full.drafter.options["draft_vocab_size"] == 8192 and full.data.split_seed == 0
    assert (full.eval.dtype, full.eval.speedup) == ("float32", False)
    # self-selection differs only in `eval`: it evaluates full_seed-0's checkpoint and trains nothing
    assert plan.trained_by == {"full_selfselect": "full_seed-0"}
    assert plan.recipes["full_selfselect"].eval.strategy == {"name": "self_selection", "num_drafts": 4}
    second = sweep.load_grid(ROOT / "recipes" / "sweeps" / "paper_ablation_regenerated.yaml")
    assert list(second.variants)[-1] == "full_regenerated" and len(second.variants) == 8
    assert second.name == "paper_ablation" and second.baseline == "baseline"
    assert second.variant_seeds == {"baseline": [0, 1, 2], "full": [0, 1, 2]}


def test_the_quickstart_seed_grid_changes_only_loss_and_seed(tmp_path: Path) -> None:
    """recipes/sweeps/quickstart_seeds.yaml: the paper's comparison at the quickstart's own budget and data."""
    quickstart = ROOT / "recipes" / "quickstart.yaml"
    plan = sweep.plan(sweep.parse_args([str(quickstart), "--grid", str(ROOT / "recipes" / "sweeps" / "quickstart_seeds.yaml"),
                                        "--sweep-dir", str(tmp_path / "sw")]))
    assert [p.name for p in plan.points] == [f"{g}_seed-{s}" for g in ("baseline", "full") for s in range(3)]
    assert plan.baseline == "baseline"
    base, full = plan.recipes["baseline_seed-1"], plan.recipes["full_seed-1"]
    assert [t.name for t in base.loss] == ["ce"]
    assert [t.name for t in full.loss] == ["positional", "first_error_focal", "chain"]
    for r in plan.recipes.values():  # the quickstart's data, cache, steps and labels; one held-out split
        assert (r.data.split_seed, r.data.features_cache, r.trainer.max_steps) == (0, "auto", 400)
        assert [a.name for a in r.alignment] == ["target_greedy_labels"]
        assert (r.eval.num_prompts, r.eval.speedup) == (5, False)


def test_a_missing_regenerated_folder_fails_only_its_point(tmp_path: Path, monkeypatch) -> None:
    grid = _paper_grid(tmp_path, "paper_ablation_regenerated.yaml")
    monkeypatch.chdir(tmp_path)  # data/regenerated/... is relative: make sure it does not exist here
    with pytest.raises(sweep.ConfigError) as e:
        sweep.plan(sweep.parse_args([str(BASE), "--overlay", str(TINY), "--grid", str(grid)]))
    assert len(e.value.issues) == 1
    assert "point 'full_regenerated'" in e.value.issues[0] and "data/regenerated/smollm2_sharegpt" in e.value.issues[0]
    folder = tmp_path / "data" / "regenerated" / "smollm2_sharegpt"
    folder.mkdir(parents=True)
    with pytest.raises(sweep.ConfigError, match="holds no \\*.jsonl files"):  # an empty folder cannot train
        sweep.plan(sweep.parse_args([str(BASE), "--overlay", str(TINY), "--grid", str(grid)]))
    chat = [{"role": "user", "content": "Hi?"}, {"role": "assistant", "content": "Hello."}]
    (folder / "shard-00000.jsonl").write_text("".join(json.dumps({"messages": chat}) + "\n" for _ in range(8)))
    plan = sweep.plan(sweep.parse_args([str(BASE), "--overlay", str(TINY), "--grid", str(grid)]))
    assert plan.directory == Path("runs/sweeps/paper_ablation") and len(plan.points) == 12
    assert plan.recipes["full_regenerated"].data.features_cache is None
    assert "full_regenerated" not in plan.trained_by  # other data: its own training


def test_per_variant_seeds_and_cli_seeds(tmp_path: Path) -> None:
    grid = _grid(tmp_path, """
seeds: [5]
variants:
  a: {overrides: ["optim.lr=1e-3"], seeds: [0, 1]}
  b: ["optim.lr=2e-3"]
""")
    argv = [str(BASE), "--overlay", str(TINY), "--grid", str(grid), "--sweep-dir", str(tmp_path / "sw")]
    assert [p.name for p in sweep.plan(sweep.parse_args(argv)).points] == ["a_seed-0", "a_seed-1", "b_seed-5"]
    assert [p.name for p in sweep.plan(sweep.parse_args([*argv, "--seeds", "3"])).points] == ["a_seed-3", "b_seed-3"]
    with pytest.raises(sweep.ConfigError, match="variants.c.seeds"):
        sweep.load_grid(_grid(tmp_path, "variants: {c: {overrides: [], seeds: []}}\n"))


def test_only_selects_variants_and_names_a_typo(tmp_path: Path) -> None:
    argv = [str(BASE), "--grid", str(_paper_grid(tmp_path)), "--sweep-dir", str(tmp_path / "sw"), "trainer.max_steps=800"]
    plan = sweep.plan(sweep.parse_args([*argv, "--only", "baseline,full"]))
    assert [p.name for p in plan.points] == [f"{v}_trainer.max_steps-800_seed-{s}" for v in ("baseline", "full")
                                             for s in (0, 1, 2)]
    assert all(r.trainer.max_steps == 800 for r in plan.recipes.values())
    assert plan.baseline == "baseline_trainer.max_steps-800"  # the grid's baseline variant, with the axis
    with pytest.raises(sweep.ConfigError, match="did you mean 'positional'"):
        sweep.plan(sweep.parse_args([*argv, "--only", "positionl"]))


def test_an_eval_only_variant_evaluates_the_shared_checkpoint(tmp_path: Path) -> None:
    grid = _grid(tmp_path, """
baseline: a
variants:
  a: ["optim.lr=1e-3"]
  a_sel: ["optim.lr=1e-3", "eval.strategy={name: self_selection, num_drafts: 4}", "eval.dtype=float32",
          "eval.speedup=false"]
  b: ["optim.lr=2e-3"]
""")
    argv = [str(BASE), "--overlay", str(TINY), "--grid", str(grid), "--sweep-dir", str(tmp_path / "sw")]
    plan = sweep.plan(sweep.parse_args(argv))
    assert plan.trained_by == {"a_sel": "a"}
    runner = FakeRunner()
    assert sweep.run_sweep(plan, with_eval=True, runner=runner, log=lambda s: None) == []
    kinds = [(a[3], next((x for x in a if x.startswith("run.name=")), a[4])) for a in runner.calls]
    a_dir, sel_dir = str(tmp_path / "sw" / "a"), tmp_path / "sw" / "a_sel"
    assert [k for k, _ in kinds] == ["train", "eval", "train", "eval", "eval"]  # the shared point goes last
    sel = runner.calls[-1]
    assert sel[4] == a_dir and sel[sel.index("--out") + 1] == str(sel_dir / "eval")
    assert sel[sel.index("--strategy") + 1] == "self_selection" and "num_drafts=4" in sel
    assert sel[sel.index("--dtype") + 1] == "float32" and "--no-baseline" in sel
    assert not (sel_dir / "checkpoints").exists() and not (sel_dir / "summary.json").exists()
    rows = {r["point"]: r for r in sweep.aggregate(plan)}
    assert rows["a_sel"]["tau_sim_after"][0] == 1.2  # a's training summary
    assert sweep.run_sweep(plan, with_eval=True, runner=_never, log=lambda s: None) == []  # all done


@pytest.mark.slow
def test_a_real_sweep_is_interrupted_and_resumed(tmp_path: Path) -> None:
    """Two real points on the tiny target: stop after the first, re-run, the first is not trained again."""
    argv = [str(BASE), "--overlay", str(TINY), "optim.lr=1e-3,3e-3", "--sweep-dir", str(tmp_path / "sw"),
            "--no-eval"]
    first, second = tmp_path / "sw" / "optim.lr-1e-3", tmp_path / "sw" / "optim.lr-3e-3"
    assert sweep.main([*argv, "--max-points", "1"]) == 0
    assert (first / "summary.json").is_file() and not second.exists()
    log = (first / "train.log").read_text()
    assert sweep.main(argv) == 0
    assert (first / "train.log").read_text() == log  # not run again
    assert len(json.loads((first / "timing.json").read_text())["train_attempts"]) == 1
    summary = json.loads((second / "summary.json").read_text())
    assert summary["steps"] == 2 and summary["run"] == "optim.lr-3e-3"
    md = (tmp_path / "sw" / "results.md").read_text()
    assert "`optim.lr-1e-3`" in md and "`optim.lr-3e-3`" in md and "| 1/1 |" in md


class ScoringRunner(FakeRunner):
    """A FakeRunner whose τ_sim after training is a made-up function of the point's loss.0.gamma override."""

    def __call__(self, argv: list[str], log: Path, env: dict[str, str]) -> int:
        rc = super().__call__(argv, log, env)
        if "train" in argv:
            gamma = float(next(a.split("=", 1)[1] for a in argv if a.startswith("loss.0.gamma=")))
            out = Path(json.loads(next(a.split("=", 1)[1] for a in argv if a.startswith("run.output_dir="))))
            (out / "summary.json").write_text(json.dumps({"tau_sim_before": 1.0,
                                                          "tau_sim_after": 2.0 - abs(gamma - 10) / 20}))
        return rc


def test_optuna_search_runs_trials_resumes_its_study_and_writes_the_results(tmp_path: Path, capsys) -> None:
    pytest.importorskip("optuna")
    grid = _grid(tmp_path, "name: s\nsearch:\n  params:\n    loss.0.gamma: {low: 3, high: 20, log: true}\n"
                           "    loss.1.weight: {low: 0.0, high: 1.0}\n")
    full = ROOT / "recipes" / "block_diffusion" / "smollm2_full.yaml"
    argv = [str(full), "--overlay", str(TINY), "--grid", str(grid), "--sweep-dir", str(tmp_path / "sw"), "--no-eval",
            "--search", "optuna"]
    runner = ScoringRunner()
    assert sweep.main([*argv, "--trials", "3"], runner=runner) == 0
    assert len(runner.calls) == 3 and (tmp_path / "sw" / "study.db").is_file()
    assert sweep.main([*argv, "--trials", "5"], runner=runner) == 0  # the same study: 2 more trials, not 5
    assert len(runner.calls) == 5
    md = (tmp_path / "sw" / "results.md").read_text()
    assert md.count("| `trial-") == 5
    imp = (tmp_path / "sw" / "importance.md").read_text()
    assert "5 complete trials" in imp and "| `loss.0.gamma` |" in imp
    assert (tmp_path / "sw" / "search.png").is_file()
    # a range naming a key the recipe does not have fails before any trial
    bad = _grid(tmp_path, "search:\n  params:\n    loss.0.gama: {low: 3, high: 20}\n")
    assert sweep.main([str(full), "--overlay", str(TINY), "--grid", str(bad), "--sweep-dir", str(tmp_path / "b"),
                       "--search", "optuna", "--trials", "2", "--no-eval"], runner=_never) == 2
    assert "loss.0.gama" in capsys.readouterr().err
