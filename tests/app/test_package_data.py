"""The measured Ag cluster patterns ship inside the package (factory/msft/measured/ag_clusters) and
are found through importlib.resources: from the source tree and from a non-editable install into a
fresh virtualenv outside the repository (what a user of the wheel gets; `factory fig5` reads them)."""

import importlib.util
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from factory.errors import ConfigError
from factory.msft.measured import (AG_CLUSTER_NAMES, ATTRIBUTION, ag_cluster_dir, ag_cluster_labels,
                                   load_ag_cluster, load_ag_clusters)
from models.experimental import DATA_DIR, load_png

REPO = Path(__file__).resolve().parents[2]


def test_eight_patterns_with_labels_and_licence_note():
    imgs = load_ag_clusters()
    assert list(imgs) == [f"barke{i}" for i in range(1, 9)] == list(AG_CLUSTER_NAMES)
    for img in imgs.values():
        assert img.shape == (128, 128) and img.dtype == np.float64 and 0 <= img.min() < img.max() <= 255
    assert ag_cluster_labels()["barke5"] == ag_cluster_labels()["barke6"] == "Icosahedron"
    folder = ag_cluster_dir()
    assert "CC BY 4.0" in (folder / "LICENSE.md").read_text() and "Barke" in (folder / "README.md").read_text()
    assert "Barke" in ATTRIBUTION and "CC-BY 4.0" in ATTRIBUTION
    assert "shared" not in str(DATA_DIR)


def test_experimental_loader_paths_agree(tmp_path):
    ref = load_ag_cluster("barke5")
    assert np.array_equal(load_png("barke5"), ref)
    assert np.array_equal(load_png("barke5.png", DATA_DIR), ref)  # what `factory fig5` passes by default
    (tmp_path / "mine.png").write_bytes((DATA_DIR / "barke5.png").read_bytes())
    assert np.array_equal(load_png(str(tmp_path / "mine.png")), ref)  # a path
    assert np.array_equal(load_png("mine", tmp_path), ref)  # --data FOLDER
    with pytest.raises(ConfigError, match="barke1"):
        load_png("barke9")
    with pytest.raises(ConfigError, match="not found"):
        load_png("barke5", tmp_path)


_CHECK = textwrap.dedent("""
    import sys
    from pathlib import Path
    import factory, models.experimental as ex
    venv = Path(sys.prefix).resolve()
    for mod in (factory, ex):
        assert Path(mod.__file__).resolve().is_relative_to(venv), mod.__file__
    imgs = [ex.load_png(n, ex.DATA_DIR) for n in ["barke%d" % i for i in range(1, 9)]]
    assert all(i.shape == (128, 128) and i.max() > 0 for i in imgs)
    assert (ex.DATA_DIR / "LICENSE.md").is_file() and "Barke" in ex.ATTRIBUTION
    print("ok", len(imgs), ex.DATA_DIR)
""")


@pytest.mark.slow
def test_non_editable_install_finds_the_patterns(tmp_path):
    """pip install (not -e) into a fresh venv outside the repo; load all eight from another folder."""
    venv, work = tmp_path / "venv", tmp_path / "elsewhere"
    work.mkdir()
    # no pip of its own (ensurepip is slow): this environment's pip installs into it with --python
    subprocess.run([sys.executable, "-m", "venv", "--system-site-packages", "--without-pip", str(venv)],
                   check=True, timeout=120)
    py = venv / "bin" / "python"
    # the build backend from the index as configured (or this environment's hatchling if it has one)
    isolation = ["--no-build-isolation"] if importlib.util.find_spec("hatchling") else []
    env = {**os.environ, "PIP_DISABLE_PIP_VERSION_CHECK": "1", "PYTHONNOUSERSITE": "1"}
    env.pop("PYTHONPATH", None)
    inst = subprocess.run([sys.executable, "-m", "pip", "--python", str(py), "install", "-q", "--no-deps",
                           "--ignore-installed", *isolation, str(REPO)], capture_output=True, text=True, timeout=300, env=env, cwd=work)
    assert inst.returncode == 0, inst.stdout + inst.stderr
    run = subprocess.run([str(py), "-c", _CHECK], capture_output=True, text=True, timeout=120, env=env, cwd=work)
    assert run.returncode == 0 and run.stdout.startswith("ok 8"), run.stdout + run.stderr
    assert str(venv.resolve()) in run.stdout  # the installed copy's data, not the checkout's
    fig5 = subprocess.run([str(venv / "bin" / "factory"), "fig5", "--help"], capture_output=True, text=True,
                          timeout=120, env=env, cwd=work)
    assert fig5.returncode == 0 and "measured" in fig5.stdout, fig5.stdout + fig5.stderr
