"""``msft``: wide-angle XUV scattering images of nanoclusters (Stielow et al., MLST 2020) for ``factory generate``.

Labels per sample: ``radius`` (circumradius, nm) and the orientation quaternion ``q0..q3``
(scalar first ``(w, x, y, z)``, active rotation body -> lab, canonical ``w >= 0``, inside
the fundamental domain of the shape's rotation group unless ``orientation: uniform``),
plus ``shape`` (index into ``shapes``) when several shapes are sampled.  Images are the
detector image of :mod:`factory.msft.detector` on ``(qy, qx)`` in 1/nm (or on a flat
detector's pixel centres in mm), float32.

:func:`pattern` is the same computation as a plain function of (shape, radius, quaternion).
"""

from __future__ import annotations

import time
from typing import Any, NamedTuple

import numpy as np

from ..backend import Backend
from ..geometry.quaternions import from_rotation, normalize
from ..geometry.symmetry import component_span, sample_fundamental
from ..simulation import Coord, SimResult, Simulator, rng_for
from . import detector as det
from .config import LATER_SHAPE_OPTIONS, PAPER_VOXEL_NM, DetectorModel, MSFTConfig, ShapeName, ShapeOptionsModel
from .multislice import amplitude, q_axis, resolve_method
from .polyhedra import SHAPES, SYMMETRY
from .shapes import density
from .transform import amplitude_array
from .voxelise import density_batch


class DetectorImage(NamedTuple):
    """A detector image with its axes (image order [y, x]) and scalar diagnostics."""

    image: np.ndarray
    y: Coord
    x: Coord
    diagnostics: dict[str, float]


def detector_coords(cfg: MSFTConfig) -> tuple[Coord, Coord]:
    if cfg.detector.kind == "flat":
        a = cfg.detector.flat().axis_mm()
        return (Coord("y", a.copy(), "mm", "detector y"), Coord("x", a.copy(), "mm", "detector x"))
    q = q_axis(cfg.pad, cfg.voxel_nm, cfg.crop)
    return (
        Coord("qy", q.copy(), "1/nm", "momentum transfer qy"),
        Coord("qx", q.copy(), "1/nm", "momentum transfer qx"),
    )


def detector_from_amplitude(amp: np.ndarray, cfg: MSFTConfig, rng: np.random.Generator) -> tuple[np.ndarray, dict]:
    """Cross section -> signal per pixel -> photons/noise -> output scale; (image, diagnostics)."""
    k = 2 * np.pi / cfg.wavelength_nm
    dsdo = np.abs(amp).astype(np.float64) ** 2  # nm^2/sr
    q = q_axis(cfg.pad, cfg.voxel_nm, cfg.crop)
    if cfg.detector.kind == "flat":
        flat = cfg.detector.flat()
        signal = det.to_flat_detector(dsdo, q, q, flat, k) * flat.solid_angle()
    else:
        signal = dsdo * det.q_grid_solid_angle(q, q, k, obliquity=cfg.solid_angle)
    diags = {"total": float(signal.sum()), "peak": float(signal.max())}
    img = signal
    if cfg.fluence is not None:
        img = det.poisson_counts(signal * cfg.fluence, rng)
        diags["photons"] = float(img.sum())
    img = det.add_background(img, cfg.background, rng)
    if cfg.output == "log":
        img = det.log_image(img, cfg.log_floor)
    return img.astype(np.float32), diags


def _group(shape: str) -> str | None:
    return SYMMETRY[shape]


def pattern(
    shape: str = "icosahedron",
    radius_nm: float = 80.0,
    quat=(1.0, 0.0, 0.0, 0.0),
    config: MSFTConfig | str | dict | None = None,
    *,
    rng: np.random.Generator | None = None,
) -> DetectorImage:
    """The detector image of one particle: (shape, circumradius in nm, quaternion w,x,y,z).

    ``config``: an ``MSFTConfig``, its dict or None (the paper defaults); a preset
    (``"tiny"``, ``"small"``, ``"paper"``) through ``factory.config.resolve_simulator_config``.
    Noise (background, photons) draws from ``rng`` (default: ``np.random.default_rng(0)``).

    Parameters
    ----------
    shape : str, optional
        One of ``SHAPES`` (``"sphere"``, ``"icosahedron"``,
        ``"cube"``, ...).
    radius_nm : float, optional
        Circumradius of the particle (radius of the sphere), nm.
    quat : array_like, optional
        Orientation: scalar-first quaternion ``(w, x, y, z)``, normalised here.
    config : MSFTConfig or dict or None, optional
        The simulator config (box, wavelength, material, detector, noise) or a dict of its
        ``simulator:`` section; None for the paper defaults.  For a preset use
        ``factory.config.resolve_simulator_config`` (``("msft", "tiny")``).
    rng : numpy.random.Generator, optional
        Source of the noise.

    Returns
    -------
    DetectorImage
        ``image`` (``[y, x]``, as a generated store holds it), its ``y`` and ``x`` axes
        (``Coord``) and ``diagnostics`` (``total``, ``peak``,
        ``time_s``, and ``photons`` with a fluence).

    Raises
    ------
    ValueError
        An unknown shape, or a particle larger than the config's box.
    TypeError
        ``config`` is of another type (a preset name included).
    """
    cfg = resolve_config(config)
    if shape not in SHAPES:
        raise ValueError(f"unknown shape {shape!r}; known shapes: {', '.join(SHAPES)}")
    t0 = time.perf_counter()
    rho = density(shape, float(radius_nm), normalize(quat), n=cfg.n_voxels, voxel_nm=cfg.voxel_nm,
                  options=cfg.shape_options.to_options())
    amp = amplitude(rho, cfg.msft_params(), validate=False)
    img, diags = detector_from_amplitude(amp, cfg, rng if rng is not None else np.random.default_rng(0))
    diags["time_s"] = time.perf_counter() - t0
    y, x = detector_coords(cfg)
    return DetectorImage(img, y, x, diags)


def resolve_config(config: MSFTConfig | dict | None) -> MSFTConfig:
    """An MSFTConfig from a config or a dict of the ``simulator:`` section (a preset name or a
    YAML file: :func:`factory.config.resolve_simulator_config`)."""
    if config is None:
        return MSFTConfig()
    if isinstance(config, MSFTConfig):
        return config
    if isinstance(config, dict):
        return MSFTConfig.model_validate(config)
    raise TypeError(f"config must be an MSFTConfig, a dict or None; got {type(config).__name__}")


class MSFTSimulator(Simulator):
    kind = "msft"
    config_model = MSFTConfig

    def __init__(self, config: MSFTConfig, threads: int = 1):
        super().__init__(config, threads=threads)
        self._params = config.msft_params()
        self._options = config.shape_options.to_options()
        self.backend = Backend.create(config.backend, threads=self.threads)

    def coords(self) -> tuple[Coord, Coord]:
        return detector_coords(self.config)

    @property
    def param_names(self) -> list[str]:
        names = ["radius", "q0", "q1", "q2", "q3"]
        return names + ["shape"] if len(self.config.shapes) > 1 else names

    @property
    def diagnostic_names(self) -> list[str]:
        names = ["total", "peak", "time_s"]
        return names + ["photons"] if self.config.fluence is not None else names

    def store_attrs(self) -> dict[str, Any]:
        cfg = self.config
        groups = {s: _group(s) for s in cfg.shapes}
        return {
            "labels": {
                "radius": "circumradius (nm)",
                "q0..q3": "orientation quaternion, scalar first (w, x, y, z), active rotation body -> lab, w >= 0",
                **({"shape": f"index into {list(cfg.shapes)}"} if len(cfg.shapes) > 1 else {}),
            },
            "shapes": list(cfg.shapes),
            "symmetry_groups": groups,
            "radius_range_nm": list(cfg.radius_nm),
            "quaternion_span": {s: component_span(g).tolist() for s, g in groups.items() if g},
            "orientation": cfg.orientation,
            "image": (
                f"log10(I / max I + {cfg.log_floor:g})" if cfg.output == "log" else "I (nm^2 per pixel, or photons)"
            ),
            "image_scale": "log10" if cfg.output == "log" else "intensity",
            "beam": "+z; image [y, x]; q = k_out - k_in",
        }

    # -- per sample -----------------------------------------------------------------
    def sample_params(self, seed: int, index: int) -> dict[str, float]:
        cfg = self.config
        rng = rng_for(seed, index, 0)
        k = int(rng.integers(len(cfg.shapes))) if len(cfg.shapes) > 1 else 0
        shape = cfg.shapes[k]
        radius = float(rng.uniform(*cfg.radius_nm))
        group = _group(shape)
        if cfg.orientation == "identity" or group is None:
            q = np.array([1.0, 0.0, 0.0, 0.0])  # a sphere has no orientation
        elif cfg.orientation == "uniform":
            from scipy.spatial.transform import Rotation

            q = from_rotation(Rotation.random(None, rng))
        else:
            q = sample_fundamental(rng, group=group)
        out = {"radius": radius, "q0": float(q[0]), "q1": float(q[1]), "q2": float(q[2]), "q3": float(q[3])}
        if len(cfg.shapes) > 1:
            out["shape"] = float(k)
        return out

    def _shape_of(self, params: dict[str, float]) -> str:
        return self.config.shapes[int(params.get("shape", 0))]

    def _density(self, params):
        cfg = self.config
        q = [params["q0"], params["q1"], params["q2"], params["q3"]]
        return density(self._shape_of(params), params["radius"], q, n=cfg.n_voxels, voxel_nm=cfg.voxel_nm,
                       options=self._options)

    def simulate(self, params: dict[str, float], rng: np.random.Generator) -> SimResult:
        t0 = time.perf_counter()
        amp = amplitude(self._density(params), self._params, validate=False, backend=self.backend)
        img, diags = detector_from_amplitude(amp, self.config, rng)
        diags["time_s"] = time.perf_counter() - t0
        return SimResult(img, diags)

    def simulate_batch(self, params: list[dict[str, float]], rngs: list[np.random.Generator]) -> list[SimResult]:
        method = resolve_method(self._params.method)
        if not self.backend.is_torch or method == "reference" or len(params) < 2:
            return [self.simulate(p, r) for p, r in zip(params, rngs)]
        return self._simulate_batch_on_device(params, rngs, method)

    def _simulate_batch_on_device(self, params, rngs, method) -> list[SimResult]:
        """Voxelise and scatter the whole block on the backend's device (one call per shape)."""
        cfg = self.config
        t0 = time.perf_counter()
        amps: list[np.ndarray | None] = [None] * len(params)
        by_shape: dict[str, list[int]] = {}
        for i, p in enumerate(params):
            by_shape.setdefault(self._shape_of(p), []).append(i)
        for shape, idx in by_shape.items():
            radii = [params[i]["radius"] for i in idx]
            quats = [[params[i][f"q{c}"] for c in range(4)] for i in idx]
            rho = density_batch(self.backend, shape, radii, quats, n=cfg.n_voxels, voxel_nm=cfg.voxel_nm,
                                options=self._options, dtype=self._params.real_dtype.name)
            out = self.backend.to_numpy(amplitude_array(rho, self._params, self.backend, method=method))
            for j, i in enumerate(idx):
                amps[i] = out[j]
        per = (time.perf_counter() - t0) / len(params)
        results = []
        for a, r in zip(amps, rngs):
            img, diags = detector_from_amplitude(a, cfg, r)
            diags["time_s"] = per
            results.append(SimResult(img, diags))
        return results


__all__ = ["LATER_SHAPE_OPTIONS", "PAPER_VOXEL_NM", "DetectorImage", "DetectorModel", "MSFTConfig", "MSFTSimulator",
           "ShapeName", "ShapeOptionsModel", "detector_coords", "pattern", "resolve_config"]
