"""The forward model of the fit (the MSFT simulator, or any function) and its search variables:
(radius, quaternion) <-> the search vector, the App. C errors of Stielow et al., MLST 2020,
and the objective."""

from __future__ import annotations

from typing import Any, Callable

import numpy as np

from factory.errors import ConfigError
from factory.processing.description import Description, DescriptionError, parse

QUAT = ["q0", "q1", "q2", "q3"]


# -- the forward model -------------------------------------------------------------------------
class ForwardModel:
    """(radius in nm, quaternion w,x,y,z) -> the image the targets are compared with.

    ``config``: an MSFT preset name (``tiny``, ``small``, ``paper``), an ``msft`` YAML file, an
    :class:`~factory.msft.MSFTConfig` or its dict.  Noise is switched off (background 0, no
    photon noise) unless ``noiseless=False``.  ``preprocessing`` (a processed store's
    description, typed or its JSON form ``meta["preprocessing"]``) maps the simulated image to
    the store's representation;
    ``coords`` are the raw detector axes it needs.  ``function`` replaces the MSFT simulator by
    any callable ``(radius, q) -> image`` (tests, other forward models).
    """

    def __init__(self, config: Any = "tiny", *, shape: str = "icosahedron", noiseless: bool = True,
                 preprocessing: Description | dict | None = None, coords: dict | None = None,
                 radius_range: tuple[float, float] | None = None, group: str | None = None,
                 function: Callable[[float, np.ndarray], np.ndarray] | None = None):
        self.shape = shape
        try:
            self.preprocessing = parse(preprocessing) if preprocessing else None
        except DescriptionError as exc:
            raise ConfigError(f"forward model: {exc}") from None
        self.coords = coords
        self.function = function
        if function is not None:
            self.config = None
            self.radius_range = tuple(float(v) for v in (radius_range or (30.0, 160.0)))
            self.group = group or "I"
            return
        from factory.msft.shapes import SHAPES, SYMMETRY
        from factory.config import resolve_simulator_config

        if shape not in SHAPES:
            raise ConfigError(f"shape {shape!r}: choose one of {', '.join(SHAPES)}")
        try:
            cfg = resolve_simulator_config("msft", config)
        except (ValueError, TypeError) as exc:
            raise ConfigError(f"forward model config {config!r}: {str(exc).splitlines()[0]}") from None
        if noiseless:
            cfg = cfg.model_copy(update={"background": 0.0, "fluence": None})
        self.config = cfg
        self.radius_range = tuple(float(v) for v in (radius_range or cfg.radius_nm))
        self.group = group or SYMMETRY[shape] or "C1"

    def spec(self) -> dict[str, Any]:
        """Plain data to rebuild this model in a Ray task."""
        return {"config": self.config.model_dump(mode="json") if self.config is not None else None,
                "shape": self.shape,
                "preprocessing": self.preprocessing.to_dict() if self.preprocessing is not None else None,
                "coords": {k: np.asarray(v).tolist() for k, v in (self.coords or {}).items()} or None,
                "radius_range": list(self.radius_range), "group": self.group, "function": self.function}

    @classmethod
    def from_spec(cls, spec: dict[str, Any]) -> "ForwardModel":
        coords = {k: np.asarray(v) for k, v in spec["coords"].items()} if spec.get("coords") else None
        return cls(spec["config"] if spec["config"] is not None else "tiny", shape=spec["shape"], noiseless=False,
                   preprocessing=spec["preprocessing"], coords=coords, radius_range=tuple(spec["radius_range"]),
                   group=spec["group"], function=spec["function"])

    def __call__(self, radius: float, quat) -> np.ndarray:
        q = np.asarray(quat, dtype=np.float64)
        if self.function is not None:
            img = np.asarray(self.function(float(radius), q), dtype=np.float64)
        else:
            from factory.msft.simulator import pattern

            img = np.asarray(pattern(self.shape, float(radius), q, self.config).image, dtype=np.float64)
        if self.preprocessing is not None:
            from factory.processing.preprocess import apply

            img = np.asarray(apply(self.preprocessing, img, self.coords), dtype=np.float64)
        return img


# -- search variables <-> parameters ----------------------------------------------------------------
def to_params(x: np.ndarray, radius_range: tuple[float, float]) -> tuple[float, np.ndarray]:
    """Search vector (radius scaled to [0, 1], rotation vector) -> (radius nm, quaternion w,x,y,z)."""
    from scipy.spatial.transform import Rotation

    from factory.geometry import from_rotation

    lo, hi = radius_range
    radius = lo + float(x[0]) * (hi - lo)
    q = from_rotation(Rotation.from_rotvec(np.asarray(x[1:4], dtype=np.float64)))
    return radius, q


def to_vector(radius: float, quat, radius_range: tuple[float, float]) -> np.ndarray:
    from factory.geometry import to_rotation

    lo, hi = radius_range
    return np.concatenate([[(float(radius) - lo) / (hi - lo)], to_rotation(np.asarray(quat, dtype=np.float64)).as_rotvec()])


def project(radius: float, quat, group: str) -> tuple[float, np.ndarray]:
    from factory.geometry import canonical, project_to_fundamental

    q = project_to_fundamental(quat, group) if group not in ("C1", None) else canonical(quat)
    return float(radius), q


def relative_error(radius: float, quat, true_radius: float, true_quat, radius_range, group: str) -> np.ndarray:
    """App. C: the five per-parameter errors (radius, q0..q3) over their ranges."""
    from factory.geometry import relative_errors

    _, qp = project(radius, quat, group)
    _, qt = project(true_radius, true_quat, group)
    if group in ("C1", None):  # no symmetry: w in [0, 1], x, y, z in [-1, 1]
        lo, hi = radius_range
        return np.concatenate([[abs(radius - true_radius) / (hi - lo)], np.abs(qp - qt) / np.array([1.0, 2.0, 2.0, 2.0])])
    return relative_errors(radius, qp, true_radius, qt, radius_range=tuple(radius_range), group=group)["per_param"][0]


def objective(image: np.ndarray, target: np.ndarray) -> float:
    """Mean squared difference of the (log) images."""
    return float(np.mean((np.asarray(image, dtype=np.float64) - target) ** 2))


__all__ = ["QUAT", "ForwardModel", "objective", "project", "relative_error", "to_params", "to_vector"]
