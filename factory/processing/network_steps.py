"""The steps that make network-ready sets: preprocessing, augmentation and the seeded splits.

Each writes a new store with lineage through the block runner (see
:mod:`factory.processing.steps`), except :func:`split_store`, which rewrites the ``split``
array of an existing store in place.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from ..errors import StoreError
from ..simulators import Coord, rng_for
from ..store import DatasetStore, StoreLike, check_memory_for
from . import augment as aug
from . import description, preprocess
from .description import Description, DescriptionError
from .runner import StepReport, open_or_create, run_blocks
from .sources import Sources, _create, read_images
from .splits import SPLIT_NAMES, assign_splits


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
