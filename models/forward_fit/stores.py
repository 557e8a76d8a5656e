"""Forward fitting of images held in a store: the MSFT settings, radius range and detector frame
are found in the store or, for a processed store, in its lineage."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from factory.errors import StoreError
from factory.outputs import ResultFolder
from factory.store import Split

from .fig4b import forward_fit, jsonable
from .model import QUAT, ForwardModel
from .simplex import FitSettings


def msft_config_of_store(store) -> dict[str, Any] | None:
    """The ``simulator:`` section of the MSFT store a (processed) store was made from (following lineage)."""
    from factory.store import DatasetStore

    todo, seen = [store], set()
    while todo:
        st = todo.pop()
        cfg = st.meta.get("config", {})
        if isinstance(cfg, dict) and cfg.get("kind") == "msft":
            return cfg.get("simulator")
        for src in st.meta.get("lineage", []):
            p = src.get("path")
            if p and p not in seen:
                seen.add(p)
                try:
                    todo.append(DatasetStore.open(p))
                except StoreError:
                    continue
    return None


def forward_fit_store(store: str | Path, out: str | Path | None = None, *, n: int = 5,
                      indices: list[int] | None = None, settings: FitSettings | None = None,
                      config: Any = None, shape: str = "icosahedron", network: str | Path | None = None,
                      progress: bool = False, executor=None) -> dict[str, Any]:
    """Fit ``n`` images (the test split first) of an MSFT store, raw or processed with ``scatter``."""
    from factory.store import DatasetStore

    ds = DatasetStore.open(store)
    missing = [k for k in ["radius", *QUAT] if k not in ds.param_names]
    if missing:
        raise StoreError(f"{ds.path}: no label(s) {missing}; forward fitting needs a scattering store (radius, q0..q3)")
    cfg = config if config is not None else msft_config_of_store(ds)
    if cfg is None:
        raise StoreError(f"{ds.path}: cannot find the MSFT simulator settings in the store or its lineage; pass --config")
    pre = _preprocessing(ds)
    coords = (pre.frame_coords() or None) if pre is not None else None
    if indices is None:
        done = ds.done_mask()
        split = ds.split_codes()
        test = done & (split == Split.TEST) if split is not None else np.zeros_like(done)
        pool = np.flatnonzero(test) if test.any() else np.flatnonzero(done)
        indices = pool[:n].tolist()
    idx = np.asarray(indices, dtype=np.int64)
    if len(idx) == 0 or idx.max() >= ds.n_samples:
        raise StoreError(f"{ds.path}: no such samples {indices} (the store has {ds.n_samples})")
    images = np.asarray(ds.images.get_orthogonal_selection((idx,)), dtype=np.float64)
    p = ds.params(["radius", *QUAT])
    truths = {k: v[idx] for k, v in p.items()}
    rr = tuple(_radius_range(ds) or (cfg.get("radius_nm") if isinstance(cfg, dict) else None) or (30.0, 160.0))
    model = ForwardModel(cfg, shape=shape, preprocessing=pre, coords=coords, radius_range=rr)
    rep = forward_fit(images, model, settings, truths=truths, out=out, network=network, progress=progress,
                      executor=executor)
    rep["store"] = str(ds.path)
    rep["indices"] = idx.tolist()
    if out is not None:
        ResultFolder(out).write_text("forward_fit.json", json.dumps(rep, indent=1, default=jsonable))
    return rep


def _radius_range(ds):
    """The radius range the store's simulator sampled (its attributes, else its sources')."""
    from factory.store import DatasetStore

    sim = ds.meta.get("simulator")
    if isinstance(sim, dict) and sim.get("radius_range_nm"):
        return sim["radius_range_nm"]
    if ds.meta.get("radius_range_nm"):
        return ds.meta["radius_range_nm"]
    for src in ds.meta.get("lineage", []):
        try:
            st = DatasetStore.open(src.get("path"))
        except (StoreError, TypeError):
            continue
        v = _radius_range(st)
        if v is not None:
            return v
    return None


def _preprocessing(ds):
    """The store's preprocessing description (None: raw images); StoreError if it is not one."""
    from factory.processing.description import DescriptionError, parse

    pre = ds.meta.get("preprocessing")
    try:
        return parse(pre) if pre else None
    except DescriptionError as exc:
        raise StoreError(f"{ds.path}: {exc}; forward fitting applies the store's preprocessing") from None


__all__ = ["forward_fit_store", "msft_config_of_store"]
