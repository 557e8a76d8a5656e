"""Data loading from stores: splits, label scaling, chunk streaming with per-epoch shuffles."""

import numpy as np
import pytest

from factory.errors import StoreError
from factory.simulators import Coord
from factory.store import DatasetStore
from models.data import ChunkStream, LabelScaling, class_index, make_split, read_labels
from models.synthetic import make_store


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    return make_store(tmp_path_factory.mktemp("d") / "disks.zarr", n=60, chunk=8, shape=(32, 32))


def test_seeded_split_is_reproducible_and_disjoint(store):
    a, b = make_split(store, 0.2, seed=3), make_split(store, 0.2, seed=3)
    assert np.array_equal(a.train, b.train) and np.array_equal(a.val, b.val)
    assert len(a.val) == 12 and len(a.train) == 48 and not set(a.train) & set(a.val)
    assert a.describe()["source"] == "seeded-permutation" and a.describe()["seed"] == 3
    c = make_split(store, 0.2, seed=4)
    assert not np.array_equal(a.val, c.val)
    sub = make_split(store, 0.2, seed=3, max_train=10)
    assert len(sub.train) == 10 and set(sub.train) <= set(a.train) and np.array_equal(sub.val, a.val)


def test_store_split_array_and_done_mask(tmp_path):
    split = np.array([0, 0, 1, 2] * 4)
    st = make_store(tmp_path / "s.zarr", n=16, chunk=4, shape=(32, 32), split=split)
    s = make_split(st)
    assert s.source == "store"
    assert np.array_equal(s.val, np.flatnonzero(split == 1)) and np.array_equal(s.test, np.flatnonzero(split == 2))
    assert np.array_equal(s.held_out(), s.test)
    # only samples marked done are used
    part = DatasetStore.create(tmp_path / "p.zarr", kind="x", n_samples=8, chunk=4,
                               coords=(Coord("y", np.arange(4.0)), Coord("x", np.arange(4.0))), param_names=["R"])
    with pytest.raises(StoreError, match="no sample is marked done"):
        make_split(part)
    part.write_block(4, np.ones((4, 4, 4), np.float32), {"R": np.arange(4.0)})
    s = make_split(part, 0.25)
    assert set(s.train) | set(s.val) == {4, 5, 6, 7}
    with pytest.raises(StoreError, match="no label"):
        read_labels(part, ["radius"])


def test_label_scaling_roundtrip():
    y = np.column_stack([np.linspace(30, 160, 11), np.linspace(0.8, 1.0, 11), np.linspace(-0.1, 0.1, 11)])
    sc = LabelScaling.fit(["radius", "q0", "q1"], y, {"radius": "minmax", "q0": "minmax", "q1": "none"})
    z = sc.transform(y)
    assert z[:, :2].min() == 0 and z[:, :2].max() == 1 and np.allclose(z[:, 2], y[:, 2])
    assert np.allclose(LabelScaling.from_dict(sc.to_dict()).inverse(z), y)
    st = LabelScaling.fit(["a"], y[:, :1], "standard")
    assert abs(st.transform(y[:, :1]).mean()) < 1e-12
    assert list(class_index(np.array([1.0, 1.99, 2.0, 7.5, 8.0]), [1, 2, 3, 4, 5, 6, 7, 8])) == [0, 0, 1, 6, 6]


def _collect(ds):
    xs, ys = [], []
    for x, y in ds:
        xs.append(x.numpy())
        ys.append(y.numpy())
    return xs, np.concatenate(ys)


def test_stream_shuffles_every_epoch_and_shards_evenly(store):
    idx = np.arange(48)
    targets = np.arange(store.n_samples)  # target = sample index, so the order is visible
    steps = ChunkStream.steps_per_epoch(len(idx), 8, 2)
    assert steps == 3
    orders = {}
    for epoch in (0, 1):
        got = []
        for rank in (0, 1):
            ds = ChunkStream(path=str(store.path), indices=idx, targets=targets, batch_size=8, rank=rank,
                             world_size=2, steps=steps, window_chunks=2)
            ds.set_epoch(epoch)
            xs, ys = _collect(ds)
            assert len(xs) == steps and all(len(x) == 8 for x in xs)  # same number of full batches
            got.append(ys)
        assert sorted(np.concatenate(got)) == list(idx)  # every sample once per epoch
        orders[epoch] = np.concatenate(got)
    assert not np.array_equal(orders[0], orders[1])
    # images match their targets (disks: read the right rows)
    ds = ChunkStream(path=str(store.path), indices=idx, targets=targets, batch_size=8, steps=2)
    x, y = next(iter(ds))
    assert np.array_equal(x.numpy(), np.asarray(store.images[:])[y.numpy()])


def test_eval_stream_yields_each_sample_once(store):
    idx = np.array([1, 5, 9, 17, 33, 40, 59])
    got = []
    for rank in range(3):
        _, ys = _collect(ChunkStream(path=str(store.path), indices=idx, targets=np.arange(60), batch_size=4,
                                     shuffle=False, rank=rank, world_size=3))
        got.append(ys)
    assert sorted(np.concatenate(got)) == list(idx)
