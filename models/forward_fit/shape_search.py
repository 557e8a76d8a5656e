"""Shape, size and orientation of measured patterns by fitting the forward model to them.

The way Barke et al. (Nat. Commun. 6, 6187 (2015)) identified the shapes of the measured Ag
clusters: simulate candidates and keep the one that reproduces the pattern.  Here every
candidate goes through the measured detector model
(:data:`factory.msft.detector_response.AG_CLUSTER_DETECTOR`), so simulated and measured
patterns are compared in one display space:

1. a shared random search: ``search`` random (radius uniform in the range, orientation
   uniform) patterns per shape, each scored against every measured pattern at once (Pearson r
   over the valid detector pixels);
2. per pattern and shape, the best candidate refined by gradient descent through the
   differentiable MSFT (:func:`.gradient.refine`, ``steps`` L-BFGS passes);
3. the shapes ranked by the refined r.

Nothing is trained or tuned on the measured patterns: each is only fitted, as a forward fit
does.  Library use::

    res = fit_shapes(load_ag_clusters(), search=1000, steps=25)
    res["barke5"]["ranked"][0]        # the best shape
"""

from __future__ import annotations

import time
from typing import Any, Callable

import numpy as np

from factory.errors import ConfigError

SHAPES = ("sphere", "icosahedron", "cuboctahedron", "octahedron", "decahedron", "truncated_octahedron",
          "truncated_twinned_tetrahedron")


def fit_shapes(images: dict[str, np.ndarray], *, shapes=SHAPES, search: int = 1000, steps: int = 25,
               config: Any = "small", detector=None, seed: int = 0,
               progress: Callable[[str], None] | None = None) -> dict[str, dict[str, Any]]:
    """``{name: {"ranked": [shape, ...], "fits": {shape: {r, radius_nm, quaternion, r_search}}}}`` for
    measured 8-bit patterns ``images`` ({name: 0..255 array of the detector's shape})."""
    from scipy.spatial.transform import Rotation

    from factory.msft.detector_response import AG_CLUSTER_DETECTOR, masked_correlation
    from factory.msft.simulator import pattern

    from .gradient import refine
    from .model import ForwardModel

    det = detector or AG_CLUSTER_DETECTOR
    mask = det.mask()
    targets = {n: det.measured_input(im) for n, im in images.items()}
    rng = np.random.default_rng(seed)
    best: dict[str, dict[str, tuple[float, float, np.ndarray]]] = {n: {} for n in targets}
    models = {s: ForwardModel(config, shape=s) for s in shapes}
    linear = {s: fm.config.model_copy(update={"output": "linear"}) for s, fm in models.items()}
    crop = next(iter(linear.values())).crop
    if tuple(det.shape) != (crop, crop):  # refused before any simulation
        raise ConfigError(f"config {config!r} gives {crop} x {crop} images; the detector is "
                          f"{det.shape[0]} x {det.shape[1]}")
    t0 = time.perf_counter()
    for s in shapes:
        fm, cfg = models[s], linear[s]
        for _ in range(search):
            radius = float(rng.uniform(*fm.radius_range))
            q = Rotation.random(random_state=rng).as_quat(scalar_first=True)
            shown = det.apply(pattern(s, radius, q, config=cfg).image)
            for n, x in targets.items():
                r = masked_correlation(shown, x, mask)
                if r > best[n].get(s, (-2.0,))[0]:
                    best[n][s] = (r, radius, q)
        if progress:
            progress(f"search {s}: {search} patterns, {time.perf_counter() - t0:.0f} s")
    out = {}
    for n, x in targets.items():
        fits = {}
        for s in shapes:
            r0, radius0, q0 = best[n][s]
            fm = models[s]
            res = refine(x, fm, radius0, q0, steps=steps, mask=mask, response=det.apply) if steps else None
            radius, q = (res.radius, res.quaternion) if res else (radius0, list(q0))
            r = masked_correlation(det.apply(pattern(s, radius, q, config=linear[s]).image), x, mask)
            fits[s] = {"r": r, "radius_nm": float(radius), "quaternion": [float(v) for v in q], "r_search": r0}
        out[n] = {"ranked": sorted(shapes, key=lambda s: -fits[s]["r"]), "fits": fits}
        if progress:
            progress(f"{n}: {out[n]['ranked'][0]} (r = {fits[out[n]['ranked'][0]]['r']:.3f}), "
                     f"{time.perf_counter() - t0:.0f} s")
    return out
