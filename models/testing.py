"""Test helpers for streaming prediction: synthetic detector frames, a store of them, and a small
(untrained, seeded) PMD model whose card describes how frames are preprocessed.

Used by the stream tests (one model for the whole test session) and handy in a notebook to try
``factory predict stream`` without a trained network.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

#: the frames' momentum axes (a.u.)
KY, KX = np.linspace(-3, 3, 33), np.linspace(-4, 4, 41)
LABELS = ("R", "intensity")


def raw_frame(i: int) -> np.ndarray:
    """Frame ``i``: a float32 PMD-like image on (:data:`KY`, :data:`KX`), periodic in ``i``."""
    yy, xx = np.meshgrid(KY, KX, indexing="ij")
    R = 1 + (i % 7)
    return (np.exp(-(xx**2 + 2 * yy**2) / (1 + 0.1 * (i % 5))) * (1.2 + np.cos(R * xx))).astype(np.float32)


def make_raw_store(path, n: int):
    """A complete store of frames ``raw_frame(0 .. n-1)`` (parameter ``R`` = the frame index)."""
    from factory.simulators import Coord
    from factory.store import DatasetStore

    st = DatasetStore.create(path, kind="tdse", n_samples=n, chunk=20,
                             coords=(Coord("ky", KY, "a.u."), Coord("kx", KX, "a.u.")), param_names=["R"],
                             config_hash="raw")
    for s, e in st.blocks():
        st.write_block(s, np.stack([raw_frame(i) for i in range(s, e)]), {"R": np.arange(s, e, dtype=float)})
    return st


def make_stream_model(folder) -> Path:
    """Save a seeded, untrained ``pmd-cnn`` (R and intensity, min-max scaled) with its model card
    into ``folder``; returns the folder."""
    import torch

    from factory.processing import preprocess
    from models.artifact import save_model
    from models.networks import build

    torch.manual_seed(0)
    net = build("pmd-cnn", input_shape=[32, 64], outputs=2)
    net.eval()
    desc = preprocess.pmd2d_description("global", (3.0, 4.0), out_shape=(32, 64))
    desc["input_axes"] = preprocess.input_axes({"ky": KY, "kx": KX})
    save_model(folder, net, {
        "architecture": {"name": "pmd-cnn", "kwargs": {"input_shape": [32, 64], "outputs": 2}},
        "labels": list(LABELS), "task": "regress", "preprocessing": desc,
        "label_scaling": {"names": list(LABELS), "methods": ["minmax", "minmax"], "offset": [1.0, 1e14],
                          "scale": [7.0, 3e14]},
        "input": {"shape": [32, 64], "mean_std": [0.0, 1.0]},
    })
    return Path(folder)


def results(path) -> dict[str, np.ndarray]:
    """frame_id, latency_ms and the predicted labels of a predictions store."""
    import zarr

    g = zarr.open_group(str(path), mode="r")
    return {k: g[k][:] for k in ("frame_id", "latency_ms", *LABELS)}
