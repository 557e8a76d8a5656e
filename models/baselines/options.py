"""The options of every classical baseline method (one dataclass; the defaults follow the paper
where it says, else common practice)."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from factory.errors import ConfigError

from ..features import hog_cell


@dataclass
class BaselineOptions:
    """Options of every method; the defaults follow the paper where it says, else common practice."""

    hog_cell: tuple[int, int] | None = None       # None: an 8 x 8 grid of cells (16 x 32 px at 128 x 256)
    hog_orientations: int = 9
    sift_upsampling: int = 2
    sift_c_dog: float | None = None               # None: skimage's default contrast threshold
    sift_max_keypoints: int = 128
    sift_max_distance: float | None = None        # None: the median nearest distance between training images
    sift_ratio: float = 0.8                       # Lowe's ratio test inside each reference
    sift_tolerance: float | None = 0.05           # key points match only within this fraction of the image size
    bow_words: int = 64
    svr_C: float = 10.0
    svr_epsilon: float = 0.01                     # in units of the label's standard deviation
    dt_min_samples_leaf: int = 2
    dt_max_depth: int | None = None
    xgb_estimators: int = 300
    xgb_depth: int = 4
    xgb_learning_rate: float = 0.05
    xgb_max_bin: int = 32                         # histogram bins per feature (xgboost's 256 is ~10x slower here)
    xgb_jobs: int = 1                             # xgboost threads (raise on a machine of your own)
    interpolate: int = 0                          # references added by interpolation (mse+refs, sift+refs)
    interpolate_axes: tuple[str, ...] = ("R", "intensity")
    seed: int = 0
    parallel: str = "auto"                        # where features and comparisons run: auto, local, ray, dask
    address: str | None = None                    # a Ray (or, with parallel=dask, a Dask) address

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> "BaselineOptions":
        data = dict(data or {})
        known = set(cls.__dataclass_fields__)
        bad = sorted(set(data) - known)
        if bad:
            raise ConfigError(f"unknown baseline option(s) {bad}; known: {', '.join(sorted(known))}")
        for k in ("hog_cell", "interpolate_axes"):
            if data.get(k) is not None and not isinstance(data[k], tuple):
                data[k] = tuple(data[k])
        return cls(**data)

    def sift_options(self) -> dict[str, Any]:
        return {"upsampling": self.sift_upsampling, "c_dog": self.sift_c_dog, "max_keypoints": self.sift_max_keypoints}

    def hog_options(self, shape) -> dict[str, Any]:
        return {"cell": hog_cell(shape, self.hog_cell), "orientations": self.hog_orientations}

    def feature_options(self, kind: str, shape) -> dict[str, Any]:
        """The extraction options of a feature kind (pixels need none)."""
        return {"hog": lambda: self.hog_options(shape), "sift": self.sift_options}.get(kind, dict)()

    def as_record(self) -> dict[str, Any]:
        """The options as recorded in a report (without the address, which names a machine)."""
        d = asdict(self)
        d.pop("address", None)
        return d


__all__ = ["BaselineOptions"]
