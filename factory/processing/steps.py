"""The processing steps: each reads one or more stores and writes a new store with lineage.

Every step is a library function (a notebook can call it) that builds its output store and a
block function, then hands them to :func:`runner.run_blocks`, that is to the block runner
generation uses too (:func:`factory.compute.fill_missing_blocks`).  ``**run`` chooses where:
``executor=`` any executor (local, Ray, Dask; the output bytes are the same), else Dask's
local threads (``workers``) or a dask.distributed ``address``; ``progress`` shows a bar.
Block functions are module-level callables (picklable, for Ray and Dask workers) that read
only what their chunk needs.  Stores are local paths or URLs (``s3://...``, see
:mod:`factory.store.location`); block functions carry them as strings and each worker opens them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import dask.array as da
import numpy as np

from ..errors import StoreError
from ..simulators import Coord, rng_for
from ..store import DatasetStore, StoreLike, check_memory_for, lineage_entry
from . import augment as aug
from . import description, focal, interpolate, preprocess
from .description import Description, DescriptionError
from .runner import StepReport, open_or_create, run_blocks
from .splits import SPLIT_NAMES, assign_splits


# -- sources ---------------------------------------------------------------------------
class Sources:
    """One or more stores that must agree (kind, image axes, labels), read as one stack."""

    def __init__(self, paths: list[StoreLike]):
        if not paths:
            raise StoreError("no source store given")
        self.stores = [DatasetStore.open(p) for p in paths]  # refuses incomplete or damaged stores
        first = self.stores[0]
        for st in self.stores[1:]:
            problems = []
            if st.kind != first.kind:
                problems.append(f"kind {st.kind!r} != {first.kind!r}")
            if st.meta["image_dims"] != first.meta["image_dims"] or st.images.shape[1:] != first.images.shape[1:]:
                problems.append(f"image axes {st.meta['image_dims']}{st.images.shape[1:]} != "
                                f"{first.meta['image_dims']}{first.images.shape[1:]}")
            else:
                for name, v in st.coords().items():
                    if not np.allclose(v, first.coords()[name], rtol=1e-9, atol=0):
                        problems.append(f"different {name} grid")
            if set(st.param_names) != set(first.param_names):
                problems.append(f"labels {st.param_names} != {first.param_names}")
            if problems:
                raise StoreError(f"{st.path} does not match {first.path}: {'; '.join(problems)}")
        self.offsets = np.cumsum([0] + [st.n_samples for st in self.stores])
        self.paths = [str(st.path) for st in self.stores]

    @property
    def first(self) -> DatasetStore:
        return self.stores[0]

    @property
    def n(self) -> int:
        return int(self.offsets[-1])

    def params(self) -> dict[str, np.ndarray]:
        names = self.first.param_names
        return {k: np.concatenate([st.params([k])[k] for st in self.stores]) for k in names}

    def coords(self) -> tuple[Coord, ...]:
        g = self.first.group
        return tuple(
            Coord(d, g[d][:], g[d].attrs.get("units", ""), g[d].attrs.get("long_name", ""))
            for d in self.first.meta["image_dims"][1:]
        )

    def lineage(self) -> list[dict[str, Any]]:
        return [{**lineage_entry(st), "lineage": st.meta.get("lineage", [])} for st in self.stores]

    def hashes(self) -> list[str]:
        return [st.config_hash for st in self.stores]

    def dask_images(self) -> da.Array:
        """The images as one Dask array; every chunk is checked against its digest when read."""
        return da.concatenate([
            da.from_array(st.images, chunks=(st.chunk, *st.images.shape[1:]), asarray=True, fancy=False)
            for st in self.stores
        ])


def read_images(paths: list[str], offsets: np.ndarray, index: np.ndarray) -> np.ndarray:
    """Images at global sample indices (sorted reads, one orthogonal selection per source)."""
    index = np.asarray(index)
    out = None
    for k, path in enumerate(paths):
        sel = (index >= offsets[k]) & (index < offsets[k + 1])
        if not sel.any():
            continue
        arr = DatasetStore.cached(path).images
        local = index[sel] - offsets[k]
        order = np.argsort(local)
        block = arr.get_orthogonal_selection((local[order],))
        if out is None:
            out = np.empty((len(index), *arr.shape[1:]), dtype=arr.dtype)
        tmp = np.empty_like(block)
        tmp[order] = block
        out[np.flatnonzero(sel)] = tmp
    return out


def _create(out, h, *, kind, n, chunk, coords, params, diags, config, lineage, extra, overwrite, split=None):
    arrays = {"split": (np.asarray(split, dtype=np.int8), {"codes": SPLIT_NAMES})} if split is not None else None
    return DatasetStore.create(
        out, kind=kind, n_samples=n, chunk=chunk, coords=coords, param_names=params,
        diagnostic_names=diags, config=config, config_hash=h, lineage=lineage,
        extra_attrs=extra, sample_arrays=arrays, overwrite=overwrite,
    )


# -- focal-volume averaging ------------------------------------------------------------
@dataclass(frozen=True)
class FocalBlock:
    path: str
    ladder: int
    method: str
    keep: tuple[str, ...]

    def __call__(self, start: int, stop: int):
        src = DatasetStore.cached(self.path)
        n = self.ladder
        imgs = src.images[start * n: stop * n].astype(np.float64)
        imgs = imgs.reshape(stop - start, n, *imgs.shape[1:])
        p = {k: v.reshape(stop - start, n) for k, v in src.params(rows=slice(start * n, stop * n)).items()}
        out = np.empty((stop - start, *imgs.shape[2:]))
        tails = np.empty(stop - start)
        for g in range(stop - start):
            x = p["intensity"][g] / p["I0"][g]
            out[g] = focal.focal_average(imgs[g], x, self.method)
            tails[g] = focal.tail_fraction(imgs[g], x, self.method)
        labels = {k: p[k][:, 0] for k in self.keep}
        return out.astype(np.float32), labels, {"tail_fraction": tails}


def focal_average_store(source: StoreLike, out: StoreLike, *, method: str = "product", chunk: int | None = None,
                        overwrite: bool = False, **run) -> StepReport:
    """Focal-volume average every intensity ladder of a TDSE store (eqs. 5-6).

    Each ladder of ``n`` intensities ``I_k = I0 (k + 1) / n`` (one geometry) becomes one
    sample with the ladder's labels but ``intensity`` and ``ladder_index``; the diagnostic
    ``tail_fraction`` estimates the part of the integral below the lowest intensity, which
    is left out.

    Parameters
    ----------
    source : str or os.PathLike
        A complete TDSE store generated with ``simulator.sampling.ladder >= 2`` (labels
        ``intensity``, ``I0``, ``ladder_index``; samples in whole ladders).
    out : str or os.PathLike
        The new store (local path or store URL); an existing one made by the same step and
        arguments is resumed.
    method : {"product", "trapezoid"}, optional
        The quadrature: the product trapezoidal rule (exact for a piecewise-linear P), or the
        paper's trapezoidal rule on P(x_k) w(x_k).
    chunk : int, optional
        Output samples (ladders) per chunk; default whole source chunks, at least 8 ladders.
    overwrite : bool, optional
        Replace an existing store at ``out`` instead of resuming it (or refusing it, when
        another step or other arguments made it).
    **run
        Where the chunks run (``runner.run_blocks``): ``executor=`` any executor
        (local, Ray, Dask; not closed), else ``address=`` a dask.distributed scheduler or
        ``workers=`` Dask local threads; ``progress=`` shows a progress bar (default True).

    Returns
    -------
    BlockReport
        What the step did: samples done, chunks computed and skipped, wall, compute and
        write seconds, where it ran.

    Raises
    ------
    StoreError
        The source is missing, incomplete or damaged, or holds no complete intensity ladders
        (or a label varies inside one); ``out`` holds another step's store; a chunk failed.
    OutputError
        ``out`` is, contains or lies inside a source, or exists and is not a dataset store.
    ValueError
        An unknown ``method``.
    """
    src = Sources([source])
    st = src.first
    ladder = int(st.meta.get("simulator", {}).get("ladder", 0) or 0)
    need = {"intensity", "I0", "ladder_index"}
    if ladder < 2 or not need <= set(st.param_names):
        raise StoreError(
            f"{st.path} has no intensity ladder (need ladder >= 2 and labels {sorted(need)}); "
            "generate it with --set simulator.sampling.ladder=10"
        )
    if st.n_samples % ladder:
        raise StoreError(f"{st.path}: {st.n_samples} samples are not whole ladders of {ladder}")
    p = st.params()
    groups = st.n_samples // ladder
    k = p["ladder_index"].reshape(groups, ladder)
    i0 = p["I0"].reshape(groups, ladder)
    keep = tuple(n for n in st.param_names if n not in ("intensity", "ladder_index"))
    if not (k == np.arange(ladder)).all() or not np.allclose(i0, i0[:, :1], rtol=1e-12):
        raise StoreError(f"{st.path}: samples are not grouped in complete ladders of {ladder}")
    for name in keep:
        v = p[name].reshape(groups, ladder)
        if not np.allclose(v, v[:, :1], rtol=1e-12):
            raise StoreError(f"{st.path}: label {name!r} varies inside a ladder; not a focal-averaging set")
    x = (p["intensity"] / p["I0"]).reshape(groups, ladder)
    focal.quadrature_weights(x[0], method)  # validates the ladder and the method
    config = {"step": "focal-average", "sources": src.hashes(), "method": method, "ladder": ladder}
    if not chunk:  # whole source chunks per output chunk, at least 8 groups (a chunk write costs ~10 files)
        per = max(1, st.chunk // ladder)
        chunk = per * -(-8 // per)
    store = open_or_create(out, config, lambda h: _create(
        out, h, kind=st.kind, n=groups, chunk=chunk, coords=src.coords(), params=list(keep),
        diags=["tail_fraction"], config=config, lineage=src.lineage(),
        extra={"step": "focal-average", "simulator": st.meta.get("simulator", {}),
               "focal_average": {"method": method, "ladder": ladder, "lower_limit": "lowest ladder intensity"}},
        overwrite=overwrite), overwrite, src.paths)
    return run_blocks(store, FocalBlock(str(st.path), ladder, method, keep), "focal-average", **run)


# -- irregular-grid interpolation ------------------------------------------------------
@dataclass(frozen=True)
class InterpBlock:
    paths: tuple[str, ...]
    offsets: np.ndarray
    weights: interpolate.InterpolationWeights
    labels: dict[str, np.ndarray]

    def __call__(self, start: int, stop: int):
        rows = slice(start, stop)
        need = self.weights.sources_for(rows)
        imgs = read_images(list(self.paths), self.offsets, need)
        lookup = np.full(self.offsets[-1], -1)
        lookup[need] = np.arange(len(need))
        idx = self.weights.index[rows]
        w = self.weights.weights[rows]
        local = np.where(w != 0, lookup[idx], 0)
        out = np.einsum("mk,mk...->m...", w, imgs.astype(np.float64)[local])
        return out.astype(np.float32), {k: v[rows] for k, v in self.labels.items()}, {}


def interpolate_store(sources: list[StoreLike], out: StoreLike, *, axes: list[str], samples: int | None = None,
                      targets: np.ndarray | None = None, method: str = "linear", outside: str = "refuse",
                      seed: int = 0, chunk: int = 16, overwrite: bool = False, **run) -> StepReport:
    """New samples at ``targets`` (or ``samples`` random points inside the hull) from computed ones.

    Every new image is a weighted sum of computed images; its labels are the same weighted
    sums, with the ``axes`` labels set exactly to the target and the label ``interpolated = 1``.
    Targets outside the convex hull of the sources are never extrapolated.

    Parameters
    ----------
    sources : list of str or os.PathLike
        Complete stores that agree (kind, image axes, labels), used as one set; none may hold
        interpolated samples.
    out : str or os.PathLike
        The new store (local path or store URL); an existing one made by the same step and
        arguments is resumed.
    axes : list of str
        The labels spanning the parameter space, e.g. ``["R", "I0"]`` (each scaled to [0, 1]
        by its source range).
    samples : int, optional
        Number of targets drawn uniformly inside the hull (seeded by ``seed``); needed unless
        ``targets`` is given.
    targets : numpy.ndarray, optional
        ``(M, len(axes))`` target points in the labels' units.
    method : {"linear", "rbf"}, optional
        Barycentric weights on a Delaunay triangulation, or a thin-plate-spline RBF.
    outside : {"refuse", "flag"}, optional
        Refuse any target outside the hull, or drop those targets (their number is recorded
        as ``dropped_outside``).
    seed : int, optional
        Seed of the random targets.
    chunk : int, optional
        Samples per chunk of ``out``.
    overwrite : bool, optional
        Replace an existing store at ``out`` instead of resuming it (or refusing it, when
        another step or other arguments made it).
    **run
        Where the chunks run (``runner.run_blocks``): ``executor=`` any executor
        (local, Ray, Dask; not closed), else ``address=`` a dask.distributed scheduler or
        ``workers=`` Dask local threads; ``progress=`` shows a progress bar (default True).

    Returns
    -------
    BlockReport
        What the step did: samples done, chunks computed and skipped, wall, compute and
        write seconds, where it ran.

    Raises
    ------
    StoreError
        A source is missing, incomplete or damaged, or the sources disagree; an axis is not a
        label; the sources hold interpolated samples; neither ``samples`` nor ``targets`` is
        given; targets lie outside the hull (``outside="refuse"``) or none inside; ``out``
        holds another step's store; a chunk failed.
    OutputError
        ``out`` is, contains or lies inside a source, or exists and is not a dataset store.
    """
    src = Sources(list(sources))
    p = src.params()
    missing = [a for a in axes if a not in p]
    if missing:
        raise StoreError(f"interpolation axes {missing} are not labels of {src.first.path} ({src.first.param_names})")
    if "interpolated" in p and p["interpolated"].any():
        raise StoreError(f"{src.first.path} holds interpolated samples; interpolate from computed samples only")
    points = np.column_stack([p[a] for a in axes])
    if targets is None:
        if not samples:
            raise StoreError("give the number of samples to interpolate or the target points")
        # targets drawn twice over, then weights, indices and labels for each
        check_memory_for(samples, 8 * (6 * len(axes) + len(p) + 4), f"interpolate {src.first.path}")
        targets = interpolate.sample_inside_hull(points, samples, rng_for(seed, 0, 3))
    targets = np.asarray(targets, dtype=np.float64).reshape(-1, len(axes))
    try:
        w = interpolate.interpolation_weights(points, targets, method=method, outside=outside)
    except ValueError as exc:
        raise StoreError(str(exc)) from None
    dropped = int((~w.inside).sum())
    if dropped:  # outside='flag': keep only the inside targets, say how many were dropped
        keep = np.flatnonzero(w.inside)
        w = interpolate.InterpolationWeights(w.index[keep], w.weights[keep], w.inside[keep])
        targets = targets[keep]
    n_out = len(targets)
    if n_out == 0:
        raise StoreError("no target point lies inside the hull of the sources")
    labels = {k: np.einsum("mk,mk->m", w.weights, v[w.index]) for k, v in p.items()}
    for j, a in enumerate(axes):
        labels[a] = targets[:, j]  # exact, not rounded through the weights
    labels["interpolated"] = np.ones(n_out)
    config = {"step": "interpolate", "sources": src.hashes(), "axes": axes, "method": method,
              "outside": outside, "seed": seed, "targets_sha": _digest(targets)}
    store = open_or_create(out, config, lambda h: _create(
        out, h, kind=src.first.kind, n=n_out, chunk=min(chunk, n_out), coords=src.coords(),
        params=list(labels), diags=[], config=config, lineage=src.lineage(),
        extra={"step": "interpolate", "simulator": src.first.meta.get("simulator", {}),
               "interpolation": {"axes": axes, "method": method, "sources": src.n,
                                 "dropped_outside": dropped}},
        overwrite=overwrite), overwrite, src.paths)
    block = InterpBlock(tuple(src.paths), src.offsets, w, labels)
    return run_blocks(store, block, "interpolate", **run)


def _digest(a: np.ndarray) -> str:
    import hashlib

    return hashlib.sha256(np.ascontiguousarray(a, dtype=np.float64).tobytes()).hexdigest()


# -- network-ready preprocessing -------------------------------------------------------
@dataclass(frozen=True)
class PreprocessBlock:
    paths: tuple[str, ...]
    offsets: np.ndarray
    desc: Description
    coords: dict[str, np.ndarray]
    labels: dict[str, np.ndarray]

    def __call__(self, start: int, stop: int):
        imgs = read_images(list(self.paths), self.offsets, np.arange(start, stop))
        out = preprocess.apply_batch(self.desc, imgs, self.coords)
        return out, {k: v[start:stop] for k, v in self.labels.items()}, {}


def global_kmax(src: Sources, floor: float) -> tuple[float, float]:
    """Symmetric momentum window holding log10(P / max P) > floor in any image (a Dask reduction)."""
    images = src.dask_images()
    peak = images.max(axis=(1, 2), keepdims=True)
    mask = (images > peak * 10.0**floor).any(axis=0).compute()
    ky, kx = (c.values for c in src.coords())
    rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    if len(rows) == 0:
        raise StoreError(f"{src.first.path}: no signal above 10^{floor} of the maximum")
    return float(np.abs(ky[rows]).max()), float(np.abs(kx[cols]).max())


def preprocess_store(sources: list[StoreLike], out: StoreLike, *, mode: str, window: str = "global",
                     log_floor: float | None = None, split: tuple[float, float, float] = (0.8, 0.1, 0.1),
                     seed: int = 0, chunk: int = 32, overwrite: bool = False, **run) -> StepReport:
    """Network input (PMD 2D / 1D, scattering) with the preprocessing recorded, plus splits.

    The preprocessing description is stored in the new store's attributes (and later in
    every model card trained on it); the seeded ``split`` array (0 train, 1 validation,
    2 test) is written with it, and interpolated samples never enter the test split.

    Parameters
    ----------
    sources : list of str or os.PathLike
        Complete stores that agree (kind, image axes, labels), processed as one set.
    out : str or os.PathLike
        The new store (local path or store URL); an existing one made by the same step and
        arguments is resumed.
    mode : str
        ``"pmd2d"`` (2D momentum distributions), ``"pmd1d"`` (1D dP/dkx; both need
        ``(ky, kx)`` images) or ``"scatter"`` (scattering patterns as ``log10(I / max I)``
        on 0..1).
    window : {"global", "per-image"}, optional
        ``pmd2d``: one symmetric momentum window for the whole set (a reduction over all
        images), or each image's own.
    log_floor : float, optional
        Clipping floor in decades below the maximum (< 0); default -5 for PMDs, -6 for
        scattering.
    split : tuple of float, optional
        (train, validation, test) fractions, >= 0 and summing to 1; the test fraction is
        taken of the computed (not interpolated) samples.
    seed : int, optional
        Seed of the split.
    chunk : int, optional
        Samples per chunk of ``out``.
    overwrite : bool, optional
        Replace an existing store at ``out`` instead of resuming it (or refusing it, when
        another step or other arguments made it).
    **run
        Where the chunks run (``runner.run_blocks``): ``executor=`` any executor
        (local, Ray, Dask; not closed), else ``address=`` a dask.distributed scheduler or
        ``workers=`` Dask local threads; ``progress=`` shows a progress bar (default True).

    Returns
    -------
    BlockReport
        What the step did: samples done, chunks computed and skipped, wall, compute and
        write seconds, where it ran.

    Raises
    ------
    StoreError
        A source is missing, incomplete or damaged, or the sources disagree; the mode does
        not fit the images; an invalid ``mode``, ``window``, ``log_floor`` or ``split``; no
        signal above the floor; ``out`` holds another step's store; a chunk failed.
    OutputError
        ``out`` is, contains or lies inside a source, or exists and is not a dataset store.
    """
    src = Sources(list(sources))
    dims = src.first.meta["image_dims"][1:]
    if mode in ("pmd2d", "pmd1d") and dims != ["ky", "kx"]:
        raise StoreError(f"{src.first.path}: {mode} needs (ky, kx) images, not {dims}")
    raw_coords = {c.name: c.values for c in src.coords()}
    try:
        desc = description.build(mode, raw_coords=raw_coords, window=window, log_floor=log_floor,
                                 image_scale=src.first.meta.get("simulator", {}).get("image_scale", "intensity"),
                                 kmax=lambda floor: global_kmax(src, floor))
    except DescriptionError as exc:
        raise StoreError(str(exc)) from None
    coords = tuple(Coord(*axis) for axis in desc.output_axes())
    labels = src.params()
    computed = labels["interpolated"] == 0 if "interpolated" in labels else None
    try:
        codes = assign_splits(src.n, split, seed, computed)
    except ValueError as exc:
        raise StoreError(str(exc)) from None
    config = {"step": "preprocess", "sources": src.hashes(), "preprocessing": desc.to_dict(), "split": list(split),
              "seed": seed}

    def create(h):
        return _create(out, h, kind=src.first.kind, n=src.n, chunk=min(chunk, src.n), coords=coords,
                       params=list(labels), diags=[], config=config, lineage=src.lineage(),
                       extra={"step": "preprocess", "preprocessing": desc.to_dict(),
                              "simulator": src.first.meta.get("simulator", {}),
                              "split": {"seed": seed, "fractions": list(split), "codes": SPLIT_NAMES}},
                       overwrite=overwrite, split=codes)

    store = open_or_create(out, config, create, overwrite, src.paths)
    return run_blocks(store, PreprocessBlock(tuple(src.paths), src.offsets, desc, raw_coords, labels), "preprocess", **run)


def write_split(store: DatasetStore, codes: np.ndarray, **meta: Any) -> None:
    """(Re)write the ``split`` array (sample,) int8: 0 train, 1 validation, 2 test."""
    store.set_sample_array("split", np.asarray(codes, dtype=np.int8), {"codes": SPLIT_NAMES}, **meta)


def split_store(path: StoreLike, *, fractions: tuple[float, float, float], seed: int = 0) -> dict[str, int]:
    """(Re)assign the seeded split of an existing store in place; returns the counts.

    Parameters
    ----------
    path : str or os.PathLike
        The store (local path or store URL), opened for writing.
    fractions : tuple of float
        (train, validation, test) fractions, >= 0 and summing to 1; interpolated samples
        never enter the test split, whose fraction is taken of the computed samples.
    seed : int, optional
        Seed of the permutation.

    Returns
    -------
    dict of str to int
        Samples per split: ``{"train": ..., "validation": ..., "test": ...}``.

    Raises
    ------
    StoreError
        The store is missing or damaged, or ``fractions`` is invalid.
    """
    st = DatasetStore.open(path, mode="r+")
    p = st.params()
    computed = p["interpolated"] == 0 if "interpolated" in p else None
    try:
        codes = assign_splits(st.n_samples, fractions, seed, computed)
    except ValueError as exc:
        raise StoreError(str(exc)) from None
    write_split(st, codes, split={"seed": seed, "fractions": list(fractions), "codes": SPLIT_NAMES})
    return {SPLIT_NAMES[c]: int((codes == c).sum()) for c in SPLIT_NAMES}


def read_split(store: DatasetStore) -> np.ndarray | None:
    return store.split_codes()


# -- augmentation ----------------------------------------------------------------------
@dataclass(frozen=True)
class AugmentBlock:
    path: str
    seed: int
    source_index: np.ndarray
    filters: np.ndarray
    labels: dict[str, np.ndarray]
    detector: str | None = None
    log_floor: float = 0.0

    def __call__(self, start: int, stop: int):
        src = DatasetStore.cached(self.path)
        idx = self.source_index[start:stop]
        uniq, inv = np.unique(idx, return_inverse=True)
        imgs = src.images.get_orthogonal_selection((uniq,))[inv]
        filters = self.filters[start:stop]
        rngs = [rng_for(self.seed, i, 2) for i in range(start, stop)]
        if self.detector is None:
            out = np.stack([aug.augment(img, int(f), rng) for img, f, rng in zip(imgs, filters, rngs)])
        else:
            out = aug.through_detector(imgs, self.detector, self.log_floor, filters, rngs).astype(np.float32)
        return out, {k: v[start:stop] for k, v in self.labels.items()}, {}


def augment_store(source: StoreLike, out: StoreLike, *, factor: int = 11, seed: int = 0, only_split: str = "train",
                  detector: str | None = None, chunk: int = 64, overwrite: bool = False, **run) -> StepReport:
    """Grow a set ``factor``-fold with the 11 filters (train split only by default).

    ``detector`` (a name of :data:`factory.msft.detector_response.DETECTORS`, e.g. ``"ag-clusters"``)
    then shows every image of every split through that measured detector (valid pixels, central
    hole, saturation), so that a network trained on the set reads that detector's patterns.

    A grown sample gets ``factor`` copies through the filters ``0, 1, ..., factor - 1``
    (modulo 11; filter 0 is the identity); the other samples are copied once, unfiltered.
    The labels ``augmentation`` (filter index) and ``source_index`` are added, and every copy
    keeps its source's split.

    Parameters
    ----------
    source : str or os.PathLike
        A complete preprocessed store (``preprocess_store``).
    out : str or os.PathLike
        The new store (local path or store URL); an existing one made by the same step and
        arguments is resumed.
    factor : int, optional
        Copies of each grown sample (>= 1; 11 applies every filter once).
    seed : int, optional
        Seed of the filters' random draws (copy i draws from (seed, i)).
    only_split : {"train", "validation", "test", "all"}, optional
        Which samples are grown.
    detector : str, optional
        A measured detector model (e.g. ``"ag-clusters"``) to show every image through;
        needs a ``scatter`` store of the detector's image size.
    chunk : int, optional
        Samples per chunk of ``out``.
    overwrite : bool, optional
        Replace an existing store at ``out`` instead of resuming it (or refusing it, when
        another step or other arguments made it).
    **run
        Where the chunks run (``runner.run_blocks``): ``executor=`` any executor
        (local, Ray, Dask; not closed), else ``address=`` a dask.distributed scheduler or
        ``workers=`` Dask local threads; ``progress=`` shows a progress bar (default True).

    Returns
    -------
    BlockReport
        What the step did: samples done, chunks computed and skipped, wall, compute and
        write seconds, where it ran.

    Raises
    ------
    StoreError
        The source is missing, incomplete or damaged; ``factor < 1``; an unknown
        ``only_split``; a detector that is unknown or does not fit the store; ``out`` holds
        another step's store; a chunk failed.
    OutputError
        ``out`` is, contains or lies inside a source, or exists and is not a dataset store.
    """
    src = Sources([source])
    if detector is not None:
        try:
            aug.check_detector(detector, tuple(src.first.images.shape[1:]), src.first.meta.get("preprocessing"))
        except ValueError as exc:
            raise StoreError(f"{src.first.path}: {exc}") from None
    st = src.first
    if factor < 1:
        raise StoreError(f"augmentation factor {factor} must be >= 1")
    codes = read_split(st)
    if codes is None:
        codes = np.zeros(st.n_samples, dtype=np.int8)
    names = {v: k for k, v in SPLIT_NAMES.items()}
    if only_split not in (*names, "all"):
        raise StoreError(f"only_split {only_split!r}: choose train, validation, test or all")
    grow = np.ones(st.n_samples, bool) if only_split == "all" else codes == names[only_split]
    check_memory_for(int(grow.sum()) * factor + int((~grow).sum()), 8 * (len(st.param_names) + 6),
                     f"augment {st.path} x{factor}")
    copies = np.where(grow, factor, 1)
    source_index = np.repeat(np.arange(st.n_samples), copies)
    k_in = np.concatenate([np.arange(c) for c in copies])
    filters = (k_in % len(aug.FILTERS)).astype(np.int64)
    labels = {k: v[source_index] for k, v in st.params().items()}
    labels["augmentation"] = filters.astype(np.float64)
    labels["source_index"] = source_index.astype(np.float64)
    config = {"step": "augment", "sources": src.hashes(), "factor": factor, "seed": seed, "only_split": only_split}
    if detector is not None:  # absent otherwise: sets made before the option keep their config (and hash)
        config["detector"] = detector

    def create(h):
        return _create(out, h, kind=st.kind, n=len(source_index), chunk=min(chunk, len(source_index)),
                       coords=src.coords(), params=list(labels), diags=[], config=config, lineage=src.lineage(),
                       extra={"step": "augment", "preprocessing": st.meta.get("preprocessing"),
                              "simulator": st.meta.get("simulator", {}),
                              "augmentation": {"filters": aug.FILTER_NAMES, "factor": factor, "seed": seed,
                                               **({"detector": detector} if detector else {})}},
                       overwrite=overwrite, split=codes[source_index])

    store = open_or_create(out, config, create, overwrite, src.paths)
    return run_blocks(store, AugmentBlock(str(st.path), seed, source_index, filters, labels, detector,
                                          float((st.meta.get("preprocessing") or {}).get("log_floor", 0.0))), "augment", **run)
