"""Measured scattering patterns shipped inside the package (package data, read with importlib.resources).

``ag_clusters/``: eight single-shot XUV (13.5 nm) wide-angle scattering patterns of free Ag
nanoclusters, 128 x 128 8-bit grayscale PNGs, display-scaled (not calibrated intensities), from
I. Barke et al., Nat. Commun. 6, 6187 (2015), CC-BY 4.0, as extracted and rescaled by
T. Stielow et al., Phys. Rev. E 103, 053312 (2021), MIT.  The icosahedra ``barke5`` and ``barke6``
are the experimental test case of Stielow, Schmidt, Peltz, Fennel & Scheel, Mach. Learn.: Sci.
Technol. (2020), Fig. 5 (``factory fig5``).  Keep :data:`ATTRIBUTION` wherever they are used or
shown; the folder's README.md and LICENSE.md hold the full note.

Public API::

    from factory.msft.measured import load_ag_cluster, load_ag_clusters, ag_cluster_labels
    img = load_ag_cluster("barke5")        # float64 (128, 128), values 0..255
    shapes = ag_cluster_labels()           # {"barke1": "Decahedron", ...}

The files are read through :func:`importlib.resources.files`, so they are found from a source
checkout, an editable install and an installed wheel alike.  Decoding needs Pillow (imported
only when a pattern is loaded).
"""

from __future__ import annotations

import csv
import io
from importlib.resources import files
from importlib.resources.abc import Traversable

import numpy as np

from ...errors import ConfigError

ATTRIBUTION = ("Measured patterns: I. Barke et al., Nat. Commun. 6, 6187 (2015), CC-BY 4.0; extracted and "
               "rescaled by T. Stielow et al., Phys. Rev. E 103, 053312 (2021), MIT license.")
AG_CLUSTER_NAMES = tuple(f"barke{i}" for i in range(1, 9))


def ag_cluster_dir() -> Traversable:
    """The packaged folder of the eight Ag cluster patterns (a path-like ``Traversable``)."""
    return files(__name__) / "ag_clusters"


def ag_cluster_labels() -> dict[str, str]:
    """Shape class of each pattern as identified in the source papers, from ``labels.csv``."""
    text = (ag_cluster_dir() / "labels.csv").read_text(encoding="utf-8")
    return {row["scatter"].rsplit("/", 1)[-1].removesuffix(".png"): row["polyhedron"]
            for row in csv.DictReader(io.StringIO(text))}


def load_ag_cluster(name: str) -> np.ndarray:
    """One packaged pattern by name (``"barke1"`` .. ``"barke8"``, ``.png`` optional) as float64 0..255."""
    stem = name.removesuffix(".png")
    if stem not in AG_CLUSTER_NAMES:
        raise ConfigError(f"measured pattern {name!r} is not shipped; choose one of {', '.join(AG_CLUSTER_NAMES)}")
    return decode_png((ag_cluster_dir() / f"{stem}.png").read_bytes())


def load_ag_clusters(names=AG_CLUSTER_NAMES) -> dict[str, np.ndarray]:
    """Several packaged patterns, ``{name: image}`` in the order asked."""
    return {n.removesuffix(".png"): load_ag_cluster(n) for n in names}


def decode_png(data: bytes) -> np.ndarray:
    """PNG bytes -> grayscale float64 array (0..255)."""
    from PIL import Image

    with Image.open(io.BytesIO(data)) as im:
        return np.asarray(im.convert("L"), dtype=np.float64)


__all__ = ["AG_CLUSTER_NAMES", "ATTRIBUTION", "ag_cluster_dir", "ag_cluster_labels", "decode_png",
           "load_ag_cluster", "load_ag_clusters"]
