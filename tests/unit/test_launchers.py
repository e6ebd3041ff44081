"""specframe/launchers.py: settings, a point's job, submitit's local executor, and the Slurm path against fake
sbatch/sacct commands (no Slurm here): one array per wave, a job record per point, no second job for a running point."""
from __future__ import annotations

import argparse
import json
import os
import stat
import sys
import time
from pathlib import Path

import pytest

from specframe.errors import ConfigError
from specframe.launchers import (PointJob, Step, SubmititLauncher, SubmititSettings, add_arguments, is_active,
                                 read_record, settings)

pytest.importorskip("submitit")


def _write_file_cmd(path: Path, text: str = "{}", sleep_until: Path | None = None) -> list[str]:
    wait = f"import time, pathlib\nwhile not pathlib.Path({str(sleep_until)!r}).exists(): time.sleep(0.1)\n" \
        if sleep_until else ""
    write = f"import pathlib; p = pathlib.Path({str(path)!r}); p.parent.mkdir(parents=True, exist_ok=True); " \
        f"p.write_text({text!r})"
    return [sys.executable, "-c", wait + write]


def _job(tmp: Path, name: str, release: Path | None = None, fail: bool = False) -> PointJob:
    out = tmp / name
    train = [sys.executable, "-c", "raise SystemExit(3)"] if fail else \
        _write_file_cmd(out / "summary.json", sleep_until=release)
    return PointJob(name=name, output_dir=out, steps=[
        Step(kind="train", argv=train, log=out / "train.log", done_marker=out / "summary.json"),
        Step(kind="eval", argv=_write_file_cmd(out / "eval" / "x.json"), log=out / "eval.log")])


def _args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser()
    add_arguments(p)
    return p.parse_args(argv)


def test_settings_merge_grid_section_and_flags_and_report_every_problem() -> None:
    s = settings({"partition": "a100", "time_min": 120, "sbatch": {"account": "x"}},
                 _args(["--partition", "h100", "--gpus-per-point", "8", "--sbatch", "qos=high", "--no-wait"]))
    assert (s.partition, s.time_min, s.gpus_per_point, s.wait) == ("h100", 120, 8, False)
    p = s.parameters()
    assert p["slurm_partition"] == "h100" and p["gpus_per_node"] == 8 and p["timeout_min"] == 120
    assert p["slurm_additional_parameters"] == {"account": "x", "qos": "high"}
    with pytest.raises(ConfigError) as e:
        settings({"partiton": "x", "time_min": 0, "cluster": "slrum"})
    text = str(e.value)
    assert "partiton" in text and "did you mean 'partition'" in text.lower() or "partition" in text
    assert "time_min" in text and "slrum" in text and "'slurm'" in text


def test_point_job_runs_steps_in_order_skips_finished_ones_and_records_time(tmp_path: Path) -> None:
    job = _job(tmp_path, "p")
    assert job() is True
    out = tmp_path / "p"
    assert (out / "summary.json").is_file() and (out / "eval" / "x.json").is_file()
    timing = json.loads((out / "timing.json").read_text())
    assert len(timing["train_attempts"]) == 1 and len(timing["eval_attempts"]) == 1
    assert timing["train_wall_s"] == pytest.approx(timing["train_attempts"][0]["seconds"])
    assert job() is True  # the requeued job: train is done, only eval runs again
    timing = json.loads((out / "timing.json").read_text())
    assert len(timing["train_attempts"]) == 1 and len(timing["eval_attempts"]) == 2
    bad = _job(tmp_path, "q", fail=True)
    assert bad() is False
    assert not (tmp_path / "q" / "eval.log").exists()  # eval never runs after a failed train
    assert json.loads((tmp_path / "q" / "timing.json").read_text())["train_attempts"][0]["returncode"] == 3


def test_local_executor_runs_each_point_as_a_job_and_never_submits_a_running_one_twice(tmp_path: Path) -> None:
    release = tmp_path / "release"
    done = lambda name: (tmp_path / name / "summary.json").is_file()  # noqa: E731
    s = SubmititSettings(cluster="local", time_min=5, wait=False)
    launcher = SubmititLauncher(s, folder=tmp_path / ".submitit", is_done=done)
    logs: list[str] = []
    launcher.launch([[_job(tmp_path, "a", release), _job(tmp_path, "b")]], logs.append)
    rec_a = read_record(tmp_path / "a")
    assert rec_a and rec_a["cluster"] == "local" and is_active(rec_a)
    # a second launcher (a re-run of the sweep command) while 'a' still runs: 'a' is left alone
    logs2: list[str] = []
    launcher2 = SubmititLauncher(SubmititSettings(cluster="local", time_min=5, poll_s=0.2), folder=tmp_path / ".submitit",
                                 is_done=done)
    release_later = __import__("threading").Timer(1.0, release.write_text, args=("go",))
    release_later.start()
    failed = launcher2.launch([[_job(tmp_path, "a", release), _job(tmp_path, "b")]], logs2.append)
    assert any(line.startswith("a: job") and "not resubmitted" in line for line in logs2), logs2
    assert read_record(tmp_path / "a")["job_id"] == rec_a["job_id"]
    assert failed == [] and done("a") and done("b")
    assert not is_active(read_record(tmp_path / "a"))


def test_debug_executor_reports_a_failed_point(tmp_path: Path) -> None:
    done = lambda name: (tmp_path / name / "summary.json").is_file()  # noqa: E731
    launcher = SubmititLauncher(SubmititSettings(cluster="debug"), folder=tmp_path / ".submitit", is_done=done)
    logs: list[str] = []
    assert launcher.launch([[_job(tmp_path, "ok")], [_job(tmp_path, "bad", fail=True)]], logs.append) == ["bad"]
    assert done("ok")


def _fake_slurm(bin_dir: Path, state: str) -> Path:
    """sbatch that records its script and answers like Slurm; sacct that reports `state` for every job."""
    bin_dir.mkdir()
    record = bin_dir / "sbatch_calls"
    scripts = {
        "srun": "#!/bin/sh\nexit 0\n",
        "sbatch": f"#!/bin/sh\nfor a in \"$@\"; do f=$a; done\ncat \"$f\" >> {record}\necho 'Submitted batch job 4242'\n",
        "sacct": "#!/bin/sh\necho 'JobID|State|NodeList'\n"
                 f"for i in 0 1 2 3; do echo \"4242_$i|{state}|node1\"; done\n",
        "scancel": "#!/bin/sh\nexit 0\n",
    }
    for name, text in scripts.items():
        path = bin_dir / name
        path.write_text(text)
        path.chmod(path.stat().st_mode | stat.S_IEXEC)
    return record


def test_slurm_path_submits_one_array_and_leaves_running_jobs_alone(tmp_path: Path, monkeypatch) -> None:
    record = _fake_slurm(tmp_path / "bin", "RUNNING")
    monkeypatch.setenv("PATH", f"{tmp_path / 'bin'}{os.pathsep}{os.environ['PATH']}")
    s = settings({"partition": "gpu", "gpus_per_point": 8, "time_min": 720, "mem_gb": 400,
                  "sbatch": {"account": "proj"}, "wait": False})
    launcher = SubmititLauncher(s, folder=tmp_path / ".submitit")
    jobs = [_job(tmp_path, "p0"), _job(tmp_path, "p1")]
    logs: list[str] = []
    launcher.launch([jobs], logs.append)
    script = record.read_text()
    assert "#SBATCH --array=0-1%" in script and "#SBATCH --partition=gpu" in script
    assert "#SBATCH --gpus-per-node=8" in script and "#SBATCH --time=720" in script
    assert "#SBATCH --mem=400GB" in script and "#SBATCH --account=proj" in script
    assert [read_record(tmp_path / n)["job_id"] for n in ("p0", "p1")] == ["4242_0", "4242_1"]
    # re-running the sweep: sacct says RUNNING, so nothing is submitted again
    record.write_text("")
    logs2: list[str] = []
    launcher.launch([jobs], logs2.append)
    assert record.read_text() == "" and sum("not resubmitted" in line for line in logs2) == 2


def test_slurm_path_resubmits_a_point_whose_job_ended(tmp_path: Path, monkeypatch) -> None:
    record = _fake_slurm(tmp_path / "bin", "PREEMPTED")
    monkeypatch.setenv("PATH", f"{tmp_path / 'bin'}{os.pathsep}{os.environ['PATH']}")
    launcher = SubmititLauncher(settings({"wait": False}), folder=tmp_path / ".submitit")
    (tmp_path / "p0").mkdir()
    (tmp_path / "p0" / "job.json").write_text(json.dumps({"job_id": "4242_0", "cluster": "slurm",
                                                           "folder": str(tmp_path / ".submitit"),
                                                           "submitted_at": time.time() - 3600}))
    launcher.launch([[_job(tmp_path, "p0")]], lambda s: None)
    assert "submitit.core._submit" in record.read_text()  # sbatch was called again (one job: no array)
    assert read_record(tmp_path / "p0")["job_id"] == "4242"
