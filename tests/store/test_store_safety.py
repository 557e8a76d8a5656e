"""Nothing lost, nothing silently wrong: outputs, atomic creation, readers and verify (issue 13).

Each test reproduces one way the project used to lose data or return a wrong result.
"""

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from factory.config import load_config
from factory.engine import prepare_store, run_block
from factory.errors import OutputError, StoreError
from factory.outputs import TMP_TAG, check_disjoint, staged_output, user_path
from factory.processing.steps import preprocess_store, split_store
from factory.store import DatasetStore
from factory.testing import error_line, file_tree, run_cli, run_cli_process

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
import fault_injection  # noqa: E402


def blobs_store(path, samples=16, chunk=4):
    """A complete blobs store written through the engine's own block function (no Ray)."""
    cfg = load_config("blobs/tiny", [f"chunk={chunk}"], samples=samples)
    st = prepare_store(cfg, path)
    for s, e in st.blocks():
        run_block(cfg.resolved(), str(st.path), s, e)
    return DatasetStore.open(path)


def siblings(path: Path) -> list[str]:
    return sorted(p.name for p in path.parent.iterdir() if p.name != path.name)


# -- 1: every check before anything is deleted ------------------------------------------------
def test_overwrite_with_a_bad_config_keeps_the_old_store(tmp_path):
    path = tmp_path / "v.zarr"
    blobs_store(path)
    before = file_tree(path)
    proc = run_cli("generate", "blobs/tiny", "--out", str(path), "--overwrite", "--samples", "1000000",
                   "--set", "chunk=1000000", "--no-progress")
    assert proc.returncode == 2 and "one chunk would be 3.8 GiB" in error_line(proc)
    assert file_tree(path) == before
    assert siblings(path) == []  # no temporary folder left behind


def test_overwrite_replaces_only_once_the_new_store_exists(tmp_path, monkeypatch):
    path = tmp_path / "v.zarr"
    blobs_store(path)
    before = file_tree(path)
    import zarr

    def broken(self, name, **kw):  # a failure half-way through creating the new store
        if name == "integrity":
            raise OSError("disk full (injected)")
        return create_group(self, name, **kw)

    create_group = zarr.Group.create_group
    monkeypatch.setattr(zarr.Group, "create_group", broken)
    cfg = load_config("blobs/tiny", ["chunk=8"], samples=8)
    with pytest.raises(OSError, match="injected"):
        prepare_store(cfg, path, overwrite=True)
    monkeypatch.undo()
    assert file_tree(path) == before and siblings(path) == []
    new = prepare_store(cfg, path, overwrite=True)  # without the fault: the new store, beside the old one
    assert new.n_samples == 8 and new.replaces == path and file_tree(path) == before  # swapped in only when filled
    new.discard()  # (tests/store/test_overwrite.py fills and publishes one)
    assert file_tree(path) == before and siblings(path) == []


# -- 2: an output never overlaps an input -----------------------------------------------------
@pytest.mark.parametrize("where", ["same", "inside", "contains"])
def test_output_overlapping_an_input_is_refused(tmp_path, where):
    src = tmp_path / "data" / "s.zarr"
    blobs_store(src)
    before = file_tree(src)
    out = {"same": src, "inside": src / "sub.zarr", "contains": tmp_path / "data"}[where]
    with pytest.raises(OutputError, match={"same": "is the input", "inside": "inside the input",
                                           "contains": "contains the input"}[where]):
        preprocess_store([src], out, mode="scatter", overwrite=True, progress=False)
    assert file_tree(src) == before


def test_cli_preprocess_onto_its_own_source_is_refused(tmp_path):
    src = tmp_path / "s.zarr"
    blobs_store(src)
    before = file_tree(src)
    proc = run_cli("process", "preprocess", str(src), "--out", str(src), "--mode", "scatter", "--overwrite")
    assert proc.returncode == 2 and "is the input" in error_line(proc)
    assert file_tree(src) == before


# -- 3/4: only what the project created is ever replaced ---------------------------------------
def test_overwrite_never_deletes_a_users_folder(tmp_path):
    user = tmp_path / "thesis"
    (user / "src").mkdir(parents=True)
    (user / "thesis.tex").write_text("precious")
    (user / "zarr.json").write_text(json.dumps({"zarr_format": 3, "node_type": "group", "attributes": {}}))
    proc = run_cli("generate", "blobs/tiny", "--out", str(user), "--overwrite", "--no-progress")
    assert proc.returncode == 2 and "not a dataset store made by factory" in error_line(proc)
    assert (user / "thesis.tex").read_text() == "precious" and (user / "src").is_dir()
    # a real store with a user's file added to it is not ours alone any more
    st = tmp_path / "s.zarr"
    blobs_store(st)
    (st / "notes.txt").write_text("mine")
    with pytest.raises(OutputError, match="holds other files"):
        prepare_store(load_config("blobs/tiny"), st, overwrite=True)
    assert (st / "notes.txt").read_text() == "mine"


def test_symlink_file_and_system_paths_are_refused(tmp_path):
    st = tmp_path / "s.zarr"
    blobs_store(st)
    link = tmp_path / "link.zarr"
    link.symlink_to(st)
    proc = run_cli("generate", "blobs/tiny", "--out", str(link), "--overwrite", "--no-progress")
    assert proc.returncode == 2 and "symbolic link" in error_line(proc)
    afile = tmp_path / "a.txt"
    afile.write_text("x")
    with pytest.raises(OutputError, match="is a file"):
        with staged_output(afile, overwrite=True, what="store", recognise=lambda p: True):
            pass
    assert afile.read_text() == "x"
    for bad in ("/proc/x.zarr", "/sys/x", "/dev/x.zarr"):
        with pytest.raises(OutputError, match="refusing to use a path under"):
            user_path(bad)
    with pytest.raises(OutputError, match="is the input"):
        check_disjoint(link, [st])  # the link resolves to the input


# -- 13: a killed create leaves nothing or a valid store ---------------------------------------
KILL_CREATE = """
import sys, time, zarr
from factory.config import load_config
from factory.engine import prepare_store
slow = zarr.Group.create_array
def create_array(self, *a, **k):
    time.sleep(0.03)
    return slow(self, *a, **k)
zarr.Group.create_array = create_array
print("ready", flush=True)
prepare_store(load_config("blobs/tiny", ["chunk=4"], samples=16), sys.argv[1], overwrite=True)
"""


@pytest.mark.slow
def test_sigkill_during_create_leaves_nothing_or_a_valid_store(tmp_path):
    path = tmp_path / "s.zarr"
    outcomes = set()
    for delay in (0.0, 0.1, 0.2, 0.3, 0.45, 0.6, 2.0):
        proc = subprocess.Popen([sys.executable, "-c", KILL_CREATE, str(path)], stdout=subprocess.PIPE,
                                start_new_session=True)
        assert proc.stdout.readline().strip() == b"ready"
        time.sleep(delay)
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        if path.exists():
            st = DatasetStore.open(path, mode="r+")  # whole: opens, consistent
            assert st.n_samples == 16 and not st.done_mask().any()
            outcomes.add("store")
        else:
            outcomes.add("nothing")
        # either way, both --resume and --overwrite go on from here
        cfg = load_config("blobs/tiny", ["chunk=4"], samples=16)
        prepare_store(cfg, path, resume=True)
        new = prepare_store(cfg, path, overwrite=True)  # a replacement, built beside the store
        assert [n for n in siblings(path) if TMP_TAG in n] == [new.path.name]  # the killed runs' are removed
        new.discard()
        shutil.rmtree(path)
    assert outcomes == {"store", "nothing"}, outcomes  # the kills did land on both sides of the rename


# -- 15: creation is O(chunks), an unreachable cluster is found before anything is created ----
def test_creating_ten_million_samples_writes_no_per_sample_objects(tmp_path):
    cfg = load_config("blobs/tiny", [], samples=10_000_000)
    st = prepare_store(cfg, tmp_path / "big.zarr")
    files = [p for p in (tmp_path / "big.zarr").rglob("*") if p.is_file()]
    # metadata (one zarr.json per array, the labels' root copies included) + coordinates + the
    # sample index (10 chunks): no chunk of done/images/labels
    assert len(files) < 50, len(files)
    assert not st.done_mask().any() and len(st.missing_blocks()) == 10_000_000 // cfg.chunk


def test_unreachable_address_fails_fast_and_creates_nothing(tmp_path):
    t0 = time.time()
    proc = run_cli_process("generate", "blobs/tiny", "--out", str(tmp_path / "s.zarr"), "--address", "127.0.0.1:1",
                           timeout=60)  # a process of its own: one in which Ray already runs would use that one
    assert proc.returncode == 2 and "cannot reach the Ray cluster at 127.0.0.1:1" in error_line(proc)
    assert time.time() - t0 < 60 and not (tmp_path / "s.zarr").exists()


# -- 5: readers refuse a store with a missing chunk; resume recomputes it ----------------------
def test_missing_chunk_is_refused_by_processing_and_recomputed_by_resume(tmp_path):
    path = tmp_path / "s.zarr"
    st = blobs_store(path)
    good = st.images[:]
    (path / "images" / "c" / "1" / "0" / "0").unlink()
    proc = run_cli("process", "preprocess", str(path), "--out", str(tmp_path / "p.zarr"), "--mode", "scatter")
    assert proc.returncode == 2
    assert "array 'images' lacks chunk files [1] (samples 4..7)" in error_line(proc)
    assert not (tmp_path / "p.zarr").exists()
    st = DatasetStore.open(path, mode="r+")
    assert st.missing_blocks() == [(4, 8)]  # a resume recomputes exactly the lost chunk
    cfg = load_config("blobs/tiny", ["chunk=4"], samples=16)
    run_block(cfg.resolved(), str(path), 4, 8)
    assert DatasetStore.open(path).images[:].tobytes() == good.tobytes()


def test_partial_store_is_refused_unless_asked_for(tmp_path):
    cfg = load_config("blobs/tiny", ["chunk=4"], samples=16)
    st = prepare_store(cfg, tmp_path / "s.zarr")
    run_block(cfg.resolved(), str(st.path), 0, 4)
    with pytest.raises(StoreError, match=r"12 of 16 samples not done \(samples 4..15\)"):
        DatasetStore.open(st.path)
    part = DatasetStore.open(st.path, partial=True)
    assert part.done_mask().sum() == 4 and part.images[0:4].shape == (4, 32, 32)


# -- 6: verify sees edited metadata, coordinates, swapped and copied chunks --------------------
def test_cli_verify_finds_what_it_used_to_call_clean(tmp_path):
    path = tmp_path / "s.zarr"
    blobs_store(path, samples=32)
    meta = json.loads((path / "zarr.json").read_text())
    meta["attributes"]["factory"]["n_samples"] = 16
    (path / "zarr.json").write_text(json.dumps(meta))
    fault_injection._flip(path, "images", 6)
    proc = run_cli("info", str(path), "--verify")
    assert proc.returncode != 0 and "says 16 samples" in (proc.stdout + proc.stderr)
    assert "Traceback" not in proc.stderr
    for damage in (lambda p: fault_injection._flip(p, "x", 0), lambda p: fault_injection._flip(p, "sample", 0),
                   lambda p: fault_injection._swap(p, "images", 1, 2), lambda p: fault_injection._copy(p, "params/x0", 0, 3)):
        shutil.rmtree(path)  # a fresh store for each damage
        blobs_store(path, samples=32)
        damage(path)
        proc = run_cli("info", str(path), "--verify")
        assert proc.returncode == 1 and "DAMAGED" in proc.stdout, proc.stdout
        assert "Traceback" not in proc.stderr


def test_verify_names_exactly_the_samples_of_a_damaged_done_chunk(tmp_path):
    path = tmp_path / "s.zarr"
    blobs_store(path, samples=32)
    fault_injection._flip(path, "done", 1)
    damage = DatasetStore.open(path, partial=True).verify()
    assert [(d.array, d.chunk, d.samples) for d in damage] == [("done", 1, (4, 8))], damage
    proc = run_cli("info", str(path), "--verify")
    assert proc.returncode == 1 and "done chunk 1, samples 4..7: unreadable" in proc.stdout, proc.stdout


# -- 8: the split is part of the store from its creation ---------------------------------------
def test_preprocessed_store_is_created_with_its_split_or_not_at_all(tmp_path, monkeypatch):
    src = tmp_path / "s.zarr"
    blobs_store(src)
    out = tmp_path / "p.zarr"
    import zarr

    create_array = zarr.Group.create_array

    def broken(self, name, **kw):
        if name == "split":
            raise OSError("killed while writing the split (injected)")
        return create_array(self, name, **kw)

    monkeypatch.setattr(zarr.Group, "create_array", broken)
    with pytest.raises(OSError, match="injected"):
        preprocess_store([src], out, mode="scatter", progress=False)
    monkeypatch.undo()
    assert not out.exists() and siblings(out) == ["s.zarr"]
    preprocess_store([src], out, mode="scatter", progress=False)
    made = DatasetStore.open(out)
    assert made.split_codes() is not None  # with its split, and its attributes kept beside it
    assert made.meta["preprocessing"]["name"] == "scatter" and made.meta["lineage"][0]["kind"] == "blobs"
    shutil.rmtree(out / "split")  # a split the attributes promise but that is gone
    with pytest.raises(StoreError, match="array 'split' is missing"):
        DatasetStore.open(out)


def test_resplit_rewrites_the_recorded_digest(tmp_path):
    path = tmp_path / "s.zarr"
    blobs_store(path)
    counts = split_store(path, fractions=(0.5, 0.25, 0.25), seed=3)
    assert sum(counts.values()) == 16
    st = DatasetStore.open(path)
    assert st.verify() == [] and st.meta["split"]["fractions"] == [0.5, 0.25, 0.25]


# -- store damage gives one error line, never a traceback (item 16) ----------------------------
@pytest.mark.parametrize("name", [
    "flip byte: done chunk", "metadata: images zarr.json deleted", "metadata: schema_version a string",
    "metadata: chunk 0", "metadata: extra name in param_names", "metadata: n_samples removed",
    "flip byte: x coordinate",
])
def test_damaged_store_gives_one_line_to_info_and_preprocess(tmp_path, name):
    path = tmp_path / "s.zarr"
    blobs_store(path)
    dict(fault_injection.DAMAGES)[name](path)
    proc = run_cli("info", str(path), "--verify")
    assert proc.returncode in (1, 2) and "Traceback" not in proc.stderr
    if proc.returncode == 2:
        assert str(path) in error_line(proc)
    proc = run_cli("process", "preprocess", str(path), "--out", str(tmp_path / "p.zarr"), "--mode", "scatter")
    assert proc.returncode == 2 and str(path) in error_line(proc)
    assert not (tmp_path / "p.zarr").exists()


# -- the acceptance run: >= 30 damages, all detected, all refused, none silently wrong -------
@pytest.mark.slow
def test_fault_injection_every_damage_detected_and_refused(tmp_path):
    res = fault_injection.run(tmp_path, samples=16, chunk=4)
    t = res["tally"]
    assert t["damages"] >= 30 and res["kinds"] >= 6
    assert t["silently wrong"] == 0 and t["crashed"] == 0, res["rows"]
    assert t["detected"] == t["damages"], [r for r in res["rows"] if r["verify"] == "MISSED"]
    assert t["refused by every reader"] == t["damages"], [
        r for r in res["rows"] if set(r["readers"].values()) != {"refused"}]


# -- sizes checked before allocating: derived steps refuse what memory cannot hold -------------
@pytest.mark.parametrize("args", [
    ["process", "interpolate", "{src}", "--out", "{out}", "--axes", "amp0,x0", "--samples", str(10**12)],
    ["process", "interpolate", "{src}", "--out", "{out}", "--axes", "amp0,x0", "--samples", str(10**9)],
    ["process", "augment", "{src}", "--out", "{out}", "--factor", str(10**8)],
])
def test_oversized_derived_stores_are_refused_before_allocating(tmp_path, args):
    src, out = tmp_path / "s.zarr", tmp_path / "o.zarr"
    blobs_store(src, samples=32)
    before = file_tree(src)
    proc = run_cli(*[a.format(src=src, out=out) for a in args], timeout=120)
    assert proc.returncode == 2 and str(src) in error_line(proc)
    assert "samples" in error_line(proc) and "MemoryError" not in proc.stderr
    assert not out.exists() and file_tree(src) == before


def test_a_step_refused_before_any_chunk_leaves_no_empty_output(tmp_path):
    """Issue 24 (also noticed): refusing a damaged source left an empty output store behind; a
    partial output (some chunks done) is kept for --resume."""
    path = tmp_path / "s.zarr"
    blobs_store(path, samples=8, chunk=8)  # one chunk of images, damaged below
    fault_injection._flip(path, "images", 0)
    proc = run_cli("process", "preprocess", str(path), "--out", str(tmp_path / "p.zarr"), "--mode", "scatter")
    assert proc.returncode == 2 and "s.zarr" in error_line(proc)
    assert not (tmp_path / "p.zarr").exists() and siblings(tmp_path / "p.zarr") == ["s.zarr"]
