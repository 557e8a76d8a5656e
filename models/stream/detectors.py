"""Facility detectors on karabo-bridge: their documented data layouts, assembly of their
modules with EXtra-geom, and the cut of the assembled image to the frame a model takes.

Layouts (the pulse/memory-cell axis and the modules; ``ss``/``fs``: a module's slow/fast scan
pixels, e.g. AGIPD 512 x 128):

- ``online``: what the calibration pipeline sends over the bridge (karabo_bridge's simulation,
  ``data_like='online'``; EXtra-foam's bridge readers): ``([modules,] fs, ss, cells)`` for
  the XFEL megapixel detectors AGIPD, LPD and DSSC, ``([modules,] ss, fs, cells)`` for
  JUNGFRAU and ePix100;
- ``file``: the order of the files and of EXtra-data's stacked arrays
  (``data_like='file'``): ``(cells, [modules,] ss, fs)``, or ``(ss, fs)`` for one image.

``auto`` picks the layout the array's shape fits; a shape both fit (e.g. AGIPD with 128 cells,
``(128, 512, 128)``) is refused with the reason, to be settled with ``--layout``.  A train of all
the detector's modules is assembled per pulse with the geometry (``--geometry`` a CrystFEL
.geom file, else the default below); one module's data is taken as it is.  Pixels outside any
module (and NaN pixels: masked by the calibration) are missing, not zero: the cut to the
model's frame (:class:`factory.processing.description.FrameCrop`, centred on the geometry's
beam centre) averages the pixels that are there.

Default geometries (for tests and a first look; a real experiment's geometry belongs in a
.geom file): AGIPD-1M and LPD-1M from the quadrant positions of EXtra-geom's documented examples,
DSSC-1M likewise, ePix100 at the origin.  JUNGFRAU needs its .geom file for more than one module.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

LAYOUTS = ("auto", "online", "file")


@dataclass(frozen=True)
class Detector:
    key: str
    name: str
    module: tuple[int, int]          # (slow scan, fast scan) pixels of one module
    modules: int                     # modules of the whole detector (0: as many as its geometry has)
    online: str                      # "fs-ss": ([modules,] fs, ss, cells); "ss-fs": ([modules,] ss, fs, cells)
    geometry: str                    # the EXtra-geom class
    hints: tuple[str, ...]           # parts of a karabo source name that name it
    default: tuple | None = None     # documented quadrant positions (from_quad_positions), or "origin"


DETECTORS: dict[str, Detector] = {d.key: d for d in (
    Detector("agipd", "AGIPD-1M", (512, 128), 16, "fs-ss", "AGIPD_1MGeometry", ("AGIPD",),
             ((-525, 625), (-550, -10), (520, -160), (542.5, 475))),
    Detector("lpd", "LPD-1M", (256, 256), 16, "fs-ss", "LPD_1MGeometry", ("LPD",),
             ((11.4, 299), (-11.5, 8), (254.5, -16), (278.5, 275))),
    Detector("dssc", "DSSC-1M", (128, 512), 16, "fs-ss", "DSSC_1MGeometry", ("DSSC",),
             ((-130, 5), (-130, -125), (5, -125), (5, 5))),
    Detector("jungfrau", "JUNGFRAU", (512, 1024), 0, "ss-fs", "JUNGFRAUGeometry", ("JNGFR", "JUNGFRAU")),
    Detector("epix100", "ePix100", (704, 768), 1, "ss-fs", "Epix100Geometry", ("EPIX100", "EPX100"), "origin"),
)}
CHOICES = ("auto", "none", *DETECTORS)


def detector_for(choice: str | None, source: str) -> Detector | None:
    """The detector ``choice`` names (``auto``: the one the karabo source's name names, if any;
    ``none``/None: frames as they are)."""
    if choice in (None, "none"):
        return None
    if choice == "auto":
        up = source.upper()
        return next((d for d in DETECTORS.values() if any(h in up for h in d.hints)), None)
    if choice not in DETECTORS:
        raise ValueError(f"detector {choice!r}: choose one of {', '.join(CHOICES)}")
    return DETECTORS[choice]


def _candidates(det: Detector, shape: tuple[int, ...], layout: str):
    """(layout, axes order giving (cells, modules, ss, fs), whether it has a module axis)."""
    ss, fs = det.module
    nd = len(shape)
    if layout in ("auto", "file"):
        if nd == 2 and shape == (ss, fs):
            yield "file", None, False
        if nd in (3, 4) and shape[-2:] == (ss, fs):
            yield "file", (0, 1, 2, 3) if nd == 4 else (0, 1, 2), nd == 4
    if layout in ("auto", "online") and nd in (3, 4):
        mod = shape[-3:-1]
        if (det.online == "fs-ss" and mod == (fs, ss)) or (det.online == "ss-fs" and mod == (ss, fs)):
            swap = det.online == "fs-ss"
            if nd == 4:  # (modules, a, b, cells) -> (cells, modules, ss, fs)
                yield "online", (3, 0, 2, 1) if swap else (3, 0, 1, 2), True
            else:
                yield "online", (2, 1, 0) if swap else (2, 0, 1), False


def split_train(det: Detector, image: np.ndarray, layout: str = "auto") -> np.ndarray:
    """A train's detector data as one entry per pulse/memory cell (views, no copy): (cells,
    modules, ss, fs) when it holds several modules, else (cells, ss, fs).  ValueError with the
    reason (its kind before the first " (") when the shape fits no layout of ``det``, or both."""
    if layout not in LAYOUTS:
        raise ValueError(f"layout {layout!r}: choose one of {', '.join(LAYOUTS)}")
    found = list(_candidates(det, tuple(image.shape), layout))
    ss, fs = det.module
    shape = tuple(image.shape)
    if not found:
        want = {"online": f"online ([modules,] {'fs, ss' if det.online == 'fs-ss' else 'ss, fs'}, cells)",
                "file": "file ([cells,] [modules,] ss, fs)"}
        names = [k for k in ("online", "file") if layout in ("auto", k)]
        raise ValueError(f"{det.name} data fit no {' or '.join(names)} layout (shape {shape}; "
                         f"{', '.join(want[k] for k in names)}; modules of {ss} x {fs})")
    if len(found) > 1:
        raise ValueError(f"{det.name} data fit both the online and the file layout; pass --layout (shape {shape})")
    _, axes, modules = found[0]
    if axes is None:
        return image[None]
    out = np.transpose(image, axes)
    if modules:
        n = out.shape[1]
        if det.modules and n not in (1, det.modules):
            raise ValueError(f"{det.name} data of {n} modules (it has {det.modules}; or send one)")
        if n == 1:
            out = out[:, 0]
    if len(out) == 0:
        raise ValueError(f"{det.name} data without a pulse (shape {shape})")
    return out


def load_geometry(det: Detector, path: str | Path | None = None):
    """The EXtra-geom geometry of ``det``: from a CrystFEL .geom file, else the documented default."""
    import extra_geom

    cls = getattr(extra_geom, det.geometry)
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise ValueError(f"geometry {path}: no such file")
        try:
            return cls.from_crystfel_geom(str(path))
        except Exception as exc:  # cfelpyutils/EXtra-geom raise many kinds on a bad file
            raise ValueError(f"geometry {path}: not a CrystFEL geometry of the {det.name} ({type(exc).__name__}: {exc})") from None
    if det.default is None:
        raise ValueError(f"the {det.name} has no default geometry; pass --geometry FILE (CrystFEL .geom)")
    if det.default == "origin":
        return cls.from_origin()
    return cls.from_quad_positions(quad_pos=[tuple(q) for q in det.default])


def describe_geometry(det: Detector, path: str | Path | None) -> str:
    if path is not None:
        return str(Path(path).resolve())
    if det.default == "origin":
        return f"{det.geometry}.from_origin() (default)"
    return f"{det.geometry}.from_quad_positions({[tuple(q) for q in det.default]}) (default: EXtra-geom's example)"


class DetectorFrames:
    """One pulse's detector data -> the 2D frame a model takes: modules assembled with the
    geometry, then cut and binned to ``frame_shape`` (``bin`` None: the largest that fits).
    Thread-safe; geometries are loaded on first use."""

    def __init__(self, frame_shape: tuple[int, int], geometry: str | Path | None = None, bin: int | None = None):
        self.frame_shape = tuple(int(n) for n in frame_shape)
        self.geometry_file = geometry
        self.bin = bin
        self._geoms: dict[str, Any] = {}
        self._crops: dict[tuple, Any] = {}
        self._lock = threading.Lock()

    def geometry(self, det: Detector):
        with self._lock:
            if det.key not in self._geoms:
                self._geoms[det.key] = load_geometry(det, self.geometry_file)
            return self._geoms[det.key]

    def crop(self, image_shape: tuple[int, int]):
        from factory.processing.description import FrameCrop

        key = tuple(image_shape)
        with self._lock:
            if key not in self._crops:
                self._crops[key] = FrameCrop.fit(key, self.frame_shape, self.bin)
            return self._crops[key]

    def assemble(self, det: Detector, data: np.ndarray) -> tuple[np.ndarray, tuple[float, float] | None]:
        """(the 2D image, the beam's pixel or None) of one pulse: (modules, ss, fs) or (ss, fs)."""
        data = np.asarray(data, dtype=np.float32)  # float: missing pixels are NaN
        if data.ndim == 2:
            return data, None
        geom = self.geometry(det)
        want = tuple(geom.expected_data_shape)
        if data.shape != want:
            raise ValueError(f"modules do not fit the geometry (data {data.shape}, geometry {want})")
        image, centre = geom.position_modules(data)
        return image, (float(centre[0]), float(centre[1]))

    def __call__(self, data: np.ndarray, detector: str) -> np.ndarray:
        det = DETECTORS[detector]
        image, centre = self.assemble(det, data)
        return self.crop(image.shape).apply(image, centre)

    def describe(self, detector: str, assembled: bool) -> dict[str, Any]:
        """What is done to this detector's frames (recorded with the predictions): ``assembled``
        for trains of all its modules, else one module's frames."""
        det = DETECTORS[detector]
        out: dict[str, Any] = {"detector": det.name, "module": list(det.module)}
        try:
            if assembled:
                out["geometry"] = describe_geometry(det, self.geometry_file)
                shape = self.geometry(det).output_array_for_position().shape
            else:
                shape = det.module
            out["image_shape"] = list(shape)
            out["crop"] = self.crop(shape).to_dict()
        except ValueError as exc:
            out["error"] = str(exc)
        return out
