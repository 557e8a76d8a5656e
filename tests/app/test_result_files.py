"""Results written beside a user's files (reports, tables, figures, arrays) never replace a file
the project did not write (issue 13: only ever delete what the project itself created)."""

import json
import os

import numpy as np
import pytest

from factory.errors import OutputError
from factory.outputs import RESULT_FILES, ResultFolder, check_file_output
from factory.plots import save
from factory.plots.style import plt
from factory.testing import error_line, run_cli


def _figure():
    fig, ax = plt.subplots()
    ax.plot([0, 1], [0, 1])
    return fig


def test_result_folder_writes_only_free_or_its_own_names(tmp_path):
    out = tmp_path / "results"
    folder = ResultFolder(out, ["table.md"])
    folder.file("table.md").write_text("v1")
    (out / "mine.txt").write_text("user")
    again = ResultFolder(out, ["table.md"])  # a rerun: its own file may be replaced
    again.file("table.md").write_text("v2")
    assert (out / "table.md").read_text() == "v2" and (out / "mine.txt").read_text() == "user"
    with pytest.raises(OutputError, match="mine.txt exists and was not written by factory"):
        ResultFolder(out, ["mine.txt"])
    with pytest.raises(OutputError, match="mine.txt exists and was not written by factory"):
        again.file("mine.txt")
    assert (out / "mine.txt").read_text() == "user"
    listed = json.loads((out / RESULT_FILES).read_text())
    assert listed == {"schema": "factory.result-files/1", "files": ["table.md"]}


def test_result_folder_trusts_no_damaged_or_foreign_list(tmp_path):
    out = tmp_path / "results"
    out.mkdir()
    (out / "table.md").write_text("user")
    for listing in ("not json", json.dumps({"files": ["table.md"]}), json.dumps([1, 2])):
        (out / RESULT_FILES).write_text(listing)  # unreadable, or without the schema: nothing is ours
        with pytest.raises(OutputError, match="table.md exists and was not written"):
            ResultFolder(out, ["table.md"])
    (out / "d").mkdir()
    (out / RESULT_FILES).write_text(json.dumps({"schema": "factory.result-files/1", "files": ["d"]}))
    with pytest.raises(OutputError, match="d exists and was not written"):  # a folder is never a result file
        ResultFolder(out, ["d"])
    os.symlink(out, tmp_path / "link")
    with pytest.raises(OutputError, match="symbolic link"):
        ResultFolder(tmp_path / "link")
    (tmp_path / "file").write_text("x")
    with pytest.raises(OutputError, match="is a file, not a folder"):
        ResultFolder(tmp_path / "file")


def test_a_lone_figure_or_array_replaces_only_its_own_kind(tmp_path):
    png = tmp_path / "fig.png"
    save(_figure(), png)
    first = png.read_bytes()
    save(_figure(), png)  # a PNG over a PNG
    assert png.read_bytes()[:8] == first[:8]
    text = tmp_path / "thesis.tex"
    text.write_text("\\documentclass{article}")
    with pytest.raises(OutputError, match="not a PNG file"):
        save(_figure(), text)
    assert text.read_text() == "\\documentclass{article}" and sorted(os.listdir(tmp_path)) == ["fig.png", "thesis.tex"]
    np.save(tmp_path / "a.npy", np.zeros(3))
    assert check_file_output(tmp_path / "a", "npy") == tmp_path / "a.npy"  # numpy's suffix, as np.save adds it
    (tmp_path / "b.npy").write_text("mine")
    with pytest.raises(OutputError, match="not a NPY file"):
        check_file_output(tmp_path / "b", "npy")


def test_cli_refuses_a_users_file_before_any_work(tmp_path):
    text, npz, npy = tmp_path / "notes.txt", tmp_path / "pmd.npz", tmp_path / "image.npy"
    text.write_text("mine")
    npz.write_text("my own pmd.npz, not numpy's")
    npy.write_text("mine too")
    for args in (["tdse", "pmd", "--preset", "tiny", "--out", str(text)],
                 ["tdse", "pmd", "--preset", "tiny", "--npz", str(npz)],
                 ["msft", "pattern", "--preset", "tiny", "--out", str(text)],
                 ["msft", "pattern", "--preset", "tiny", "--npy", str(npy)],
                 ["quickstart", "--size", "tiny", "--out", str(tmp_path)]):
        proc = run_cli(*args, timeout=120)
        assert proc.returncode == 2, (args, proc.stderr)
        assert str(tmp_path) in error_line(proc)
        assert [text.read_text(), npz.read_text(), npy.read_text()] == ["mine", "my own pmd.npz, not numpy's",
                                                                         "mine too"], args
        assert sorted(os.listdir(tmp_path)) == ["image.npy", "notes.txt", "pmd.npz"], args


def test_a_result_is_written_whole_or_not_at_all(tmp_path):
    folder = ResultFolder(tmp_path / "r", ["a.json", "p.npz"])
    folder.write_text("a.json", "old")

    def dies(tmp):
        tmp.write_text("half of the new")
        raise KeyboardInterrupt  # killed while writing

    with pytest.raises(KeyboardInterrupt):
        folder.write("a.json", dies)
    assert (tmp_path / "r" / "a.json").read_text() == "old"
    assert sorted(os.listdir(tmp_path / "r")) == [RESULT_FILES, "a.json"]  # no temporary left
    path = folder.savez("p.npz", x=np.arange(3))
    assert path.name == "p.npz" and np.load(path)["x"].tolist() == [0, 1, 2]
