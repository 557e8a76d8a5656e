"""The generation engine: reproducibility on every executor, resume, refusals, NaN handling."""

import numpy as np
import pytest

from factory.compute import LocalExecutor, RayExecutor
from factory.config import load_config
from factory.engine import build_simulator, compute_block, generate
from factory.errors import GenerationError, OutputError, StoreError
from factory.store import DatasetStore
from factory.testing import error_line, run_cli


def arrays(path):
    st = DatasetStore.open(path)
    return st.images[:], st.params(), st.diagnostics(), st.done_mask()


def assert_same(a, b):
    np.testing.assert_array_equal(a[0], b[0])
    assert a[0].tobytes() == b[0].tobytes()
    for k in a[1]:
        assert a[1][k].tobytes() == b[1][k].tobytes(), k
    for k in a[2]:
        assert a[2][k].tobytes() == b[2][k].tobytes(), k
    np.testing.assert_array_equal(a[3], b[3])


def test_same_seed_same_bytes_and_matches_direct_computation(tmp_path, ray_local):
    cfg = load_config("blobs/tiny", ["simulator.noise=0.05"])
    r1 = generate(cfg, tmp_path / "a.zarr", progress=False)
    r2 = generate(cfg, tmp_path / "b.zarr", workers=1, progress=False)
    assert r1.done == r1.samples == 32 and r1.blocks_computed == 8
    a, b = arrays(tmp_path / "a.zarr"), arrays(tmp_path / "b.zarr")
    assert_same(a, b)
    # block 3 computed directly, without Ray, is the same
    imgs, labels, diags = compute_block(cfg, 12, 16)
    np.testing.assert_array_equal(a[0][12:16], imgs)
    np.testing.assert_array_equal(a[1]["x0"][12:16], labels["x0"])
    # another seed gives other data
    c = arrays(generate(load_config("blobs/tiny", ["simulator.noise=0.05"], seed=1),
                        tmp_path / "c.zarr", progress=False).path)
    assert not np.array_equal(a[0], c[0])


def every_array(path) -> dict[str, bytes]:
    st = DatasetStore.open(path)
    return {name: np.asarray(obj[...]).tobytes() for name, obj in st.group.members(max_depth=None)
            if not hasattr(obj, "members")}


def test_tasks_actors_and_local_executors_write_identical_stores(tmp_path, ray_local):
    cfg = load_config("blobs/tiny", ["simulator.noise=0.05"])
    tasks = generate(cfg, tmp_path / "tasks.zarr", mode="tasks", progress=False)
    assert "tasks" in tasks.where
    with RayExecutor(workers=2, mode="actors") as ex:
        actors = generate(cfg, tmp_path / "actors.zarr", executor=ex, progress=False)
        pool = list(ex.actors())
        again = generate(cfg, tmp_path / "again.zarr", executor=ex, progress=False)
        assert ex.actors() == pool  # the same warm actors served the second run
    assert "2 actor(s)" in actors.where and again.done == 32
    local = generate(cfg, tmp_path / "local.zarr", executor=LocalExecutor(), progress=False)
    assert local.where == "in-process"
    ref = every_array(tmp_path / "tasks.zarr")
    assert {"images", "done", "params/x0"} <= set(ref)
    for name in ("actors", "again", "local"):
        assert every_array(tmp_path / f"{name}.zarr") == ref, name


def test_simulator_gets_its_thread_count_not_the_environment(monkeypatch):
    import os

    monkeypatch.delenv("FACTORY_FFT_THREADS", raising=False)
    cfg = load_config("blobs/tiny")
    sim = build_simulator(cfg, threads=3)
    assert build_simulator(cfg, threads=3) is sim and build_simulator(cfg, threads=1) is not sim
    assert sim.threads == 3
    compute_block(cfg, 0, 4, threads=3)
    assert "FACTORY_FFT_THREADS" not in os.environ


def test_sample_i_does_not_depend_on_chunking_or_count(tmp_path, ray_local):
    a = arrays(generate(load_config("blobs/tiny"), tmp_path / "a.zarr", progress=False).path)
    b = arrays(generate(load_config("blobs/tiny", ["chunk=5"], samples=20), tmp_path / "b.zarr",
                        progress=False).path)
    np.testing.assert_array_equal(a[0][:20], b[0])
    np.testing.assert_array_equal(a[1]["sigma1"][:20], b[1]["sigma1"])


def test_resume_computes_only_missing_blocks(tmp_path, ray_local):
    cfg = load_config("blobs/tiny")
    ref = arrays(generate(cfg, tmp_path / "ref.zarr", progress=False).path)
    path = tmp_path / "s.zarr"
    generate(cfg, path, progress=False)
    st = DatasetStore.open(path, mode="r+")
    # forget blocks 1 and 5 as if the run had died before writing them
    st.group["done"][4:8] = False
    st.group["done"][20:24] = False
    st.images[4:8] = 0.0
    rep = generate(cfg, path, resume=True, progress=False)
    assert rep.blocks_computed == 2 and rep.blocks_skipped == 6 and rep.samples_computed == 8
    assert_same(arrays(path), ref)
    runs = DatasetStore.open(path).meta["runs"]
    assert [r["blocks_computed"] for r in runs] == [8, 2]


def test_resume_with_other_config_is_refused_and_data_untouched(tmp_path, ray_local):
    path = tmp_path / "s.zarr"
    generate(load_config("blobs/tiny"), path, progress=False)
    before = arrays(path)
    with pytest.raises(StoreError, match="different config"):
        generate(load_config("blobs/tiny", ["simulator.noise=0.1"]), path, resume=True, progress=False)
    with pytest.raises(OutputError, match="already exists"):
        generate(load_config("blobs/tiny"), path, progress=False)
    assert_same(arrays(path), before)
    # and through the CLI: one line, non-zero, still untouched
    proc = run_cli("generate", "blobs/tiny", "--out", str(path), "--resume", "--set", "simulator.noise=0.1")
    assert proc.returncode == 2 and "different config" in error_line(proc)
    proc = run_cli("generate", "blobs/tiny", "--out", str(path))
    assert proc.returncode == 2 and "already exists" in error_line(proc)
    assert_same(arrays(path), before)


@pytest.mark.parametrize("mode", ["tasks", "actors"])
def test_nan_fails_its_block_loudly_and_is_not_stored(tmp_path, ray_local, mode):
    cfg = load_config("blobs/tiny", ["simulator.nan_at=[5, 6]"])
    path = tmp_path / "s.zarr"
    with pytest.raises(GenerationError, match=r"1 of 8 blocks failed, 28/32 samples done.*NaN/Inf for samples \[5, 6\]"):
        generate(cfg, path, mode=mode, progress=False)
    with pytest.raises(StoreError, match=r"4 of 32 samples not done \(samples 4..7\)"):
        DatasetStore.open(path)  # readers refuse it
    st = DatasetStore.open(path, partial=True)
    done = st.done_mask()
    assert not done[4:8].any() and done[:4].all() and done[8:].all()
    assert np.isfinite(st.images[:4]).all() and np.isfinite(st.images[8:]).all()  # the failed block left no chunk


def test_cli_generate_json_and_resume(tmp_path):
    import json

    path = tmp_path / "s.zarr"
    proc = run_cli("generate", "blobs/tiny", "--out", str(path), "--samples", "12", "--json", check=True)
    rep = json.loads(proc.stdout)
    assert rep["done"] == 12 and rep["blocks_computed"] == 3
    proc = run_cli("generate", "blobs/tiny", "--out", str(path), "--samples", "12", "--resume", "--json", check=True)
    rep = json.loads(proc.stdout)
    assert rep["blocks_computed"] == 0 and rep["blocks_skipped"] == 3
