"""The image sets every baseline method is fitted and scored on: selected samples of a store with
their labels (training: outside the test split; evaluation: the test split, never interpolated)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from factory.errors import StoreError
from factory.store import DatasetStore, Split


@dataclass
class ImageSet:
    """Selected samples of a store with their labels."""

    path: str
    indices: np.ndarray
    labels: dict[str, np.ndarray]
    shape: tuple[int, ...]
    which: str = ""

    def __len__(self) -> int:
        return len(self.indices)

    def images(self) -> np.ndarray:
        st = DatasetStore.open(self.path)
        return np.asarray(st.images.get_orthogonal_selection((np.asarray(self.indices),)), dtype=np.float32)


def check_labels(st: DatasetStore, labels: list[str], role: str) -> None:
    missing = [n for n in labels if n not in st.param_names]
    if missing:
        raise StoreError(f"{role} store {st.path} has no label(s) {missing} (it has {st.param_names}); "
                         "choose --label from those, or use a store that carries the labels")


def training_set(path: str | Path, labels: list[str], indices: np.ndarray | None = None) -> ImageSet:
    """Done samples outside the store's test split (train + validation), or the given ``indices``."""
    st = DatasetStore.open(path)
    check_labels(st, labels, "training")
    done = st.done_mask()
    split = st.split_codes()
    if indices is not None:
        idx = np.asarray(indices, dtype=np.int64)
        if len(idx) and (idx.min() < 0 or idx.max() >= st.n_samples):
            raise StoreError(f"{st.path}: sample indices must lie in 0..{st.n_samples - 1}")
        which = f"{len(idx)} given samples"
    else:
        idx = np.flatnonzero(done & (split != Split.TEST) if split is not None else done)
        which = "samples outside the test split" if split is not None else "all done samples"
    if len(idx) < 2:
        raise StoreError(f"{st.path}: {len(idx)} done training samples (outside the test split); need at least 2")
    p = _finite_labels(st, labels, idx, "training")
    return ImageSet(str(st.path), idx, p, tuple(st.images.shape[1:]), which)


def evaluation_set(path: str | Path, labels: list[str], *, same_as_train: bool = False,
                   indices: np.ndarray | None = None) -> ImageSet:
    """The test split (all done samples of a separate store without one); never interpolated samples."""
    st = DatasetStore.open(path)
    check_labels(st, labels, "test")
    done = st.done_mask()
    split = st.split_codes()
    if indices is not None:
        idx, which = np.asarray(indices, dtype=np.int64), f"{len(indices)} given samples"
    elif split is not None and (done & (split == Split.TEST)).any():
        idx, which = np.flatnonzero(done & (split == Split.TEST)), "the test split"
    elif same_as_train:
        raise StoreError(f"{st.path}: the training store has no test split to score on; pass a separate test store "
                         "or split it (factory process split STORE --split 0.8,0.1,0.1)")
    else:
        idx, which = np.flatnonzero(done), "all done samples"
    if "interpolated" in st.param_names:
        interp = st.params(["interpolated"])["interpolated"][idx] > 0.5
        idx = idx[~interp]
    if len(idx) == 0:
        raise StoreError(f"{st.path}: no computed (non-interpolated) done samples to test on ({which})")
    if idx.min() < 0 or idx.max() >= st.n_samples:
        raise StoreError(f"{st.path}: sample indices must lie in 0..{st.n_samples - 1}")
    return ImageSet(str(st.path), idx, _finite_labels(st, labels, idx, "test"), tuple(st.images.shape[1:]), which)


def _finite_labels(st: DatasetStore, labels: list[str], idx: np.ndarray, role: str) -> dict[str, np.ndarray]:
    p = st.params(labels)
    out = {n: np.asarray(p[n][idx], dtype=np.float64) for n in labels}
    for n, v in out.items():
        bad = np.flatnonzero(~np.isfinite(v))
        if len(bad):
            raise StoreError(f"{role} store {st.path}: {len(bad)} of {len(v)} samples have no value for label {n!r} "
                             f"(NaN; first: sample {int(idx[bad[0]])}); label them or leave them out")
    return out


def check_shapes(train: ImageSet, *others: ImageSet) -> None:
    for o in others:
        if tuple(o.shape) != tuple(train.shape):
            raise StoreError(f"image sizes differ: {o.path} has {' x '.join(map(str, o.shape))} images but the training "
                             f"store {train.path} has {' x '.join(map(str, train.shape))}; preprocess both the same "
                             "way (factory process preprocess ... --mode pmd2d)")


__all__ = ["ImageSet", "check_labels", "check_shapes", "evaluation_set", "training_set"]
