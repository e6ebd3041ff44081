"""specframe/search.py: the `search:` section, a study in SQLite / a journal file, resuming a killed trial with
the same values (and so the same run folder), the importance table and plot."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from specframe.errors import ConfigError
from specframe.search import (open_study, optimize, overrides_of, parse_space, point_name, reclaim_abandoned,
                              report)

optuna = pytest.importorskip("optuna")
SPACE = {"params": {"loss.0.gamma": {"low": 3, "high": 20, "log": True}, "loss.1.weight": {"low": 0.0, "high": 1.0},
                    "drafter.num_layers": {"choices": [1, 2]}}}


def _score(name: str, overrides: list[str]) -> float:
    """A smooth made-up objective of the values (peak at gamma 10, weight 0.3, 2 layers)."""
    v = dict(o.split("=", 1) for o in overrides)
    return 2.0 - abs(float(v["loss.0.gamma"]) - 10) / 10 - abs(float(v["loss.1.weight"]) - 0.3) \
        + 0.1 * int(v["drafter.num_layers"])


def test_parse_space_reads_ranges_and_reports_every_problem() -> None:
    space = parse_space(SPACE)
    assert [p.key for p in space.params] == ["loss.0.gamma", "loss.1.weight", "drafter.num_layers"]
    assert space.params[0].log and space.params[2].choices == (1, 2) and space.objective == "tau_sim"
    assert parse_space({"params": {"data.num_anchors": {"low": 8, "high": 32, "step": 8}}}).params[0].integer
    with pytest.raises(ConfigError) as e:
        parse_space({"objectve": "tau_sim", "params": {"a": {"low": 0, "high": 1, "log": True},
                                                        "b": {"low": 2, "high": 1}, "c": {"hig": 1}}},
                    objective="tau_rea")
    text = str(e.value)
    for needle in ("objectve", "tau_rea", "'tau_real'", "a: a log range needs low > 0", "b: expected numbers",
                   "unknown key 'hig'"):
        assert needle in text, (needle, text)
    with pytest.raises(ConfigError, match="search.params"):
        parse_space({})


def test_point_name_depends_only_on_the_values() -> None:
    a = point_name({"x": 1.5, "y": 2})
    assert a == point_name({"y": 2, "x": 1.5}) and a != point_name({"x": 1.5, "y": 3}) and a.startswith("trial-")
    assert overrides_of({"loss.0.gamma": 7.5, "run.name": "a b"}) == ["loss.0.gamma=7.5", 'run.name="a b"']


def test_study_in_sqlite_runs_to_the_target_count_and_a_new_session_continues_it(tmp_path: Path) -> None:
    space = parse_space(SPACE)
    seen: list[str] = []

    def evaluate(name: str, overrides: list[str]) -> float:
        seen.append(name)
        return _score(name, overrides)

    db = tmp_path / "study.db"
    study = open_study(name="s", storage=None, journal=None, default_db=db, heartbeat=60, seed=0)
    optimize(study, space, 5, evaluate, log=lambda s: None)
    assert db.is_file() and len(seen) == 5
    # a new launcher (another process, a later day) opens the same study: 5 are done, it runs 3 more
    again = open_study(name="s", storage=f"sqlite:///{db}", journal=None, default_db=db, heartbeat=60, seed=1)
    optimize(again, space, 8, evaluate, log=lambda s: None)
    assert len(seen) == 8 and len(again.trials) == 8
    text = report(again, space, tmp_path)
    assert "| `loss.0.gamma` |" in text and "| `loss.1.weight` |" in text and "8 complete trials" in text
    assert (tmp_path / "search.png").stat().st_size > 1000
    assert len((tmp_path / "trials.csv").read_text().splitlines()) == 9
    best = max(_score("", overrides_of(t.params)) for t in again.trials)
    assert again.best_value == pytest.approx(best)


def test_a_trial_killed_with_its_launcher_is_run_again_with_the_same_values(tmp_path: Path) -> None:
    space = parse_space(SPACE)
    db = tmp_path / "study.db"
    study = open_study(name="s", storage=None, journal=None, default_db=db, heartbeat=60, seed=0)
    # a launcher that dies in the middle of a trial: a RUNNING trial owned by a process that no longer exists
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    with pytest.warns(UserWarning, match="Heartbeat"):  # Optuna: heartbeats are meant for optimize(); fine here
        trial = study.ask()
    values = {p.key: p.suggest(trial) for p in space.params}
    import socket

    trial.set_user_attr("launcher", f"{socket.gethostname()}:{dead.pid}")
    trial.set_user_attr("point", point_name(values))
    names: list[str] = []
    optimize(study, space, 1, lambda n, o: names.append(n) or _score(n, o), log=lambda s: None)
    assert names == [point_name(values)]  # same values, same folder: its last.ckpt would be resumed
    states = [t.state.name for t in study.trials]
    assert states == ["FAIL", "COMPLETE"] and study.trials[1].user_attrs["retry_of"] == 0
    assert reclaim_abandoned(study, lambda s: None) == 0


def test_journal_storage_and_failed_trials(tmp_path: Path) -> None:
    space = parse_space(SPACE)
    journal = tmp_path / "shared" / "study.journal"
    study = open_study(name="j", storage=None, journal=str(journal), default_db=tmp_path / "x.db", heartbeat=60, seed=0)
    calls = iter([None, 1.5, 1.6])
    optimize(study, space, 2, lambda n, o: next(calls), log=lambda s: None)
    assert journal.is_file() and [t.state.name for t in study.trials] == ["FAIL", "COMPLETE", "COMPLETE"]
    with pytest.raises(ConfigError, match="choose one"):
        open_study(name="j", storage="sqlite:///x.db", journal=str(journal), default_db=tmp_path, heartbeat=60,
                   seed=0)
    with pytest.raises(ConfigError, match="cannot open the study database"):
        open_study(name="j", storage="nosuchdb://host/x", journal=None, default_db=tmp_path, heartbeat=60, seed=0)
