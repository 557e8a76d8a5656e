"""The MSFT stage of ``factory quickstart``: a small scattering set, its images and labels.

Registered in :mod:`factory.app.quickstart` with ``("msft", stage_msft)`` in ``STAGES``.
Sizes: tiny 32 images (48^3 voxels), small 256 images (96^3, the paper's 128 x 128 q grid),
paper 256 images on the paper grid (192^3 -> 512 -> 128); about 10 s, 30 s and 1 min on 2 cores.
"""

from __future__ import annotations

import time

QUICKSTART_SAMPLES = {"tiny": 32, "small": 256, "paper": 256}


def stage_msft(ctx) -> str:
    """Generate ``msft/<size>`` (capped sample count), plot samples and label histograms."""
    from factory.plots import plot_param_hist, plot_samples
    from factory.app.quickstart_context import generate_stage
    from factory.store import DatasetStore
    from factory.msft.simulator import pattern

    n = QUICKSTART_SAMPLES.get(ctx.size, 32)
    cfg, rep, store = generate_stage(ctx, "msft", f"msft/{ctx.size}", [f"samples={n}"])
    fig = plot_samples(store, ctx.out / "msft-samples.png", n=8, labels=["radius", "q0"])
    hist = plot_param_hist(store, ctx.out / "msft-params.png")
    t0 = time.perf_counter()
    pattern("icosahedron", 80.0, (1.0, 0.0, 0.0, 0.0), cfg.simulator)
    t_one = time.perf_counter() - t0
    sim = cfg.simulator
    store = DatasetStore.open(store.path)
    return (
        "## MSFT wide-angle scattering (icosahedral clusters, Stielow et al., MLST 2020)\n\n"
        f"`factory generate msft/{ctx.size} --set samples={n}`: {rep.done}/{rep.samples} images of "
        f"{sim.crop} x {sim.crop} (voxels {sim.n_voxels}^3 of {sim.voxel_nm:.3f} nm, pad {sim.pad}, "
        f"lambda {sim.wavelength_nm} nm, absorption length {sim.absorption_length_nm} nm) in {rep.wall_s:.1f} s "
        f"({rep.samples_per_s:.1f} images/s) on {rep.where}; one image alone {t_one * 1e3:.0f} ms. Labels: "
        "circumradius uniform in "
        f"[{sim.radius_nm[0]:g}, {sim.radius_nm[1]:g}] nm, orientation (q0..q3, scalar first) uniform in the "
        "icosahedral fundamental domain.\n\n"
        f"![msft samples]({fig.name})\n\n![msft labels]({hist.name})\n"
    )
