"""The docs are executable: every ```bash, ```python and ```yaml block of every page runs, in order, in
one folder, at tiny scale (a bash block in bash, a python block in a new Python, a yaml block is a
config: ``factory.config.load_config`` must accept it).

The pages are those of ``nav`` in ``mkdocs.yml``, in that order (the order of the site's menu),
and their blocks in page order, all in ONE temporary folder, so a page may use what an earlier
page's blocks made (the MSFT page's ``msft.zarr`` is preprocessed on the post-processing page,
the networks trained on the training page are served on the streaming page): every input a
command uses must be made by an earlier block.

Each block is run as written except for the scale-down rules in :data:`TINY` (presets ``small``,
``fast`` and ``paper`` become ``tiny``, sample counts at most 8, intensity ladders of 2, epochs
at most 2, TDSE propagation to the end of the pulse; every command joins one Ray instance the
test starts, through ``RAY_ADDRESS``, instead of starting its own).  A block directly after the
comment ``<!-- docs: not run (REASON) -->`` is illustrative only (it needs a cluster, a facility
stream or the network, or it installs the package): the test checks that it names its reason and
does not run it; README.md's blocks are all of that kind.  ``docs/testing.md`` documents the same
rules.  ``test_docs_build_strict`` builds the site with ``mkdocs build --strict``.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"
README = ROOT / "README.md"
MKDOCS = ROOT / "mkdocs.yml"
NOT_RUN = re.compile(r"<!--\s*docs:\s*not run\s*\((?P<why>[^)]+)\)\s*-->")

#: (pattern, replacement) applied to every command line of a block that runs
TINY: list[tuple[str, str]] = [
    (r"\b(blobs|msft|tdse)/(small|paper|fast)\b", r"\1/tiny"),
    (r"\b(pmd-cnn|pmd-classifier|resnet-scatter|1d-cnn|1d-mlp)/(small|paper)\b", r"\1/tiny"),
    (r"simulator\.preset=(small|paper|fast)\b", "simulator.preset=tiny"),
    (r"--preset (small|paper|fast)\b", "--preset tiny"),
    (r"simulator\.sampling\.ladder=\d+", "simulator.sampling.ladder=2"),
]


def _cap(name: str, most: int):
    def sub(m: re.Match) -> str:
        return f"{m.group(1)}{min(int(m.group(2)), most)}"
    return re.compile(rf"({re.escape(name)}[ =])(\d+)"), sub


CAPS = [_cap("--samples", 8), _cap("--epochs", 2), _cap("optim.epochs", 2), _cap("--max-frames", 8)]
#: the same for Python: TDSE preset names passed as ``preset="..."`` (an MSFT config keeps its size:
#: the measured detector model needs 128 x 128 images)
TINY_PY: list[tuple[str, str]] = [(r'(preset\s*=\s*)"(small|paper|fast)"', r'\1"tiny"')]
LANGUAGES = ("bash", "python", "yaml")


class _Loader(yaml.SafeLoader):
    """mkdocs.yml may hold tags such as ``!!python/name:``; the nav needs none of them."""


_Loader.add_multi_constructor("", lambda loader, suffix, node: None)
_Loader.add_multi_constructor("tag:yaml.org,2002:python/", lambda loader, suffix, node: None)


def nav_pages() -> list[Path]:
    """The pages of ``nav`` in ``mkdocs.yml``, in menu order (depth first), as paths under docs/."""
    def walk(item):
        if isinstance(item, str):
            yield item
        elif isinstance(item, list):
            for x in item:
                yield from walk(x)
        elif isinstance(item, dict):
            for x in item.values():
                yield from walk(x)
    config = yaml.load(MKDOCS.read_text(), Loader=_Loader)
    return [DOCS / p for p in walk(config["nav"]) if p.endswith(".md") and "://" not in p]


def blocks(text: str, languages=("bash",)) -> list[tuple[int, str, str | None]]:
    """(line number, code, reason not run or None) of every block in one of ``languages``, in order."""
    return [(line, code, why) for line, _, code, why in fenced(text, languages)]


def fenced(text: str, languages=LANGUAGES) -> list[tuple[int, str, str, str | None]]:
    """(line number, language, code, reason not run or None) of every fenced block in ``languages``."""
    out = []
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        lang = lines[i].strip()[3:] if lines[i].strip().startswith("```") else ""
        if lang in languages:
            start = i
            j = i + 1
            while lines[j].strip() != "```":
                j += 1
            prev = next((lines[k] for k in range(start - 1, -1, -1) if lines[k].strip()), "")
            m = NOT_RUN.search(prev)
            out.append((start + 1, lang, "\n".join(lines[start + 1:j]), m.group("why") if m else None))
            i = j
        i += 1
    return out


def tiny(code: str, language: str = "bash") -> str:
    """The block at tiny scale: the rules of :data:`TINY` (and :data:`TINY_PY`) and the caps, line by line."""
    if language == "bash":
        code = code.replace("\\\n", " ")  # one line per command
    out = []
    for line in code.splitlines():
        for pat, rep in TINY + (TINY_PY if language == "python" else []):
            line = re.sub(pat, rep, line)
        for pat, sub in CAPS:
            line = pat.sub(sub, line)
        if language == "bash" and re.match(r"\s*factory generate tdse/", line):  # to the end of the pulse: seconds per PMD
            cmd, _, comment = line.partition("#")
            line = f"{cmd.rstrip()} --set simulator.preset=tiny --set simulator.t_end=1.0"
        out.append(line)
    return "\n".join(out)


def _name(page: Path) -> str:
    return page.relative_to(ROOT).as_posix()


def test_rules_scale_commands_down():
    code = ("factory generate tdse/small --samples 200 --set simulator.sampling.ladder=10 --out raw.zarr\n"
            "factory train pmd-cnn/small --store s.zarr --out r \\\n    --set optim.epochs=30")
    got = tiny(code).splitlines()
    assert got[0] == ("factory generate tdse/tiny --samples 8 --set simulator.sampling.ladder=2 --out raw.zarr"
                      " --set simulator.preset=tiny --set simulator.t_end=1.0")
    assert got[1].split() == "factory train pmd-cnn/tiny --store s.zarr --out r --set optim.epochs=2".split()
    py = tiny('gs = ground_state("H2+", R=2.0, preset="small")\ncfg = resolve_simulator_config("msft", "paper")', "python")
    assert py.splitlines() == ['gs = ground_state("H2+", R=2.0, preset="tiny")', 'cfg = resolve_simulator_config("msft", "paper")']


def test_every_page_is_in_nav_once():
    pages = nav_pages()
    assert len(pages) == len(set(pages)), "a page is twice in mkdocs.yml's nav"
    assert all(p.is_file() for p in pages), [_name(p) for p in pages if not p.is_file()]
    assert set(DOCS.rglob("*.md")) == set(pages), (
        "every page of docs/ must be in mkdocs.yml's nav (else its blocks would not run): "
        f"{sorted(_name(p) for p in set(DOCS.rglob('*.md')) ^ set(pages))}")


def test_every_block_runs_or_says_why_not():
    found = 0
    for page in [README, *nav_pages()]:
        text = page.read_text()
        assert "readme: not run" not in text, f"{_name(page)}: the marker is now <!-- docs: not run (REASON) -->"
        for line, _, code, why in fenced(text):
            found += why is None
            assert why is None or len(why.split()) >= 2, f"{_name(page)}:{line}: say why the block is not run"
        if page == README:
            assert all(why is not None for *_, why in fenced(text)), "README.md's blocks are not run: move them to docs/"
    assert found >= 10


@pytest.mark.slow
@pytest.mark.xdist_group("docs")  # .ci/run's slow tier: on one worker while the other runs the rest
def test_docs_run_in_order(tmp_path, ray_local):
    address = ray_local.get_runtime_context().gcs_address  # the commands join it: one Ray start, not 25
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1",
           "RAY_ADDRESS": address,
           "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    for page in nav_pages():
        for line, lang, code, why in fenced(page.read_text()):
            if why is not None:
                continue
            script = tiny(code, lang)
            if lang == "yaml":  # a config as the page shows it: the typed models must accept it
                (tmp_path / "docs-block.yaml").write_text(script)
                script = "from factory.config import load_config; print(load_config('docs-block.yaml'))"
            cmd = ["bash", "-euo", "pipefail", "-c", script] if lang == "bash" else [sys.executable, "-c", script]
            proc = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=900)
            assert proc.returncode == 0, (
                f"{_name(page)}:{line}: block failed (exit {proc.returncode}):\n{script}\n--- stdout\n"
                f"{proc.stdout[-3000:]}\n--- stderr\n{proc.stderr[-6000:]}")


@pytest.mark.slow
def test_docs_build_strict(tmp_path):
    pytest.importorskip("mkdocs")
    pytest.importorskip("material")
    pytest.importorskip("mkdocstrings_handlers.python")
    proc = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path / "site")],
                          cwd=ROOT, env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, f"mkdocs build --strict failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-6000:]}"
    assert (tmp_path / "site" / "benchmarks" / "index.html").is_file()
