"""`specframe list`: every kind of component, decode strategies apart from training alignments."""
from __future__ import annotations

from specframe.cli import main
from specframe.cli.train import KINDS, component_registries


def test_every_kind_has_one_registry() -> None:
    assert list(component_registries()) == list(KINDS)
    assert set(KINDS) == {"drafters", "targets", "losses", "alignments", "strategies", "benchmarks"}


def test_list_shows_strategies_and_benchmarks_in_their_own_sections(capsys) -> None:
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    sections: dict[str, list[str]] = {}
    for line in out.splitlines():
        if not line.startswith(" "):
            current = sections.setdefault(line.rstrip(":"), [])
        else:
            current.append(line.split()[0])
    assert list(sections) == list(KINDS)
    assert {"single", "self_selection"} <= set(sections["strategies"])
    assert not {"single", "self_selection"} & set(sections["alignments"])
    assert {"mt_bench", "humaneval", "gsm8k"} <= set(sections["benchmarks"])
    assert main(["list", "strategies"]) == 0
    assert capsys.readouterr().out.splitlines()[0] == "strategies:"
