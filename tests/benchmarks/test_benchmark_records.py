"""Benchmark records (benchmarks/records.py) and the page rendered from them (benchmarks/render.py):
fast, no Ray, no benchmark run."""

from __future__ import annotations

import json
import math
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "benchmarks"))

import records  # noqa: E402
import render  # noqa: E402

MACHINE = {"cpu": "test CPU", "cores": 2, "memory_gib": 1.0, "gpu": None, "python": "3", "numpy": "2", "torch": None}


def _demo(directory: Path, name: str = "demo", **kw) -> Path:
    args = dict(command="python benchmarks/demo.py --fast", machine=MACHINE, script="benchmarks/demo.py",
                figures={"plain": 1.5, "with_unit": (2, "ms"), "full": {"value": 3.25, "unit": "s", "note": "why"}},
                table={"title": "t", "columns": ["a", "b"], "rows": [["x", 1.0], ["y", None]]},
                notes="What it means.", directory=directory, quiet=True)
    args.update(kw)
    return records.record(name, **args)


def test_record_writes_a_valid_file(tmp_path):
    path = _demo(tmp_path)
    assert path == tmp_path / "demo.json"
    assert [p.name for p in tmp_path.iterdir()] == ["demo.json"]  # no temporary file left beside it
    rec = json.loads(path.read_text())
    for key in records.REQUIRED:
        assert key in rec, key
    assert records.validate(rec) == []
    assert rec["schema"] == records.SCHEMA and rec["name"] == "demo" and rec["script"] == "benchmarks/demo.py"
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", rec["date"])
    assert rec["machine"] == MACHINE and rec["command"] == "python benchmarks/demo.py --fast"
    assert set(rec["load"]) >= {"start", "end"}
    assert rec["figures"] == {"plain": {"value": 1.5, "unit": ""}, "with_unit": {"value": 2, "unit": "ms"},
                              "full": {"value": 3.25, "unit": "s", "note": "why"}}
    assert rec["tables"] == [{"title": "t", "columns": ["a", "b"], "rows": [["x", 1.0], ["y", None]]}]
    assert rec["notes"] == "What it means." and rec["notes_date"] == rec["date"]
    assert records.load_all(tmp_path) == [rec]


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf, "1.0", None, True, [1.0]])
def test_record_refuses_a_figure_that_is_not_a_finite_number(tmp_path, value):
    with pytest.raises(ValueError):
        _demo(tmp_path, figures={"ok": 1.0, "bad": value})
    with pytest.raises(ValueError):
        _demo(tmp_path, figures={"bad": (value, "ms")})
    assert not list(tmp_path.iterdir())  # nothing written


@pytest.mark.parametrize("name", ["", "../x", "a/b", "Upper", ".hidden", "-dash", "a b", "x.json", "x" * 65, None])
def test_record_refuses_a_bad_name(tmp_path, name):
    with pytest.raises(ValueError):
        _demo(tmp_path, name=name)
    assert not list(tmp_path.iterdir())


def test_record_refuses_bad_tables_and_empty_figures(tmp_path):
    with pytest.raises(ValueError):
        _demo(tmp_path, table={"columns": ["a", "b"], "rows": [["only one cell"]]})
    with pytest.raises(ValueError):
        _demo(tmp_path, table={"columns": ["a"], "rows": [[math.nan]]})
    with pytest.raises(ValueError):
        _demo(tmp_path, figures={})
    assert not list(tmp_path.iterdir())


def test_a_rerun_replaces_the_figures_and_keeps_the_notes(tmp_path):
    _demo(tmp_path, date="2026-01-01T00:00:00Z")
    _demo(tmp_path, figures={"plain": 9.0}, notes=None, table=None, date="2026-02-01T00:00:00Z")
    rec = json.loads((tmp_path / "demo.json").read_text())
    assert rec["figures"] == {"plain": {"value": 9.0, "unit": ""}} and "tables" not in rec
    assert rec["notes"] == "What it means." and rec["notes_date"] == "2026-01-01T00:00:00Z"
    assert "written for the run of 2026-01-01 00:00 UTC" in render.render([rec])
    _demo(tmp_path, notes="")
    assert "notes" not in json.loads((tmp_path / "demo.json").read_text())


def test_render_is_deterministic_and_ordered(tmp_path):
    for name in ("zeta", "engine", "alpha", "gpu_check"):
        _demo(tmp_path, name=name, notes=f"Notes of {name}.")
    text = render.render(records.load_all(tmp_path))
    assert text == render.render(list(reversed(records.load_all(tmp_path))))
    heads = [line for line in text.splitlines() if line.startswith("## ")]
    assert len(heads) == 4
    order = [text.index(f"Notes of {n}.") for n in ("gpu_check", "engine", "alpha", "zeta")]
    assert order == sorted(order)  # the listed ones in ORDER, then the others by name
    first = text.splitlines()[0]
    assert "benchmarks/records/*.json" in first and "benchmarks/render.py" in first and "not edit by hand" in first
    assert "git log -p benchmarks/records/" in text
    assert "| `with_unit` | 2 | ms | |" in text.replace("|  |", "| |")
    out = tmp_path / "PAGE.md"
    assert render.main(["--records", str(tmp_path), "--out", str(out)]) == 0
    assert out.read_text() == text
    assert render.main(["--records", str(tmp_path), "--out", str(out), "--check"]) == 0
    out.write_text(text + "edited by hand\n")
    assert render.main(["--records", str(tmp_path), "--out", str(out), "--check"]) == 1


def test_every_record_in_the_repository_is_valid():
    paths = sorted(records.RECORDS.glob("*.json"))
    assert len(paths) >= 12
    loaded = records.load_all(records.RECORDS)  # raises naming the file that is not valid
    for rec, path in zip(loaded, paths):
        assert rec["name"] == path.stem
        for key in records.REQUIRED:
            assert key in rec, (path.name, key)
        assert records.dumps(rec) == path.read_text(encoding="utf-8"), f"{path.name} is not in the written form"


def test_benchmarks_md_is_up_to_date_and_safe_for_the_docs():
    proc = subprocess.run([sys.executable, "benchmarks/render.py", "--check"], cwd=ROOT, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    text = (ROOT / "BENCHMARKS.md").read_text(encoding="utf-8")
    prose = re.sub(r"`+[^`]*`+", "", re.sub(r"```.*?```", "", text, flags=re.S))  # code left out
    assert not re.search(r"\]\((?!https?:)", prose), "a relative markdown link (mkdocs --strict)"
    assert not re.search(r"<[A-Za-z!/]", prose), "raw HTML"
