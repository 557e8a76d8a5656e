"""Write BENCHMARKS.md from the benchmark records (benchmarks/records/*.json, see records.py).

    python3 benchmarks/render.py            # rewrite BENCHMARKS.md
    python3 benchmarks/render.py --check    # exit 1 if BENCHMARKS.md is not what would be written

The page is a function of the records only (no clock, no machine): the same records always give
the same text.  Sections follow ORDER; records not listed there come after, by name.  The page is
included in the documentation (mkdocs, snippets, --strict): it holds no links and no HTML, paths
are code spans.
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from records import RECORDS, ROOT, load_all  # noqa: E402

OUTPUT = ROOT / "BENCHMARKS.md"

#: the sections' order (record names); records not listed here follow, by name
ORDER = [
    "gpu_check",
    "engine",
    "tdse_step",
    "tdse_profile",
    "tdse_modes",
    "tdse_fast_fidelity",
    "msft",
    "models",
    "models_threads1",
    "baselines",
    "stream",
    "stream_ceiling",
    "refine_vs_simplex",
    "processing",
]

FIRST_LINE = ("Generated from `benchmarks/records/*.json` by `benchmarks/render.py`: do not edit by hand "
              "(a benchmark script writes its record; then run `python3 benchmarks/render.py`).")

INTRO = """\
# Benchmarks

Each section is the latest run of one benchmark as its script recorded it in
`benchmarks/records/<name>.json`: when (UTC) and where it ran (CPU, logical cores, memory, GPU,
versions), the load average at its start and end, the command, the figures it measured, its tables
and notes. Every figure comes from a script in `benchmarks/`, which measures the thing and its
baseline in the same run and reports their ratio. Most ran on the project's 2-core x86_64
development VM (24 GiB, no GPU) while other engineers' jobs shared its two cores: absolute rates
then fall with the load while the ratios of one run hold better, hence the load averages.

Older measurements: `git log -p benchmarks/records/` (and, from before the records existed,
`git log -p BENCHMARKS.md`)."""


def fmt(v) -> str:
    """A number for the page: integers whole, floats to 4 significant digits (the JSON keeps them all)."""
    if v is None:
        return ""
    if isinstance(v, str):
        return v
    if isinstance(v, bool):
        return str(v)
    if isinstance(v, int):
        return str(v)
    if v == 0:
        return "0"
    a = abs(v)
    if a < 1e4 and v == int(v):
        return f"{int(v)}.0"  # a float that happens to be whole: shown as one
    if a < 1e-3 or a >= 1e7:
        m, e = f"{v:.3e}".split("e")
        m = m.rstrip("0").rstrip(".")
        return f"{m}e{int(e)}"
    digits = max(0, 3 - math.floor(math.log10(a)))
    s = f"{v:.{digits}f}"
    if "." in s:
        s = s.rstrip("0").rstrip(".")
    return s


def cell(v) -> str:
    return fmt(v).replace("\n", " ").replace("|", "\\|")


def code(text: str) -> str:
    """``text`` as a markdown code span (enough backticks around it)."""
    n = 1
    while "`" * n in text:
        n += 1
    fence = "`" * n
    pad = " " if text.startswith("`") or text.endswith("`") else ""
    return f"{fence}{pad}{text}{pad}{fence}"


def md_table(columns: list[str], rows: list[list]) -> list[str]:
    out = ["| " + " | ".join(cell(c) for c in columns) + " |", "| " + " | ".join("---" for _ in columns) + " |"]
    out += ["| " + " | ".join(cell(c) for c in row) + " |" for row in rows]
    return out


def when(date: str) -> str:
    """'2026-11-30T00:10:00Z' -> '2026-11-30 00:10 UTC' (seconds shown only when not zero)."""
    day, _, time = date.rstrip("Z").partition("T")
    if not time:
        return f"{day} (time not recorded)"
    time = time[:5] if time.endswith(":00") else time
    return f"{day} {time} UTC"


def machine_line(m: dict) -> str:
    parts = []
    if m.get("description"):
        parts.append(str(m["description"]))
    hw = [str(m.get("cpu") or "CPU unknown")]
    if m.get("cores"):
        hw.append(f"{m['cores']} logical cores")
    if m.get("memory_gib"):
        hw.append(f"{fmt(m['memory_gib'])} GiB")
    hw.append(f"GPU {m['gpu']}" if m.get("gpu") else "no GPU")
    parts.append(", ".join(hw))
    sw = [f"{label} {m[k]}" for k, label in (("python", "Python"), ("numpy", "numpy"), ("torch", "torch")) if m.get(k)]
    if sw:
        parts.append(", ".join(sw))
    known = {"description", "cpu", "cores", "memory_gib", "gpu", "python", "numpy", "torch"}
    extra = [f"{k} {fmt(v) if not isinstance(v, (list, dict)) else v}" for k, v in sorted(m.items())
             if k not in known and v not in (None, "")]
    if extra:
        parts.append(", ".join(extra))
    return "; ".join(parts)


def load_line(load: dict) -> str:
    """'load average (1 min): 1.44 at the start, 1.21 at the end; <note>'."""
    def one(x):
        x = x if isinstance(x, list) else [x]
        return " / ".join(f"{v:.2f}".rstrip("0").rstrip(".") if v != int(v) else f"{v:.1f}" for v in x), len(x)

    got, n = [], 1
    for key, where in (("start", "at the start"), ("end", "at the end")):
        if load.get(key) is not None:
            text, k = one(load[key])
            got.append(f"{text} {where}")
            n = max(n, k)
    note = load.get("note")
    if not got:
        return f"load average: {note}" if note else "load average: not recorded"
    span = "1 min" if n == 1 else "1 / 5 / 15 min"
    return f"load average ({span}): " + ", ".join(got) + (f"; {note}" if note else "")


def section(rec: dict) -> str:
    title = rec.get("title") or rec["name"]
    script = rec.get("script")
    lines = [f"## {title}" + (f" ({code(script)})" if script else ""), ""]
    lines.append(f"- record: {code('benchmarks/records/' + rec['name'] + '.json')}, run of {when(rec['date'])}")
    lines.append(f"- machine: {machine_line(rec['machine'])}")
    lines.append(f"- {load_line(rec['load'])}")
    lines.append(f"- command: {code(rec['command'])}")
    lines.append("")
    figs = rec["figures"]
    noted = any("note" in f for f in figs.values())
    cols = ["figure", "value", "unit"] + (["note"] if noted else [])
    rows = [[code(k), fmt(f["value"]), f["unit"]] + ([f.get("note", "")] if noted else []) for k, f in figs.items()]
    lines += md_table(cols, rows)
    for t in rec.get("tables") or []:
        lines.append("")
        if t.get("title"):
            lines += [f"**{t['title']}**", ""]
        lines += md_table(t["columns"], t["rows"])
    if rec.get("notes"):
        lines.append("")
        if rec.get("notes_date") and rec["notes_date"] != rec["date"]:
            lines += [f"*These notes were written for the run of {when(rec['notes_date'])}; the figures above are "
                      f"newer.*", ""]
        lines.append(rec["notes"].strip("\n"))
    return "\n".join(lines)


def ordered(records: list[dict]) -> list[dict]:
    rank = {name: i for i, name in enumerate(ORDER)}
    return sorted(records, key=lambda r: (rank.get(r["name"], len(ORDER)), r["name"]))


def render(records: list[dict]) -> str:
    parts = [FIRST_LINE, INTRO] + [section(r) for r in ordered(records)]
    return "\n\n".join(p.rstrip("\n") for p in parts) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--check", action="store_true", help="exit 1 if the page differs from what would be written")
    ap.add_argument("--records", type=Path, default=RECORDS, help="the records' folder")
    ap.add_argument("--out", type=Path, default=OUTPUT, help="the page")
    args = ap.parse_args(argv)
    try:
        text = render(load_all(args.records))
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.check:
        try:
            current = args.out.read_text(encoding="utf-8")
        except OSError:
            current = None
        if current != text:
            print(f"{args.out.name} is not what benchmarks/render.py writes from {args.records.name}/: "
                  f"run python3 benchmarks/render.py", file=sys.stderr)
            return 1
        return 0
    tmp = args.out.with_name(args.out.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
