"""The one-line error contract (issue 13, items 7, 15, 16): bad input gets exactly one ``error:``
line on stderr and exit status 2, is refused before anything is written, and never a traceback.

One case runs the real command line in a subprocess (``run_cli_process``); the rest run
``factory.cli.main`` in this process (``run_cli``), the code path ``python -m factory.cli`` takes.
"""

import subprocess
import sys

import numpy as np
import pytest

from factory.cli import main
from factory.errors import StoreError
from factory.processing.splits import assign_splits, check_fractions
from factory.testing import error_line, run_cli, run_cli_process


def cli(capsys, *args: str) -> subprocess.CompletedProcess:
    """``factory ARGS`` in this process: exit status, stdout and stderr, as run_cli gives them."""
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return subprocess.CompletedProcess(args, code, out, err)


def only_error(proc, *words: str) -> str:
    """Exit 2, stderr is exactly one ``error:`` line (no usage box), holding ``words``."""
    assert proc.returncode == 2, (proc.returncode, proc.stderr)
    line = error_line(proc)
    assert [l for l in proc.stderr.splitlines() if l.strip()] == [line], proc.stderr
    for w in words:
        assert w in line, (w, line)
    return line


@pytest.fixture(scope="module")
def pmd_store(tmp_path_factory):
    from models.shifted_synthetic import make_pmd_store

    return make_pmd_store(tmp_path_factory.mktemp("cli") / "pmd.zarr", n=8, shape=(16, 32))


# -- Typer usage errors: one line, exit 2, for `factory` and every sub-app ---------------------------
def test_usage_error_is_one_error_line_in_a_real_shell(tmp_path):
    out = tmp_path / "s.zarr"
    only_error(run_cli_process("generate", "blobs/tiny", "--out", str(out), "--workers", "0"),
               "--workers", "greater than or equal to 1", "--help")
    assert not out.exists()


@pytest.mark.parametrize("args, words", [
    (["generate", "blobs/tiny", "--out", "s.zarr", "--workers", "0"], ["--workers", "greater than or equal to 1"]),
    (["generate", "blobs/tiny"], ["Missing option", "--out"]),
    (["plot", "s.zarr", "--out", "p.png", "--n", "0"], ["--n"]),
    (["plot", "s.zarr", "--out", "p.png", "-n", "0"], ["No such option: -n"]),
    (["process", "preprocess", "s.zarr"], ["Missing option", "--out"]),
    (["process", "augment", "s.zarr", "--out", "o.zarr", "--factor", "0"], ["--factor"]),
    (["process", "nosuch"], ["No such command 'nosuch'"]),
    (["msft", "pattern", "--radius", "abc"], ["--radius"]),
    (["tdse", "pmd", "--R", "x"], ["--R"]),
    (["predict", "stream", "model"], ["Missing option", "--source"]),
    (["train"], ["Missing argument"]),
    (["baselines", "store.zarr", "--bogus"], ["No such option: --bogus"]),
    (["nosuch"], ["No such command 'nosuch'"]),
])
def test_usage_errors_of_every_sub_app(capsys, tmp_path, monkeypatch, args, words):
    monkeypatch.chdir(tmp_path)
    only_error(cli(capsys, *args), *words, "--help")
    assert not any(tmp_path.iterdir())


def test_help_still_works(capsys):
    proc = cli(capsys, "--help")
    assert proc.returncode == 0 and "Usage" in proc.stdout and "generate" in proc.stdout
    proc = cli(capsys, "process", "preprocess", "--help")
    assert proc.returncode == 0 and "--split" in proc.stdout
    proc = cli(capsys, "process")  # no command: the help, exit 2 (as before)
    assert proc.returncode == 2 and "Usage" in proc.stdout + proc.stderr and "error:" not in proc.stderr


# -- configs: non-UTF-8, "billion laughs", non-finite numbers ---------------------------------------
def test_non_utf8_yaml_is_one_line_naming_the_file(capsys, tmp_path):
    bad = tmp_path / "latin1.yaml"
    bad.write_bytes(b"kind: blobs\nsamples: 4\nname: caf\xe9\n")
    out = tmp_path / "s.zarr"
    only_error(cli(capsys, "generate", bad, "--out", out), str(bad), "line 3", "not UTF-8")
    assert not out.exists()


def test_billion_laughs_is_refused_at_once(tmp_path):
    lines = ['a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    for prev, name in zip("abcdefgh", "bcdefghi"):
        lines.append(f"{name}: &{name} [{','.join(['*' + prev] * 9)}]")
    bomb = tmp_path / "laughs.yaml"
    bomb.write_text("\n".join(lines) + "\n")  # 9 lines; 9^9 strings once expanded
    out = tmp_path / "s.zarr"
    proc = run_cli("generate", str(bomb), "--out", str(out), timeout=60)
    only_error(proc, str(bomb), "line 1", "aliases")
    assert not out.exists()


@pytest.mark.parametrize("override, key", [
    ("simulator.center=[-.inf, .inf]", "simulator.center[0]"),
    ("simulator.amplitude=[0.5, .inf]", "simulator.amplitude[1]"),
])
def test_non_finite_numbers_are_refused_before_the_store_exists(capsys, tmp_path, override, key):
    out = tmp_path / "s.zarr"
    only_error(cli(capsys, "generate", "blobs/tiny", "--out", out, "--set", override), key, "finite")
    assert not out.exists()


# -- split fractions (item 7) ------------------------------------------------------------------------
@pytest.mark.parametrize("fractions", [(float("nan"), 0, 1), (0.5, float("inf"), -float("inf")), (-0.5, 0.5, 1),
                                       (0.5, 0.5), (0.5, 0.25, 0.2), ("a", 0, 1)])
def test_bad_split_fractions_are_refused_by_the_library(fractions):
    with pytest.raises(ValueError, match="finite numbers >= 0 summing to 1"):
        assign_splits(10, fractions, 0)


def test_good_split_fractions_still_split():
    assert check_fractions(["0.8", "0.1", "0.1"]) == (0.8, 0.1, 0.1)
    codes = assign_splits(100, (0.0, 0.0, 1.0), 0)
    assert (codes == 2).all()


def test_nan_split_is_refused_by_the_cli_and_nothing_is_written(capsys, pmd_store, tmp_path):
    meta = (pmd_store.path / "zarr.json").read_bytes()
    only_error(cli(capsys, "process", "split", pmd_store.path, "--split", "nan,0,1"), "--split", "nan,0,1")
    assert (pmd_store.path / "zarr.json").read_bytes() == meta
    out = tmp_path / "pre.zarr"
    only_error(cli(capsys, "process", "preprocess", pmd_store.path, "--out", out, "--split", "0.5,0.5,inf"), "--split")
    assert not out.exists()


# -- explanations on a store with too few images (item 16) ------------------------------------------
@pytest.fixture(scope="module")
def classifier(tmp_path_factory):
    from models.shifted_synthetic import make_local_evidence_store
    from models.train import load_train_config, train

    d = tmp_path_factory.mktemp("occlusion")
    st = make_local_evidence_store(d / "evidence.zarr", n=32, shape=(32, 64))
    cfg = load_train_config("pmd-classifier/tiny", ["run.backend=local", "run.cpus_per_worker=1", "optim.epochs=1",
                                                    "optim.batch_size=16"])
    return train(cfg, st.path, d / "classifier", overwrite=True, progress=False).model


def test_occlusion_dictionary_on_too_small_a_store_is_one_line(classifier, tmp_path):
    from factory.simulators import Coord
    from factory.store import DatasetStore
    from models.explain import explain_store, occlusion_dictionary

    n, (h, w) = 4, (32, 64)
    coords = (Coord("ky", np.linspace(-1, 1, h), "a.u."), Coord("kx", np.linspace(-1, 1, w), "a.u."))
    st = DatasetStore.create(tmp_path / "interp.zarr", kind="synthetic", n_samples=n, chunk=n, coords=coords,
                             param_names=["R", "intensity", "interpolated"], config={"n": n}, config_hash="interp-4")
    st.write_block(0, np.zeros((n, h, w), np.float32),
                   {"R": np.linspace(1, 8, n), "intensity": np.full(n, 2e14), "interpolated": np.ones(n)})
    # every sample interpolated: no computed image to build or test a dictionary on
    with pytest.raises(StoreError, match="too few for a dictionary"):
        occlusion_dictionary(classifier, st.path, tmp_path / "dict")
    empty = DatasetStore.create(tmp_path / "empty.zarr", kind="synthetic", n_samples=n, chunk=n, coords=coords,
                                param_names=["R"], config={"n": n}, config_hash="empty-4")
    with pytest.raises(StoreError):
        explain_store(classifier, empty.path, tmp_path / "explain")
    assert not (tmp_path / "dict").exists() and not (tmp_path / "explain").exists()


# -- root options, help texts (issue 18) -------------------------------------------------------------
def test_version_and_exclusive_verbosity(capsys):
    from importlib.metadata import version

    res = cli(capsys, "--version")
    assert res.returncode == 0 and res.stdout.strip() == f"factory {version('ultrafast-data-factory')}"
    only_error(cli(capsys, "--quiet", "--verbose", "presets"), "--quiet and --verbose exclude each other")


def test_dashboard_without_its_packages_is_one_line(tmp_path):
    """Ray's dashboard packages missing (aiohttp made unimportable): one line saying what to
    install, before anything is started or written."""
    out = tmp_path / "b.zarr"
    code = ("import sys; sys.modules['aiohttp'] = None; from factory.cli import main; "
            f"sys.exit(main(['--dashboard', 'generate', 'blobs/tiny', '--out', {str(out)!r}]))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    only_error(proc, "--dashboard", "pip install 'ray[default]'")
    assert not out.exists()


def _help_texts(command, path=()):
    """(command path, help text) of every command, group and option of ``command``."""
    yield path, command.help or ""
    for p in command.params:
        yield (*path, p.name), getattr(p, "help", None) or ""
    for name, sub in getattr(command, "commands", {}).items():
        yield from _help_texts(sub, (*path, name))


def test_help_texts_survive_rich_markup(capsys, monkeypatch):
    """Typer renders help through Rich markup, which swallows "[header, buffer]" as a tag:
    every help text reads the same after markup (brackets that look like a tag escaped)."""
    import typer
    from rich.text import Text

    from factory.app.main import _mount_subcommands, app

    _mount_subcommands()
    texts = list(_help_texts(typer.main.get_command(app)))
    assert len(texts) > 100
    for where, text in texts:
        assert Text.from_markup(text).plain == text.replace("\\[", "["), (where, text)
    monkeypatch.setenv("COLUMNS", "250")  # one line per option
    lines = cli(capsys, "predict", "stream", "--help").stdout.splitlines()
    assert any("--protocol" in l and "simple ([header, buffer]" in l for l in lines), lines
    assert any("--png-every" in l and "seconds between two writes" in l for l in lines), lines
