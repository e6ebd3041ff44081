"""The registry contract tests run on a plugin file given by path, from outside the repository.

This is the command docs/extending.md gives a plugin author:

    python3 -m pytest -q <repo>/tests/unit/losses/test_loss_contract.py --specframe-plugin my_term.py -k my_term

It runs in a subprocess from a folder outside the repository, as the author would run it.
"""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[3]
CONTRACT = REPO_ROOT / "tests" / "unit" / "losses" / "test_loss_contract.py"

GOOD = textwrap.dedent('''
    from dataclasses import dataclass
    from typing import ClassVar

    from specframe.interfaces import LossValue, SlotChunk
    from specframe.losses import LOSS_TERMS


    @dataclass(kw_only=True)
    class Cfg:
        slot: int = 1
        """Which slot k >= 1 to supervise."""


    @LOSS_TERMS.register("outside_good_term", config=Cfg)
    class GoodTerm:
        """CE on one slot of every block."""

        requires: ClassVar[frozenset[str]] = frozenset()

        def __init__(self, cfg: Cfg):
            self.cfg = cfg

        def __call__(self, chunk: SlotChunk) -> LossValue:
            j = self.cfg.slot - 1
            m = (chunk.mask & (chunk.labels >= 0) & chunk.block_valid.unsqueeze(-1))[:, j]
            return LossValue((-chunk.label_logp[:, j]).masked_fill(~m, 0.0).sum(), m.sum().float())
    ''')

# Two classic mistakes: padding blocks are not masked, and the denominator carries a gradient.
BAD = textwrap.dedent('''
    from typing import ClassVar

    from specframe.interfaces import LossValue, SlotChunk
    from specframe.losses import LOSS_TERMS


    @LOSS_TERMS.register("outside_bad_term")
    class BadTerm:
        """Mean log-probability mass with two mistakes."""

        requires: ClassVar[frozenset[str]] = frozenset()

        def __call__(self, chunk: SlotChunk) -> LossValue:
            per_slot = -chunk.log_probs.mean(-1)
            return LossValue(per_slot.sum(), per_slot.detach().numel() + 0 * per_slot.sum())
    ''')


def run_pytest(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO_ROOT), os.environ.get("PYTHONPATH", "")]))
    return subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-rA", *args],
                          cwd=cwd, env=env, capture_output=True, text=True, timeout=600)


def test_contract_tests_run_on_plugin_files_outside_the_repository(tmp_path: Path) -> None:
    folder = tmp_path / "myplug"
    folder.mkdir()
    (folder / "good_term.py").write_text(GOOD)
    (folder / "bad_term.py").write_text(BAD)
    done = run_pytest(folder, str(CONTRACT), "--specframe-plugin", "good_term.py",
                      "--specframe-plugin", str(folder / "bad_term.py"), "-k", "outside_")
    out = done.stdout + done.stderr
    assert done.returncode == 1, out  # some tests failed (the bad term's), none errored at collection
    # node ids are relative to the current folder: compare what follows "test_loss_contract.py::"
    outcomes = {line.split("test_loss_contract.py::", 1)[1].split(" ")[0]: line.split(" ", 1)[0]
                for line in out.splitlines() if line.startswith(("PASSED ", "FAILED ", "ERROR "))}
    assert outcomes == {
        "test_entry_metadata[outside_good_term]": "PASSED",
        "test_builds_from_defaults_and_gives_a_finite_differentiable_value[outside_good_term]": "PASSED",
        "test_a_chunk_with_nothing_to_supervise_gives_zero[no_supervised_slot-outside_good_term]": "PASSED",
        "test_a_chunk_with_nothing_to_supervise_gives_zero[padding_only-outside_good_term]": "PASSED",
        "test_additive_over_chunks[outside_good_term]": "PASSED",
        "test_entry_metadata[outside_bad_term]": "PASSED",
        "test_builds_from_defaults_and_gives_a_finite_differentiable_value[outside_bad_term]": "FAILED",
        "test_a_chunk_with_nothing_to_supervise_gives_zero[no_supervised_slot-outside_bad_term]": "FAILED",
        "test_a_chunk_with_nothing_to_supervise_gives_zero[padding_only-outside_bad_term]": "FAILED",
        "test_additive_over_chunks[outside_bad_term]": "PASSED",
    }, out
    assert "assert not v.denominator.requires_grad" in out  # the failure says which rule was broken


def test_a_plugin_that_fails_to_import_stops_the_run_with_its_traceback(tmp_path: Path) -> None:
    (tmp_path / "broken_term.py").write_text("import no_such_module_for_specframe_xyz\n")
    done = run_pytest(tmp_path, str(CONTRACT), "--specframe-plugin", "broken_term.py")
    assert done.returncode == 4, done.stdout + done.stderr  # pytest's usage error, before any test runs
    assert "--specframe-plugin: plugin 'broken_term.py' failed to import" in done.stderr
    assert "ModuleNotFoundError: No module named 'no_such_module_for_specframe_xyz'" in done.stderr
    assert 'broken_term.py", line 1' in done.stderr  # the original traceback
