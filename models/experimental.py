"""Fig. 5 of Stielow, Schmidt, Peltz, Fennel & Scheel, Mach. Learn.: Sci. Technol. (2020): the
scattering network on the measured icosahedra, re-simulated, then refined by gradient descent.

The two icosahedral patterns barke5 and barke6 (I. Barke et al., Nat. Commun. 6, 6187 (2015),
CC-BY 4.0, as extracted and rescaled by T. Stielow et al., PRE 103, 053312 (2021), MIT), shipped
as package data in :mod:`factory.msft.measured`, are read through the measured detector model
(:data:`factory.msft.detector_response.AG_CLUSTER_DETECTOR`: valid pixels, central hole,
saturation, log display, the measured orientation): the network input.  The network's radius
and orientation are re-simulated through the same detector (the MSFT on the measured q grid:
the training set's simulator when it has that grid, else the ``small`` preset, which is the
paper's grid at half the real-space resolution), and then refined by gradient descent through
the differentiable MSFT (:func:`models.forward_fit.gradient.refine`) on the mean squared
difference over the valid detector pixels.  The score is the Pearson correlation between the
measured and the re-simulated display over the valid pixels, for the network alone and after
the refinement.  A network trained without the detector model (``factory process augment
--detector ag-clusters``) reads the measured patterns out of its training distribution: its
radius may fall outside the training range (reported, and clipped for the re-simulation).
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

import numpy as np

from factory.errors import ConfigError, StoreError
from factory.msft.detector_response import AG_CLUSTER_DETECTOR
from factory.msft.measured import ATTRIBUTION, ag_cluster_dir, decode_png, load_ag_cluster
from factory.outputs import ResultFolder

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


def network_input(png: np.ndarray, shape: tuple[int, int], detector=AG_CLUSTER_DETECTOR) -> np.ndarray:
    """A measured 8-bit pattern as the network input: the detector's display space (0..1, zero
    outside the valid pixels).  A model of smaller images (the ``tiny`` grid: the same q step, a
    smaller crop) gets the central crop about the q = 0 pixel; a larger one a bilinear resampling."""
    img = detector.measured_input(png)
    if img.shape == tuple(shape):
        return img
    if all(s <= n for s, n in zip(shape, img.shape)):
        r0, c0 = img.shape[0] // 2 - shape[0] // 2, img.shape[1] // 2 - shape[1] // 2
        return np.ascontiguousarray(img[r0:r0 + shape[0], c0:c0 + shape[1]])
    from scipy.ndimage import zoom

    return zoom(img, (shape[0] / img.shape[0], shape[1] / img.shape[1]), order=1).astype(np.float32)


def detector_of(desc: dict[str, Any]):
    """The measured detector a model was trained through (its augmented set's ``detector``), else
    :data:`AG_CLUSTER_DETECTOR` (the detector of the packaged patterns); (name or None, detector)."""
    from factory.msft.detector_response import DETECTORS

    ts = desc.get("training_set") or {}
    for cfg in [ts.get("config") or {}, *[(src.get("config") or {}) for src in ts.get("lineage") or []]]:
        name = cfg.get("detector") if isinstance(cfg, dict) else None
        if name in DETECTORS:
            return name, DETECTORS[name]
    return None, AG_CLUSTER_DETECTOR


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


def detector_frame(desc: dict[str, Any], frame: np.ndarray, detector) -> np.ndarray:
    """A raw detector frame (the training store's scale: intensities, or log10 intensities when
    the recorded preprocessing says so) as the network input of a model trained through
    ``detector``: the detector's :meth:`~factory.msft.detector_response.DetectorResponse.apply`
    (orientation, centring, saturation, display, valid pixels).  The streaming predictor's path."""
    pre = desc.get("preprocessing") or {}
    x = np.asarray(frame, dtype=np.float64)
    if not np.isfinite(x).all():
        raise ValueError("the frame holds NaN or Inf")
    intensity = 10.0 ** x if pre.get("input") == "log10" else x
    return detector.apply(intensity).astype(np.float32)


def measured_grid_config(sim_cfg, detector=AG_CLUSTER_DETECTOR):
    """The MSFT config for re-simulating on the measured detector: ``sim_cfg`` (a dict, config or
    preset) when its image has the detector's size, else the ``small`` preset (the paper's q grid);
    noiseless, linear intensity."""
    from factory.config import resolve_simulator_config

    cfg = resolve_simulator_config("msft", sim_cfg if sim_cfg is not None else "small")
    if (cfg.crop, cfg.crop) != tuple(detector.shape) or cfg.detector.kind != "q_grid":
        cfg = resolve_simulator_config("msft", "small")
    return cfg.model_copy(update={"output": "linear", "background": 0.0, "fluence": None})


def reconstruct_experimental(model: str | Path, out: str | Path, *, names=("barke5", "barke6"),
                             data_dir=None, msft_config=None, refine_steps: int = 40,
                             progress=None) -> dict[str, Any]:
    """Predict, re-simulate, refine and draw the measured patterns; writes fig5.png and fig5.json.

    ``refine_steps``: forward+backward passes of the gradient refinement (L-BFGS) per pattern
    (0: the network alone).  ``msft_config``: the simulator for the re-simulation (default: the
    training set's, on the measured q grid)."""
    from factory.msft.detector_response import masked_correlation
    from factory.msft.simulator import pattern

    from .forward_fit.gradient import refine
    from .forward_fit.model import ForwardModel

    folder = ResultFolder(out, ("fig5.png", "fig5.json"))  # before any work
    pred = Predictor(model, device="cpu")
    desc = pred.description
    if not (set(QUAT) <= set(pred.labels) and "radius" in pred.labels):
        raise ModelError(f"{model}: predicts {pred.labels}; Fig. 5 needs a scattering model (radius, q0..q3)")
    det_name, det = detector_of(desc)
    cfg = measured_grid_config(msft_config or msft_config_of(desc), det)
    lo, hi = _radius_limits(desc)
    fm = ForwardModel(cfg.model_dump(), radius_range=(min(lo, cfg.radius_nm[0]), max(hi, cfg.radius_nm[1])))
    mask = det.mask()
    rows = []
    for name in names:
        t0 = time.perf_counter()
        png = load_png(name, data_dir)
        measured = det.measured_input(png)
        p = pred.predict(network_input(png, tuple(pred.card.input.shape), det)[None])
        radius = float(p["radius"][0])
        q = np.array([float(p[k][0]) for k in QUAT])
        r_sim = float(np.clip(radius, *fm.radius_range))
        t_net = time.perf_counter() - t0
        sim_net = det.apply(pattern("icosahedron", r_sim, q, config=cfg).image)
        row = {"name": Path(name).stem, "radius_nm": radius, "inside_training_range": bool(lo <= radius <= hi),
               "training_range_nm": [lo, hi], "simulated_radius_nm": r_sim, "quaternion": q.tolist(),
               "correlation": masked_correlation(sim_net, measured, mask), "network_s": t_net,
               "measured": measured, "resimulated": sim_net}
        if refine_steps > 0:
            res = refine(measured, fm, r_sim, q, steps=refine_steps, mask=mask, response=det.apply)
            sim_ref = det.apply(pattern("icosahedron", res.radius, res.quaternion, config=cfg).image)
            row.update(refined={"radius_nm": res.radius, "quaternion": res.quaternion, "passes": res.passes,
                                "simulations": res.simulations, "seconds": res.seconds,
                                "correlation": masked_correlation(sim_ref, measured, mask)},
                       refined_image=sim_ref)
        rows.append(row)
        if progress is not None:
            progress(row)
    fig = _figure(rows, folder.file("fig5.png"), det_name)
    result = {"model": str(model), "detector": det_name or "ag-clusters (not the model's training detector)",
              "trained_through_detector": det_name is not None, "simulator": cfg.model_dump(mode="json"),
              "figure": str(fig), "attribution": ATTRIBUTION,
              "images": [{k: v for k, v in r.items() if k not in ("measured", "resimulated", "refined_image")}
                         for r in rows]}
    folder.write_text("fig5.json", json.dumps(result, indent=1))
    return result


def _radius_limits(desc) -> tuple[float, float]:
    st = desc.get("label_stats", {}).get("radius", {})
    return float(st.get("min", 30.0)), float(st.get("max", 160.0))


def display_label(det=AG_CLUSTER_DETECTOR) -> str:
    """The colour-bar name of a detector's display scale (0..1)."""
    if det.display == "log":
        return f"log$_{{10}}$(I/I$_{{max}}$ + {det.log_floor:g}) on 0..1"
    return "I/I$_{max}$ on 0..1"


def fig5_figure(rows, detector: str | None = None):
    """Fig. 5 as a Figure: per pattern, the measured network input, the orientation (icosahedron
    seen along the beam, in the measured image's frame), the re-simulation of the network's
    guess and, when refined, of the refined parameters; colour bars name the scale."""
    from factory.plots.style import colorbar

    from .figures import _plt

    plt = _plt()
    refined = any("refined" in r for r in rows)
    ncol = 4 if refined else 3
    fig, axes = plt.subplots(len(rows), ncol, figsize=(3.3 * ncol, 3.3 * len(rows) + 0.4), squeeze=False,
                             layout="constrained")
    from factory.msft.detector_response import DETECTORS

    scale = display_label(DETECTORS.get(detector, AG_CLUSTER_DETECTOR))
    for ax, r in zip(axes, rows):
        ref = r.get("refined")
        im = ax[0].imshow(r["measured"], cmap="gray", origin="lower", vmin=0.0, vmax=1.0)
        ax[0].set_title(f"measured {r['name']} (network input)", fontsize=9)
        colorbar(fig, ax[0], im, scale)
        q = ref["quaternion"] if ref else r["quaternion"]
        for a, b in icosahedron_edges(q):  # point-reflected (x, y): the measured orientation of the pattern
            front = (a[2] + b[2]) > 0
            ax[1].plot([-a[0], -b[0]], [-a[1], -b[1]], "-", color="tab:blue" if front else "0.75", lw=1.5 if front else 0.8)
        ax[1].set_aspect("equal")
        ax[1].set_xlim(-1.1, 1.1)
        ax[1].set_ylim(-1.1, 1.1)
        ax[1].set_xticks([])
        ax[1].set_yticks([])
        outside = "" if r.get("inside_training_range", True) else " (outside the training range)"
        text = f"network R = {r['radius_nm']:.0f} nm{outside}"
        if ref:
            text += f"\nrefined R = {ref['radius_nm']:.0f} nm, view along the beam"
        ax[1].set_title(text, fontsize=7)
        panels = [(r["resimulated"], f"re-simulated, network (r = {r['correlation']:.2f})")]
        if ref:
            panels.append((r["refined_image"], f"re-simulated, refined (r = {ref['correlation']:.2f})"))
        for a, (img, title) in zip(ax[2:], panels):
            im = a.imshow(img, cmap="gray", origin="lower", vmin=0.0, vmax=1.0)
            a.set_title(title, fontsize=9)
            colorbar(fig, a, im, scale)
        for a in (ax[0], *ax[2:]):
            a.set_xlabel("column (px)", fontsize=7)
            a.set_ylabel("row (px)", fontsize=7)
            a.tick_params(labelsize=6)
    det = DETECTORS.get(detector, AG_CLUSTER_DETECTOR)
    note = ("r: Pearson correlation over the valid detector pixels. Detector display: intensity saturated at "
            f"{100 * (det.saturation or 1):g} % of its maximum over the valid pixels. ") + (
        f"Network trained through the '{detector}' detector model. " if detector else
        "Network trained WITHOUT the measured detector model. ")
    fig.text(0.5, 0.0, note + ATTRIBUTION, ha="center", va="bottom", fontsize=6, wrap=True)
    fig.get_layout_engine().set(rect=(0, 0.04, 1, 0.96))
    return fig


def _figure(rows, path: Path, detector: str | None = None) -> Path:
    from factory.plots import save

    return save(fig5_figure(rows, detector), path)
