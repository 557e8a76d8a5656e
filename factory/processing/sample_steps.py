"""The steps that make new samples from computed ones: focal-volume averaging and interpolation.

Both read TDSE (or any) stores and write a new store with lineage through the block runner
(see :mod:`factory.processing.steps`); the block functions are module-level callables
(picklable, for Ray and Dask workers).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import StoreError
from ..simulators import rng_for
from ..store import DatasetStore, StoreLike, check_memory_for
from . import focal, interpolate
from .runner import StepReport, open_or_create, run_blocks
from .sources import Sources, _create, read_images


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
    try:
        interpolate.check_axes(list(axes))
    except ValueError as exc:
        raise StoreError(str(exc)) from None
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
        try:
            targets = interpolate.sample_inside_hull(points, samples, rng_for(seed, 0, 3))
        except ValueError as exc:  # degenerate source points
            raise StoreError(str(exc)) from None
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
