"""Training data straight from (processed) Zarr dataset stores.

- :func:`make_split`: train / validation / test sample indices, only samples marked done.
  The store's ``split`` array (0 train, 1 validation, 2 test) is used when present; otherwise a
  seeded permutation (default 80/20) that is recorded in the model card.
- :class:`LabelScaling`: per-label affine scaling (``minmax`` to [0, 1] as in Stielow et al., MLST 2020, for R
  and q0, ``standard``, or ``none``) kept as plain numbers.
- :class:`ChunkStream`: a torch ``IterableDataset`` that reads whole store chunks (a window of
  a few at a time, the next one prefetched in a thread), shuffles the chunk order and the
  samples inside each window every epoch, and gives each data-parallel rank its own chunks.
  Training streams give every rank the same number of full batches (a rank that runs short
  cycles over its chunks), which data-parallel training needs.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from typing import Any, Iterator

import numpy as np
import torch

from factory.errors import StoreError
from factory.store import DatasetStore

TRAIN, VAL, TEST = 0, 1, 2


@dataclass
class Split:
    train: np.ndarray
    val: np.ndarray
    test: np.ndarray
    source: str  # "store" (the store's split array) or "seeded-permutation"
    seed: int | None = None
    val_fraction: float | None = None

    def describe(self) -> dict[str, Any]:
        return {"source": self.source, "seed": self.seed, "val_fraction": self.val_fraction,
                "n_train": int(len(self.train)), "n_val": int(len(self.val)), "n_test": int(len(self.test))}

    def held_out(self) -> np.ndarray:
        """The samples to score a model on: the test split, else the validation split."""
        return self.test if len(self.test) else self.val


def make_split(store: DatasetStore, val_fraction: float = 0.2, seed: int = 0,
               max_train: int | None = None) -> Split:
    """Indices of done samples per split; ``max_train`` keeps a seeded subset of the training set."""
    done = store.done_mask()
    if not done.any():
        raise StoreError(f"{store.path}: no sample is marked done; generate or resume the store first")
    split = store.split_codes()
    if split is not None:
        idx = [np.flatnonzero(done & (split == k)) for k in (TRAIN, VAL, TEST)]
        out = Split(*idx, source="store")
    else:
        pool = np.flatnonzero(done)
        perm = np.random.default_rng(seed).permutation(pool)
        n_val = max(1, int(round(val_fraction * len(pool))))
        if len(pool) - n_val < 1:
            raise StoreError(f"{store.path}: only {len(pool)} done samples; too few to split")
        out = Split(np.sort(perm[n_val:]), np.sort(perm[:n_val]), np.zeros(0, dtype=np.int64),
                    source="seeded-permutation", seed=seed, val_fraction=val_fraction)
    if len(out.train) == 0:
        raise StoreError(f"{store.path}: the training split is empty")
    if len(out.val) == 0:
        out.val = out.test
    if max_train is not None and max_train < len(out.train):
        keep = np.random.default_rng([seed, 1]).permutation(out.train)[:max_train]
        out.train = np.sort(keep)
    return out


def read_labels(store: DatasetStore, names: list[str]) -> np.ndarray:
    """(n_samples, len(names)) float64 labels; a clear error names a missing label."""
    missing = [n for n in names if n not in store.param_names]
    if missing:
        raise StoreError(f"{store.path}: no label(s) {missing}; the store has {store.param_names}")
    p = store.params(names)
    return np.column_stack([p[n] for n in names]).astype(np.float64)


@dataclass
class LabelScaling:
    """``scaled = (y - offset) / scale`` per label."""

    names: list[str]
    methods: list[str]
    offset: list[float]
    scale: list[float]

    @classmethod
    def fit(cls, names: list[str], y: np.ndarray, method: str | dict[str, str] = "minmax") -> "LabelScaling":
        methods, offset, scale = [], [], []
        for j, n in enumerate(names):
            m = method.get(n, "none") if isinstance(method, dict) else method
            col = y[:, j]
            if m == "minmax":
                lo, hi = float(col.min()), float(col.max())
                o, s = lo, (hi - lo) if hi > lo else 1.0
            elif m == "standard":
                o, s = float(col.mean()), float(col.std()) or 1.0
            elif m == "none":
                o, s = 0.0, 1.0
            else:
                raise ValueError(f"label scaling {m!r} for {n!r}: choose minmax, standard or none")
            methods.append(m)
            offset.append(o)
            scale.append(s)
        return cls(list(names), methods, offset, scale)

    def transform(self, y):
        return (np.asarray(y, dtype=np.float64) - np.asarray(self.offset)) / np.asarray(self.scale)

    def inverse(self, y):
        return np.asarray(y, dtype=np.float64) * np.asarray(self.scale) + np.asarray(self.offset)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "LabelScaling":
        return cls(list(d["names"]), list(d["methods"]), [float(v) for v in d["offset"]], [float(v) for v in d["scale"]])


def class_index(values: np.ndarray, edges: list[float]) -> np.ndarray:
    """Class of each value for bins ``[e0, e1), [e1, e2), ..., [e_{n-1}, e_n]`` (ends clipped)."""
    k = np.searchsorted(np.asarray(edges, dtype=np.float64), values, side="right") - 1
    return np.clip(k, 0, len(edges) - 2).astype(np.int64)


def image_stats(store: DatasetStore, indices: np.ndarray, max_images: int = 512) -> tuple[float, float]:
    """Mean and standard deviation of (the first ``max_images``) training images."""
    sel = np.asarray(indices[:max_images], dtype=np.int64)
    if len(sel) == 0:
        return 0.0, 1.0
    x = np.asarray(store.images[: int(sel[-1]) + 1], dtype=np.float64)[sel]
    return float(x.mean()), float(x.std()) or 1.0


@dataclass
class ChunkStream(torch.utils.data.IterableDataset):
    """Batches ``(images, targets)`` read chunk by chunk from a store.

    ``targets`` is an (n_samples, k) float32 array (scaled labels) or (n_samples,) int64 classes,
    indexed by sample number.  ``steps`` fixes the batches per epoch on every rank (training);
    ``None`` yields each of this rank's samples once (evaluation).  ``path``: the store's local
    path or URL (``s3://...``); each worker opens it itself (:meth:`DatasetStore.open`).
    """

    path: str
    indices: np.ndarray
    targets: np.ndarray
    batch_size: int
    shuffle: bool = True
    seed: int = 0
    rank: int = 0
    world_size: int = 1
    window_chunks: int = 4
    steps: int | None = None
    epoch: int = 0
    augment: Any = None  # callable (x, y, rng) -> (x, y) applied to training windows
    _store: Any = field(default=None, repr=False)

    def __post_init__(self):
        super().__init__()
        self.indices = np.asarray(self.indices, dtype=np.int64)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    @staticmethod
    def steps_per_epoch(n_samples: int, batch_size: int, world_size: int) -> int:
        return max(1, -(-n_samples // (batch_size * world_size)))

    def _chunks(self) -> list[np.ndarray]:
        """This rank's chunks for this epoch, each as the array of wanted sample indices."""
        store = self.store
        by_chunk: dict[int, list[int]] = {}
        for i in self.indices:
            by_chunk.setdefault(int(i) // store.chunk, []).append(int(i))
        order = sorted(by_chunk)
        rng = np.random.default_rng([self.seed, self.epoch])
        if self.shuffle:
            order = [order[k] for k in rng.permutation(len(order))]
        mine = order[self.rank :: self.world_size] or order[self.rank % len(order) :: len(order)]
        return [np.asarray(by_chunk[c]) for c in mine]

    @property
    def store(self) -> DatasetStore:
        if self._store is None:
            self._store = DatasetStore.open(self.path)
        return self._store

    def _read(self, chunks: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        imgs = []
        for want in chunks:
            c0 = int(want[0]) // self.store.chunk * self.store.chunk
            block = np.asarray(self.store.images[c0 : min(c0 + self.store.chunk, self.store.n_samples)])
            imgs.append(block[want - c0])
        idx = np.concatenate(chunks)
        return np.concatenate(imgs).astype(np.float32, copy=False), self.targets[idx]

    def _windows(self, chunks: list[np.ndarray], cycle: bool) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        groups = [chunks[i : i + self.window_chunks] for i in range(0, len(chunks), self.window_chunks)]
        if not groups:
            return
        with ThreadPoolExecutor(1) as pool:
            k = 0
            fut = pool.submit(self._read, groups[0])
            while True:
                x, y = fut.result()
                k += 1
                if k < len(groups) or cycle:
                    fut = pool.submit(self._read, groups[k % len(groups)])
                yield x, y
                if k >= len(groups) and not cycle:
                    return

    def __iter__(self):
        rng = np.random.default_rng([self.seed, self.epoch, self.rank, 7])
        chunks = self._chunks()
        bs = self.batch_size
        if self.steps is None:  # evaluation: every sample of this rank once, in order
            for x, y in self._windows(chunks, cycle=False):
                for s in range(0, len(x), bs):
                    yield torch.from_numpy(x[s : s + bs]), torch.from_numpy(y[s : s + bs])
            return
        todo = self.steps
        carry_x, carry_y = None, None
        for x, y in self._windows(chunks, cycle=True):
            if self.augment is not None:
                x, y = self.augment(x, y, rng)
            if self.shuffle:
                p = rng.permutation(len(x))
                x, y = x[p], y[p]
            if carry_x is not None:
                x, y = np.concatenate([carry_x, x]), np.concatenate([carry_y, y])
            n_full = len(x) // bs
            for b in range(n_full):
                yield torch.from_numpy(x[b * bs : (b + 1) * bs]), torch.from_numpy(y[b * bs : (b + 1) * bs])
                todo -= 1
                if todo == 0:
                    return
            carry_x, carry_y = x[n_full * bs :], y[n_full * bs :]


QUAT = ["q0", "q1", "q2", "q3"]


def _qz90() -> np.ndarray:
    return np.array([np.cos(np.pi / 4), 0.0, 0.0, np.sin(np.pi / 4)])


def d4_image(x: np.ndarray, rot: int, flip: bool) -> np.ndarray:
    """The detector image of the particle rotated by ``rot`` x 90 deg about the beam (after a
    180 deg turn about x when ``flip``), for images ``[..., qy, qx]`` with q = 0 at pixel (H/2, W/2)."""
    if flip:
        x = np.roll(x[..., ::-1], 1, axis=-1)
    for _ in range(rot % 4):
        x = np.roll(np.rot90(x, 3, axes=(-2, -1)), 1, axis=-1)
    return np.ascontiguousarray(x)


def d4_quaternion(rot: int, flip: bool) -> np.ndarray:
    """The rotation (scalar-first quaternion) that :func:`d4_image` applies to the particle."""
    from factory.geometry import multiply

    g = np.array([0.0, 1.0, 0.0, 0.0]) if flip else np.array([1.0, 0.0, 0.0, 0.0])
    for _ in range(rot % 4):
        g = multiply(_qz90(), g)
    return g


@dataclass
class D4Augment:
    """Exact symmetry augmentation of scattering images (training only, labels follow).

    Turning the particle about the beam axis (z) by 90 deg turns its wide-angle pattern by 90
    deg, and a 180 deg turn about x (for a centrosymmetric body such as the icosahedron) mirrors
    it; both leave the Ewald sphere and the absorption along z unchanged, so each of the 8
    images of the dihedral group D4 is the exact pattern of the correspondingly rotated
    particle (checked against the MSFT simulator in the tests).  The quaternion label becomes
    ``g q`` projected back into the fundamental domain.
    """

    labels: list[str]
    scaling: dict[str, Any]
    group: str = "I"

    def __call__(self, x: np.ndarray, y: np.ndarray, rng: np.random.Generator):
        from factory.geometry import multiply, project_to_fundamental

        sc = LabelScaling.from_dict(self.scaling)
        iq = [self.labels.index(q) for q in QUAT]
        yy = sc.inverse(y)
        k = rng.integers(0, 8, len(x))
        x = x.copy()
        for s in np.unique(k):
            sel = k == s
            rot, flip = int(s) % 4, bool(s // 4)
            x[sel] = d4_image(x[sel], rot, flip)
            yy[np.ix_(sel, iq)] = multiply(d4_quaternion(rot, flip), yy[np.ix_(sel, iq)])
        yy[:, iq] = project_to_fundamental(yy[:, iq], self.group)
        return x, sc.transform(yy).astype(np.float32)
