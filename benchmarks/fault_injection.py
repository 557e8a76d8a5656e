"""Fault injection on dataset stores: every kind of damage, detected by verify, refused by readers.

One clean store is generated through the real write path (``engine.run_block``, the function
behind each Ray task; blobs simulator: images, 8 labels, 2 diagnostics) and given a split. Then,
for each damage below, a fresh copy is damaged and checked:

* ``verify``: ``factory info --verify`` (or the library call behind it) must report it;
* every downstream reader (processing steps, training data loading, baselines, replay) must
  refuse it with a user-facing error (a FactoryError: one ``error:`` line on the CLI); a reader
  that returns output compares it bit for bit with the same reader on the clean store, and a
  difference is a *silently wrong* result, the one outcome that must never happen.

    python benchmarks/fault_injection.py [--samples 32] [--chunk 4] [--cli] [--json]

``--cli`` runs ``factory info --verify`` as a subprocess for every damage (slower).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from factory.config import load_config  # noqa: E402
from factory.engine import prepare_store, run_block  # noqa: E402
from factory.errors import FactoryError  # noqa: E402
from factory.store import DatasetStore  # noqa: E402


# -- damages: (name, function(store path)) ------------------------------------------------
def _chunk(path: Path, array: str, k: int) -> Path:
    """The file of chunk ``k`` (along samples) of ``array`` (default v3 key encoding)."""
    if k < 0:
        k += max(int(e.name) for e in os.scandir(path / array / "c")) + 1
    root = path / array / "c" / str(k)
    while root.is_dir():
        root = root / "0"
    return root


def _flip(path: Path, array: str, k: int = 1) -> None:
    f = _chunk(path, array, k)
    raw = bytearray(f.read_bytes())
    raw[len(raw) // 2] ^= 0x5A
    f.write_bytes(bytes(raw))


def _delete(path: Path, array: str, k: int = 1) -> None:
    _chunk(path, array, k).unlink()


def _truncate(path: Path, array: str, k: int = 1, keep: float = 0.5) -> None:
    f = _chunk(path, array, k)
    raw = f.read_bytes()
    f.write_bytes(raw[: int(len(raw) * keep)])


def _swap(path: Path, array: str, a: int = 1, b: int = 2) -> None:
    fa, fb = _chunk(path, array, a), _chunk(path, array, b)
    da, db = fa.read_bytes(), fb.read_bytes()
    fa.write_bytes(db)
    fb.write_bytes(da)


def _copy(path: Path, array: str, src: int = 0, dst: int = 2) -> None:
    _chunk(path, array, dst).write_bytes(_chunk(path, array, src).read_bytes())


def _edit_root(path: Path, fn: Callable[[dict], None]) -> None:
    meta = json.loads((path / "zarr.json").read_text())
    fn(meta["attributes"]["factory"])
    (path / "zarr.json").write_text(json.dumps(meta))


def _edit_array_meta(path: Path, array: str, fn: Callable[[dict], None]) -> None:
    f = path / array / "zarr.json"
    meta = json.loads(f.read_text())
    fn(meta)
    f.write_text(json.dumps(meta))


def _rewrite(path: Path, array: str, fn: Callable[[np.ndarray], np.ndarray]) -> None:
    """A foreign writer: new values with valid checksums (only the digests can tell)."""
    import zarr

    arr = zarr.open_array(str(path / array), mode="r+")
    arr[:] = fn(arr[:])


def _set(meta: dict, key: str, value) -> None:
    meta[key] = value


DAMAGES: list[tuple[str, Callable[[Path], None]]] = [
    ("flip byte: images chunk", lambda p: _flip(p, "images")),
    ("flip byte: params chunk", lambda p: _flip(p, "params/x0")),
    ("flip byte: diagnostics chunk", lambda p: _flip(p, "diagnostics/total")),
    ("flip byte: done chunk", lambda p: _flip(p, "done")),
    ("flip byte: digest table chunk", lambda p: _flip(p, "integrity/chunk_crc32c")),
    ("flip byte: x coordinate", lambda p: _flip(p, "x", 0)),
    ("flip byte: y coordinate", lambda p: _flip(p, "y", 0)),
    ("flip byte: sample index", lambda p: _flip(p, "sample", 0)),
    ("flip byte: split", lambda p: _flip(p, "split", 0)),
    ("delete: images chunk", lambda p: _delete(p, "images")),
    ("delete: last images chunk", lambda p: _delete(p, "images", -1)),
    ("delete: params chunk", lambda p: _delete(p, "params/sigma1")),
    ("delete: diagnostics chunk", lambda p: _delete(p, "diagnostics/peak")),
    ("delete: done chunk", lambda p: _delete(p, "done")),
    ("delete: digest table chunk", lambda p: _delete(p, "integrity/chunk_crc32c")),
    ("delete: x coordinate", lambda p: _delete(p, "x", 0)),
    ("delete: sample index", lambda p: _delete(p, "sample", 0)),
    ("delete: split", lambda p: _delete(p, "split", 0)),
    ("truncate: images chunk", lambda p: _truncate(p, "images")),
    ("truncate: params chunk", lambda p: _truncate(p, "params/amp0")),
    ("truncate: images chunk to 0 bytes", lambda p: _truncate(p, "images", keep=0.0)),
    ("truncate: y coordinate", lambda p: _truncate(p, "y", 0)),
    ("swap: images chunks", lambda p: _swap(p, "images")),
    ("swap: params chunks", lambda p: _swap(p, "params/y0")),
    ("swap: diagnostics chunks", lambda p: _swap(p, "diagnostics/total")),
    ("swap: digest table rows", lambda p: _swap(p, "integrity/chunk_crc32c")),
    ("copy: images chunk over another", lambda p: _copy(p, "images")),
    ("copy: params chunk over another", lambda p: _copy(p, "params/amp1")),
    ("copy: images and params chunk together", lambda p: (_copy(p, "images"), _copy(p, "params/x0"))),
    ("rewrite: images chunk values (valid checksum)", lambda p: _rewrite(p, "images", lambda a: a[::-1])),
    ("rewrite: x coordinate values", lambda p: _rewrite(p, "x", lambda a: a * 2)),
    ("rewrite: split codes", lambda p: _rewrite(p, "split", lambda a: np.zeros_like(a))),
    ("metadata: n_samples smaller", lambda p: _edit_root(p, lambda m: _set(m, "n_samples", m["n_samples"] // 2))),
    ("metadata: n_samples larger", lambda p: _edit_root(p, lambda m: _set(m, "n_samples", m["n_samples"] * 2))),
    ("metadata: n_samples removed", lambda p: _edit_root(p, lambda m: m.pop("n_samples"))),
    ("metadata: chunk changed", lambda p: _edit_root(p, lambda m: _set(m, "chunk", m["chunk"] * 2))),
    ("metadata: chunk 0", lambda p: _edit_root(p, lambda m: _set(m, "chunk", 0))),
    ("metadata: schema_version a string", lambda p: _edit_root(p, lambda m: _set(m, "schema_version", "2"))),
    ("metadata: extra name in param_names", lambda p: _edit_root(p, lambda m: m["param_names"].append("ghost"))),
    ("metadata: name removed from param_names", lambda p: _edit_root(p, lambda m: m["param_names"].pop())),
    ("metadata: image_dims renamed", lambda p: _edit_root(p, lambda m: _set(m, "image_dims", ["sample", "a", "b"]))),
    ("metadata: images zarr.json deleted", lambda p: (p / "images" / "zarr.json").unlink()),
    ("metadata: images shape edited", lambda p: _edit_array_meta(p, "images", lambda m: _set(m, "shape", [8, 32, 32]))),
    ("metadata: root zarr.json not JSON", lambda p: (p / "zarr.json").write_text("{not json")),
    ("metadata: root zarr.json deleted", lambda p: (p / "zarr.json").unlink()),
]


# -- readers: each returns a dict of arrays (its output) or raises --------------------------
def _read_preprocess(path: Path, work: Path) -> dict[str, np.ndarray]:
    from factory.processing.steps import preprocess_store

    out = work / "pre.zarr"
    shutil.rmtree(out, ignore_errors=True)
    preprocess_store([path], out, mode="scatter", chunk=8, workers=1, progress=False)
    st = DatasetStore.open(out)
    return {"images": st.images[:], **st.params(), "split": st.split_codes()}


def _read_augment(path: Path, work: Path) -> dict[str, np.ndarray]:
    from factory.processing.steps import augment_store

    out = work / "aug.zarr"
    shutil.rmtree(out, ignore_errors=True)
    augment_store(path, out, factor=2, chunk=8, workers=1, progress=False)
    st = DatasetStore.open(out)
    return {"images": st.images[:], **st.params()}


def _read_training(path: Path, work: Path) -> dict[str, np.ndarray]:
    from models.data import ChunkStream, make_split, read_labels

    st = DatasetStore.open(path)
    split = make_split(st)
    targets = read_labels(st, ["x0", "sigma0"]).astype(np.float32)
    idx = np.concatenate([split.train, split.val, split.test])
    stream = ChunkStream(str(path), idx, targets, batch_size=8, shuffle=False)
    xs, ys = zip(*((x.numpy(), y.numpy()) for x, y in stream))
    return {"x": np.concatenate(xs), "y": np.concatenate(ys), "train": split.train, "val": split.val}


def _read_baselines(path: Path, work: Path) -> dict[str, np.ndarray]:
    from models.baselines import evaluation_set, training_set

    tr = training_set(path, ["x0", "y0"])
    te = evaluation_set(path, ["x0", "y0"])
    return {"train": tr.images(), "test": te.images(), **{f"tr_{k}": v for k, v in tr.labels.items()}}


def _read_replay(path: Path, work: Path) -> dict[str, np.ndarray]:
    from models.stream.sources import ReplaySource

    src = ReplaySource(path)
    return {"frames": np.stack([np.asarray(src._load(i)) for i in range(src.n)])}


READERS: dict[str, Callable[[Path, Path], dict[str, np.ndarray]]] = {
    "process preprocess": _read_preprocess,
    "process augment": _read_augment,
    "training data": _read_training,
    "baselines": _read_baselines,
    "replay": _read_replay,
}


def clean_store(path: Path, samples: int, chunk: int) -> Path:
    """A complete store written by the engine's own block function (no Ray needed), with a split."""
    from factory.processing.steps import split_store

    cfg = load_config("blobs/tiny", [f"chunk={chunk}", "simulator.noise=0.05"], samples=samples)
    store = prepare_store(cfg, path)
    for s, e in store.blocks():
        run_block(cfg.resolved(), str(store.path), s, e)
    split_store(path, fractions=(0.6, 0.2, 0.2), seed=1)
    return path


def _verify(path: Path, cli: bool) -> tuple[bool, str]:
    """Did verify report the damage? (the CLI exits 1 listing it, or 2 with one error line)"""
    if cli:
        proc = subprocess.run([sys.executable, "-m", "factory.cli", "info", str(path), "--verify"],
                              capture_output=True, text=True, timeout=300)
        lines = [ln for ln in (proc.stdout + proc.stderr).splitlines() if "DAMAGED" in ln or ln.startswith("error:")]
        tb = "Traceback" in proc.stderr
        return proc.returncode != 0 and bool(lines) and not tb, (lines[0].strip() if lines else proc.stderr[-200:])
    try:
        damage = DatasetStore.open(path, partial=True).verify()
    except FactoryError as exc:
        return True, str(exc)
    return bool(damage), (f"{damage[0].array}: {damage[0].reason}" if damage else "nothing found")


def _same(a: dict[str, np.ndarray], b: dict[str, np.ndarray]) -> bool:
    return a.keys() == b.keys() and all(
        np.asarray(a[k]).shape == np.asarray(b[k]).shape and np.asarray(a[k]).tobytes() == np.asarray(b[k]).tobytes()
        for k in a
    )


def run(workdir: Path, samples: int = 32, chunk: int = 4, cli: bool = False,
        damages: list[tuple[str, Callable[[Path], None]]] = DAMAGES) -> dict:
    """Apply every damage to a fresh copy of one clean store; returns the tallies and details."""
    workdir = Path(workdir)
    clean = clean_store(workdir / "clean.zarr", samples, chunk)
    assert DatasetStore.open(clean).verify() == [], "the clean store must verify"
    reference = {name: fn(clean, workdir) for name, fn in READERS.items()}
    rows = []
    tally: Counter = Counter()
    for name, damage in damages:
        path = workdir / "damaged.zarr"
        shutil.rmtree(path, ignore_errors=True)
        shutil.copytree(clean, path)
        damage(path)
        detected, why = _verify(path, cli)
        outcome = {}
        for rname, reader in READERS.items():
            try:
                out = reader(path, workdir)
            except FactoryError as exc:
                outcome[rname] = "refused"
                continue
            except Exception as exc:  # noqa: BLE001 - a crash is a finding, reported as such
                outcome[rname] = f"crashed ({type(exc).__name__}: {str(exc)[:80]})"
                continue
            outcome[rname] = "identical output" if _same(out, reference[rname]) else "SILENTLY WRONG"
        tally["damages"] += 1
        tally["detected"] += detected
        tally["refused by every reader"] += all(v == "refused" for v in outcome.values())
        tally["silently wrong"] += sum(v == "SILENTLY WRONG" for v in outcome.values())
        tally["crashed"] += sum(v.startswith("crashed") for v in outcome.values())
        rows.append({"damage": name, "verify": why if detected else "MISSED", "readers": outcome})
    return {"tally": dict(tally), "kinds": len({n.split(":")[0] for n, _ in damages}), "readers": list(READERS),
            "rows": rows}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--samples", type=int, default=32)
    ap.add_argument("--chunk", type=int, default=4)
    ap.add_argument("--cli", action="store_true", help="run `factory info --verify` as a subprocess per damage")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        res = run(Path(tmp), args.samples, args.chunk, cli=args.cli)
    res["wall_s"] = round(time.perf_counter() - t0, 1)
    if args.json:
        print(json.dumps(res, indent=2))
        return
    for r in res["rows"]:
        bad = {k: v for k, v in r["readers"].items() if v != "refused"}
        print(f"{r['damage']:<48} verify: {r['verify'][:70]}" + (f"  NOT REFUSED: {bad}" if bad else ""))
    t = res["tally"]
    print(f"\n{t['damages']} damages ({res['kinds']} kinds) x {len(res['readers'])} readers in {res['wall_s']} s "
          f"(load {os.getloadavg()[0]:.1f}): detected by verify {t['detected']}/{t['damages']}, "
          f"refused by every reader {t['refused by every reader']}/{t['damages']}, "
          f"silently wrong outputs {t['silently wrong']}, crashes {t['crashed']}")


if __name__ == "__main__":
    main()
