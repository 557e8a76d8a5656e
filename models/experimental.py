"""Fig. 5 of Stielow, Schmidt, Peltz, Fennel & Scheel, Mach. Learn.: Sci. Technol. (2020): the
scattering network on the measured icosahedra, re-simulated.

The two icosahedral patterns barke5 and barke6 (I. Barke et al., Nat. Commun. 6, 6187 (2015),
CC-BY 4.0, as extracted and rescaled by T. Stielow et al., PRE 103, 053312 (2021), MIT), shipped
as package data in :mod:`factory.msft.measured`, go through the trained network; the predicted
radius and orientation (projected into the fundamental domain) are re-simulated with the
MSFT simulator (the training set's own simulator settings), and measured, predicted
orientation and re-simulated pattern are shown side by side.

The PNGs are display-scaled 8-bit images, not calibrated intensities.  ``png_scale="log"``
(default) reads them as already log-scaled: network input = value / 255 (the scale of a
``scatter`` processed store, 0..1 over the log window); ``"linear"`` treats them as
intensities and applies the store's preprocessing description.  The re-simulated pattern is
clipped at a fraction of its maximum to mimic the detector's saturation, as in the paper.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from factory.errors import ConfigError, StoreError
from factory.msft.measured import ATTRIBUTION, ag_cluster_dir, decode_png, load_ag_cluster
from factory.processing.description import Scatter

from .artifact import QUAT, ModelError, Predictor

DATA_DIR = ag_cluster_dir()  # the packaged patterns (importlib.resources); a folder or path-like Traversable


def load_png(name: str, data_dir=None) -> np.ndarray:
    """A measured pattern as float64 0..255: a PNG path, else ``name[.png]`` in ``data_dir``
    (a folder; default: the patterns shipped in :mod:`factory.msft.measured`)."""
    path = Path(name)
    if path.is_file():
        return decode_png(path.read_bytes())
    if data_dir is None:
        return load_ag_cluster(name)
    folder = Path(data_dir) if isinstance(data_dir, (str, os.PathLike)) else data_dir
    f = folder / (name if name.endswith(".png") else f"{name}.png")
    if not f.is_file():
        raise ConfigError(f"measured pattern {name!r} not found (looked in {data_dir})")
    return decode_png(f.read_bytes())


def network_input(png: np.ndarray, desc: dict[str, Any], png_scale: str = "log") -> np.ndarray:
    shape = tuple(desc["input"]["shape"])
    if png_scale == "log":
        img = png / 255.0
        if img.shape != shape:
            from scipy.ndimage import zoom

            img = zoom(img, (shape[0] / img.shape[0], shape[1] / img.shape[1]), order=1)
        return img.astype(np.float32)
    if png_scale == "linear":
        pre = desc.get("preprocessing")
        if not pre:
            raise ModelError("the model records no preprocessing description; use png_scale='log'")
        from factory.processing.preprocess import apply

        try:
            return apply(pre, png + 1e-3)
        except ValueError as exc:
            raise ConfigError(f"png_scale='linear': {exc}") from None
    raise ConfigError(f"png_scale {png_scale!r}: choose log or linear")


def msft_config_of(desc: dict[str, Any]) -> dict[str, Any] | None:
    """The ``simulator:`` section of the MSFT store the model was trained on (following lineage)."""
    from factory.store import DatasetStore

    ts = desc.get("training_set", {})
    todo = [ts.get("config", {})]
    paths = [src.get("path") for src in ts.get("lineage", [])] + [ts.get("path")]
    seen = set()
    while todo or paths:
        cfg = todo.pop() if todo else None
        if isinstance(cfg, dict) and cfg.get("kind") == "msft":
            return cfg.get("simulator")
        if cfg is None and paths:
            p = paths.pop()
            if not p or p in seen:
                continue
            seen.add(p)
            try:
                st = DatasetStore.open(p)
            except StoreError:
                continue
            todo.append(st.meta.get("config", {}))
            paths += [src.get("path") for src in st.meta.get("lineage", [])]
    return None


def icosahedron_edges(q) -> list[tuple[np.ndarray, np.ndarray]]:
    """Edges of the unit icosahedron rotated by ``q`` (active, body -> lab), as 3D point pairs."""
    from factory.geometry.quaternions import rotation_matrix

    phi = (1 + 5**0.5) / 2
    base = np.array([[0.0, s1, s2 * phi] for s1 in (1, -1) for s2 in (1, -1)])
    v = np.vstack([np.roll(base, k, axis=1) for k in range(3)])
    v /= np.linalg.norm(v[0])
    v = v @ rotation_matrix(np.asarray(q, dtype=float)).T
    d = np.linalg.norm(v[:, None] - v[None], axis=2)
    e = d[d > 1e-9].min()
    return [(v[i], v[j]) for i in range(12) for j in range(i + 1, 12) if abs(d[i, j] - e) < 1e-6]


def reconstruct_experimental(model: str | Path, out: str | Path, *, names=("barke5", "barke6"),
                             data_dir=None, png_scale: str = "log", msft_config=None,
                             clip: float = 0.3) -> dict[str, Any]:
    """Predict, re-simulate and draw the measured patterns; writes fig5.png and fig5.json."""
    pred = Predictor(model, device="cpu")
    desc = pred.description
    if not (set(QUAT) <= set(pred.labels) and "radius" in pred.labels):
        raise ModelError(f"{model}: predicts {pred.labels}; Fig. 5 needs a scattering model (radius, q0..q3)")
    from factory.msft.simulator import pattern

    sim_cfg = msft_config or msft_config_of(desc) or "small"
    pre = pred.card.preprocessing
    if not isinstance(pre, Scatter):  # none recorded (or a synthetic set's own record): log10, 6 decades
        pre = Scatter(out_shape=tuple(pred.card.input.shape))
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    rows = []
    for name in names:
        png = load_png(name, data_dir)
        x = network_input(png, desc, png_scale)
        p = pred.predict(x[None])
        radius = float(p["radius"][0])
        q = np.array([float(p[k][0]) for k in QUAT])
        lo, hi = _radius_limits(desc)
        r_sim = float(np.clip(radius, lo, hi))
        sim = pattern("icosahedron", r_sim, q, config=sim_cfg).image
        sim_net = _as_network_scale(sim, pre)
        shown = np.minimum(sim_net, 1.0 - clip) / (1.0 - clip)  # saturate the brightest part
        corr = float(np.corrcoef(x.ravel(), sim_net.ravel())[0, 1])
        rows.append({"name": Path(name).stem, "radius_nm": radius, "simulated_radius_nm": r_sim,
                     "quaternion": q.tolist(), "correlation": corr,
                     "measured": x, "resimulated": shown})
    fig = _figure(rows, out / "fig5.png")
    result = {"model": str(model), "png_scale": png_scale, "simulator": sim_cfg if isinstance(sim_cfg, str) else "training set's",
              "figure": str(fig), "attribution": ATTRIBUTION,
              "images": [{k: v for k, v in r.items() if k not in ("measured", "resimulated")} for r in rows]}
    (out / "fig5.json").write_text(json.dumps(result, indent=1))
    return result


def _radius_limits(desc) -> tuple[float, float]:
    st = desc.get("label_stats", {}).get("radius", {})
    return float(st.get("min", 30.0)), float(st.get("max", 160.0))


def _as_network_scale(sim: np.ndarray, pre: Scatter) -> np.ndarray:
    """A simulated detector image through the model's own preprocessing (0..1 log scale)."""
    if pre.input_axes is not None:
        from factory.processing.preprocess import apply

        return apply(pre, sim).astype(np.float64)
    sim = np.asarray(sim, dtype=np.float64)
    floor = float(pre.log_floor)
    w = sim - sim.max() if sim.min() < 0 or pre.input == "log10" else np.log10(np.maximum(sim, 1e-300) / sim.max())
    return np.clip((np.maximum(w, floor) - floor) / -floor, 0.0, 1.0)


def fig5_figure(rows):
    """Fig. 5 as a Figure: per pattern, the measured network input, the predicted orientation
    (icosahedron seen along the beam) and the re-simulated pattern, with colour bars naming the scale."""
    from factory.plots.style import colorbar

    from .evaluate import _plt

    plt = _plt()
    fig, axes = plt.subplots(len(rows), 3, figsize=(10, 3.3 * len(rows) + 0.3), squeeze=False, layout="constrained")
    scale = "log$_{10}$(I / I$_{max}$) mapped to 0..1"
    for ax, r in zip(axes, rows):
        im = ax[0].imshow(r["measured"], cmap="gray", origin="lower", vmin=0.0, vmax=1.0)
        ax[0].set_title(f"measured {r['name']} (network input)", fontsize=9)
        colorbar(fig, ax[0], im, scale)
        for a, b in icosahedron_edges(r["quaternion"]):
            ax[1].plot([a[0], b[0]], [a[1], b[1]], "-", color="tab:blue" if (a[2] + b[2]) > 0 else "0.75",
                       lw=1.5 if (a[2] + b[2]) > 0 else 0.8)
        ax[1].set_aspect("equal")
        ax[1].set_xlim(-1.1, 1.1)
        ax[1].set_ylim(-1.1, 1.1)
        ax[1].set_xticks([])
        ax[1].set_yticks([])
        clipped = "" if abs(r["simulated_radius_nm"] - r["radius_nm"]) < 0.5 else f" (sim. {r['simulated_radius_nm']:.0f} nm)"
        ax[1].set_title(f"predicted R = {r['radius_nm']:.0f} nm{clipped},\nview along the beam", fontsize=9)
        im = ax[2].imshow(r["resimulated"], cmap="gray", origin="lower", vmin=0.0, vmax=1.0)
        ax[2].set_title(f"re-simulated (corr. {r['correlation']:.2f})", fontsize=9)
        colorbar(fig, ax[2], im, scale + ", saturated")
        for a in (ax[0], ax[2]):
            a.set_xlabel("column (px)", fontsize=7)
            a.set_ylabel("row (px)", fontsize=7)
            a.tick_params(labelsize=6)
    fig.text(0.5, 0.0, ATTRIBUTION, ha="center", va="bottom", fontsize=6)
    fig.get_layout_engine().set(rect=(0, 0.03, 1, 0.97))
    return fig


def _figure(rows, path: Path) -> Path:
    from factory.plots import save

    return save(fig5_figure(rows), path)
