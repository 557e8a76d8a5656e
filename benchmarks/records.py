"""Benchmark records: what a benchmark measured, as one JSON file per benchmark.

A benchmark script ends with::

    from records import record   # benchmarks/ is on sys.path when a script there runs
    record("tdse_step", title="TDSE split-operator step", figures={"step": (9.54, "ms"), "step_over_ffts": 1.24})

which writes ``benchmarks/records/tdse_step.json``: the LATEST run of that benchmark only.  Older
runs are in git (``git log -p benchmarks/records/``), not in the file.  ``benchmarks/render.py``
writes BENCHMARKS.md from the records.

The record (schema ``bench-record/1``), keys in this order::

    schema   "bench-record/1"
    name     the file's stem: lower-case letters, digits, "_" and "-", at most 64 characters
    title    a human title for the page (default: the name)
    script   the script that measured it, relative to the repository ("benchmarks/bench_tdse.py")
    date     when the run ended, ISO 8601 in UTC to the second: "2026-11-30T00:10:00Z" (records
             converted from the hand-written page whose time was not noted: "2026-11-21")
    machine  {"cpu": cpu_model() of machine.py, "cores": logical cores, "memory_gib": total RAM,
              "gpu": torch's name of CUDA device 0 or null, "python", "numpy", "torch": versions
              (null when not installed)} and any extra keys a caller adds ("description", ...)
    load     {"start": [1, 5, 15 min] os.getloadavg() when this module was imported (the run's
              start) or as given, "end": the same when record() was called}; "note" optional
    command  the command line: "python " + sys.argv (the script's path relative to the
             repository), prefixed by the thread / kernel environment variables that were set
             (OMP_NUM_THREADS=1 ...); or as given
    figures  {name: {"value": number, "unit": str}} in the order given: every number a finite
             int or float; unit "" for a plain number or ratio; an optional "note" (str) per figure
    tables   optional: [{"title": str (optional), "columns": [str, ...], "rows": [[cell, ...], ...]}],
             cells str (markdown), finite number or null; every row as long as the columns
    notes    optional markdown: what the numbers mean (kept by the next record() of the same name
             that gives none; "notes_date" is the date of the run the notes were written for)

``figures`` may be given as ``{name: number}``, ``{name: (number, unit)}`` or ``{name: {"value":
number, "unit": unit, "note": text}}``; it is stored in the last form, floats rounded to 6
significant digits.  A figure that is NaN or infinite, a non-number, or a bad record name is
refused with ValueError before anything is written.  The file is written whole (a temporary file
beside it, then os.replace), one line per figure and per table row.

Where records go: ``directory`` if given, else ``$FACTORY_BENCH_RECORDS`` if set (smoke runs, a
lent machine whose $OUT comes back), else ``benchmarks/records/`` beside this module.
"""

from __future__ import annotations

import datetime
import json
import math
import os
import platform
import re
import shlex
import sys
import tempfile
from pathlib import Path
from typing import Any

SCHEMA = "bench-record/1"
HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
RECORDS = HERE / "records"
KEYS = ("schema", "name", "title", "script", "date", "machine", "load", "command", "figures", "tables", "notes",
        "notes_date")
REQUIRED = ("schema", "name", "date", "machine", "load", "command", "figures")
NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")
#: environment variables that change what a benchmark measures; written before the command
ENV_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "FACTORY_KERNELS", "FACTORY_FFT_THREADS",
            "FACTORY_FFTW_PLANNER", "CUDA_VISIBLE_DEVICES")


def _loadavg() -> list[float] | None:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except (OSError, AttributeError):
        return None


#: the load average and environment when the script imported this module (its start)
LOAD_AT_START = _loadavg()
ENV_AT_START = {k: os.environ[k] for k in ENV_VARS if k in os.environ}


def _rel(path: str) -> str:
    """``path`` relative to the repository when it is a file inside it, else as given."""
    p = Path(path).resolve()
    if not p.is_file():
        return path
    try:
        return p.relative_to(ROOT).as_posix()
    except ValueError:
        return path


def default_command() -> str:
    """``python <script> <args>`` as run (the script relative to the repository), with ENV_VARS set."""
    argv = [_rel(sys.argv[0])] + sys.argv[1:] if sys.argv and sys.argv[0] else sys.argv[1:]
    env = [f"{k}={shlex.quote(v)}" for k, v in ENV_AT_START.items()]
    return " ".join(env + ["python", shlex.join(argv)])


def _memory_gib() -> float | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return round(int(line.split()[1]) / 2**20, 1)
    except (OSError, ValueError, IndexError):
        pass
    try:
        return round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1)
    except (OSError, ValueError, AttributeError):
        return None


def _version(module: str) -> str | None:
    mod = sys.modules.get(module)
    if mod is not None and getattr(mod, "__version__", None):
        return str(mod.__version__)
    from importlib import metadata

    try:
        return metadata.version(module)
    except metadata.PackageNotFoundError:
        return None


def machine_info() -> dict[str, Any]:
    """CPU model, logical cores, memory, GPU (torch, device 0) and the versions of python, numpy, torch."""
    sys.path.insert(0, str(HERE))
    try:
        from machine import cpu_model
    finally:
        sys.path.remove(str(HERE))
    gpu = None
    try:
        import torch  # a benchmark that used a GPU has imported it already

        if torch.cuda.is_available():
            gpu = torch.cuda.get_device_name(0)
    except Exception:  # noqa: BLE001 - no torch, or a broken CUDA: no GPU to name
        gpu = None
    return {"cpu": cpu_model(), "cores": os.cpu_count(), "memory_gib": _memory_gib(), "gpu": gpu,
            "python": platform.python_version(), "numpy": _version("numpy"), "torch": _version("torch")}


def _number(v: Any, where: str) -> int | float:
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        try:  # numpy scalars
            import numpy as np

            if isinstance(v, (np.integer, np.floating)) and not isinstance(v, np.bool_):
                v = v.item()
            else:
                raise TypeError
        except (ImportError, TypeError):
            raise ValueError(f"{where}: {v!r} is not a number") from None
    if not math.isfinite(v):
        raise ValueError(f"{where}: {v!r} is not finite")
    return float(f"{v:.6g}") if isinstance(v, float) else v  # 6 significant digits: far below any timing's noise


def check_figures(figures: dict) -> dict[str, dict[str, Any]]:
    """``figures`` in the stored form {name: {"value", "unit"[, "note"]}}; ValueError if not valid."""
    if not isinstance(figures, dict) or not figures:
        raise ValueError("figures: a non-empty dict of named numbers is required")
    out: dict[str, dict[str, Any]] = {}
    for name, f in figures.items():
        if not isinstance(name, str) or not name.strip():
            raise ValueError(f"figure name {name!r}: a non-empty string is required")
        note = None
        if isinstance(f, dict):
            if set(f) - {"value", "unit", "note"} or "value" not in f:
                raise ValueError(f"figure {name!r}: a dict needs 'value' and may have 'unit' and 'note' only")
            value, unit, note = f["value"], f.get("unit", ""), f.get("note")
        elif isinstance(f, (tuple, list)):
            if len(f) != 2:
                raise ValueError(f"figure {name!r}: give (value, unit)")
            value, unit = f
        else:
            value, unit = f, ""
        if not isinstance(unit, str):
            raise ValueError(f"figure {name!r}: unit {unit!r} is not a string")
        rec: dict[str, Any] = {"value": _number(value, f"figure {name!r}"), "unit": unit}
        if note is not None:
            if not isinstance(note, str):
                raise ValueError(f"figure {name!r}: note is not a string")
            rec["note"] = note
        out[name] = rec
    return out


def check_tables(table: Any) -> list[dict[str, Any]]:
    """One table {"columns", "rows"[, "title"]} or a list of them, as a list; ValueError if not valid."""
    tables = [table] if isinstance(table, dict) else list(table)
    out = []
    for i, t in enumerate(tables):
        if not isinstance(t, dict) or set(t) - {"title", "columns", "rows"} or not {"columns", "rows"} <= set(t):
            raise ValueError(f"table {i}: a dict with 'columns' and 'rows' (and an optional 'title') is required")
        cols = list(t["columns"])
        if not cols or not all(isinstance(c, str) for c in cols):
            raise ValueError(f"table {i}: columns must be non-empty strings")
        rows = []
        for j, row in enumerate(t["rows"]):
            row = list(row)
            if len(row) != len(cols):
                raise ValueError(f"table {i}, row {j}: {len(row)} cells for {len(cols)} columns")
            rows.append([c if c is None or isinstance(c, str) else _number(c, f"table {i}, row {j}") for c in row])
        rec: dict[str, Any] = {}
        if t.get("title"):
            rec["title"] = str(t["title"])
        rec.update(columns=cols, rows=rows)
        out.append(rec)
    return out


def check_name(name: str) -> str:
    if not isinstance(name, str) or not NAME.match(name):
        raise ValueError(f"record name {name!r}: lower-case letters, digits, '_' and '-' only (at most 64, "
                         "starting with a letter or digit)")
    return name


def check_date(date: Any) -> bool:
    """True for 'YYYY-MM-DDTHH:MM:SSZ' (UTC), or 'YYYY-MM-DD' where a converted record's time is not known."""
    for form in ("%Y-%m-%dT%H:%M:%SZ", "%Y-%m-%d"):
        try:
            datetime.datetime.strptime(date, form)
            return True
        except (TypeError, ValueError):
            pass
    return False


def utc_now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def record(name: str, *, command: str | None = None, figures: dict, notes: str | None = None,
           machine: dict | None = None, title: str | None = None, script: str | None = None,
           table: dict | list | None = None, load_start: list | float | None = None, date: str | None = None,
           directory: str | Path | None = None, quiet: bool = False) -> Path:
    """Write the record of benchmark ``name`` (see the module's docstring); returns its path.

    ``notes=None`` keeps the notes of the record it replaces (with their ``notes_date``);
    ``notes=""`` drops them.  ``load_start`` defaults to the load average when this module was
    imported; ``date`` to now (UTC); ``machine`` to :func:`machine_info`; ``command`` to
    :func:`default_command`; ``script`` to the running script.
    """
    check_name(name)
    figs = check_figures(figures)
    tables = check_tables(table) if table is not None else None
    if directory is None:
        directory = os.environ.get("FACTORY_BENCH_RECORDS") or RECORDS
    directory = Path(directory)
    path = directory / f"{name}.json"
    if isinstance(load_start, (int, float)):
        load_start = [load_start]
    date = date or utc_now()
    if not check_date(date):
        raise ValueError(f"date {date!r}: YYYY-MM-DDTHH:MM:SSZ (UTC) or YYYY-MM-DD")
    rec: dict[str, Any] = {
        "schema": SCHEMA, "name": name, "title": title or name,
        "script": script or (_rel(sys.argv[0]) if sys.argv and sys.argv[0] else None),
        "date": date, "machine": machine if machine is not None else machine_info(),
        "load": {"start": load_start if load_start is not None else LOAD_AT_START, "end": _loadavg()},
        "command": command or default_command(), "figures": figs,
    }
    if tables:
        rec["tables"] = tables
    if notes is None and path.exists():
        try:
            old = json.loads(path.read_text())
            if old.get("notes"):
                rec["notes"], rec["notes_date"] = old["notes"], old.get("notes_date") or old.get("date")
        except (OSError, ValueError):
            pass
    elif notes:
        rec["notes"], rec["notes_date"] = notes, date
    write(rec, path)
    if not quiet:
        print(f"record: {_rel(str(path))}", file=sys.stderr, flush=True)
    return path


def dumps(rec: dict) -> str:
    """The file's text: keys in the schema's order; one line per figure and per table row (so that
    ``git log -p`` shows a changed figure as a changed line), a final newline."""
    def one(v) -> str:
        return json.dumps(v, ensure_ascii=False, allow_nan=False)

    ordered = {k: rec[k] for k in KEYS if k in rec}
    ordered.update({k: v for k, v in rec.items() if k not in ordered})
    lines = []
    for key, value in ordered.items():
        if key == "figures":
            inner = [f'  {one(name)}: {one(f)}' for name, f in value.items()]
            text = "{\n" + ",\n".join(inner) + "\n }"
        elif key == "tables":
            tables = []
            for t in value:
                head = ", ".join(f"{one(k)}: {one(v)}" for k, v in t.items() if k != "rows")
                rows = ",\n".join(f"   {one(r)}" for r in t["rows"])
                tables.append("  {" + head + ', "rows": [\n' + rows + "\n  ]}")
            text = "[\n" + ",\n".join(tables) + "\n ]"
        else:
            text = one(value)
        lines.append(f" {one(key)}: {text}")
    return "{\n" + ",\n".join(lines) + "\n}\n"


def write(rec: dict, path: Path) -> None:
    """Write ``rec`` to ``path`` whole: a temporary file beside it, then os.replace."""
    text = dumps(rec)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def validate(rec: Any) -> list[str]:
    """What is wrong with a loaded record (empty list: nothing)."""
    if not isinstance(rec, dict):
        return ["not a JSON object"]
    bad = [f"missing key {k!r}" for k in REQUIRED if k not in rec]
    if bad:
        return bad
    if rec["schema"] != SCHEMA:
        bad.append(f"schema {rec['schema']!r} is not {SCHEMA!r}")
    try:
        check_name(rec["name"])
    except ValueError as exc:
        bad.append(str(exc))
    try:
        if check_figures(rec["figures"]) != rec["figures"]:
            bad.append("figures are not in the stored form {name: {'value': number, 'unit': str}}")
    except ValueError as exc:
        bad.append(str(exc))
    if "tables" in rec:
        try:
            check_tables(rec["tables"])
        except ValueError as exc:
            bad.append(str(exc))
    if not check_date(rec["date"]):
        bad.append(f"date {rec['date']!r} is not YYYY-MM-DDTHH:MM:SSZ (UTC) or YYYY-MM-DD")
    if not isinstance(rec["machine"], dict) or "cpu" not in rec["machine"]:
        bad.append("machine: a dict with at least 'cpu' is required")
    if not isinstance(rec["load"], dict) or not {"start", "end"} <= set(rec["load"]):
        bad.append("load: a dict with 'start' and 'end' is required")
    if not isinstance(rec["command"], str) or not rec["command"]:
        bad.append("command: a non-empty string is required")
    return bad


def load_all(directory: str | Path = RECORDS) -> list[dict]:
    """Every record in ``directory`` (``*.json``), by name; ValueError naming a file that is not valid."""
    out = []
    for p in sorted(Path(directory).glob("*.json")):
        try:
            rec = json.loads(p.read_text(encoding="utf-8"))
        except ValueError as exc:
            raise ValueError(f"{p}: not JSON: {exc}") from None
        bad = validate(rec)
        if not bad and rec["name"] != p.stem:
            bad = [f"name {rec['name']!r} is not the file's stem"]
        if bad:
            raise ValueError(f"{p}: " + "; ".join(bad))
        out.append(rec)
    return out
