"""The TDSE stage of ``factory quickstart``: a few H2+ PMDs, their pictures and diagnostics.

Registered in :mod:`factory.app.quickstart` with ``("tdse", stage_tdse)`` in ``STAGES``.  Sizes
(the TDSE's own presets are much slower than the other kinds', so the stage stays small):
tiny -> 4 PMDs of ``tdse/tiny``; small -> 8 PMDs of ``tdse/tiny`` as two batched ladders of 4
intensities; paper -> 2 PMDs of ``tdse/small`` (about 4 min on 2 cores).  Orchestration only:
the physics lives in the other modules of this package.
"""

from __future__ import annotations

PLAN = {
    "tiny": ("tdse/tiny", ["samples=4", "chunk=2"]),
    "small": ("tdse/tiny", ["samples=8", "chunk=4", "simulator.sampling.ladder=4"]),
    "paper": ("tdse/small", ["samples=2", "chunk=1"]),
}


def stage_tdse(ctx) -> str:
    """Generate the size's TDSE set, plot the PMDs (log scale) and tabulate the diagnostics."""
    from factory.plots import plot_samples
    from factory.app.quickstart_context import generate_stage

    preset, overrides = PLAN.get(ctx.size, PLAN["tiny"])
    cfg, rep, store = generate_stage(ctx, "tdse", preset, overrides)
    fig = plot_samples(store, ctx.out / "tdse-samples.png", n=8, log=True, labels=["R", "intensity"])
    p, d = store.params(), store.diagnostics()
    sim = cfg.simulator
    g = sim.build_grid()
    rows = "\n".join(
        f"| {i} | {p['R'][i]:.2f} | {p['intensity'][i]:.2e} | {d['E0'][i]:.5f} | {d['absorbed'][i]:.2e} | "
        f"{d['yield'][i]:.2e} |"
        for i in range(len(p["R"]))
    )
    return (
        "## 2D TDSE photoelectron momentum distributions (H2+, Shvetsov-Shilovski & Lein, PRA 2023)\n\n"
        f"`factory generate {preset} " + " ".join(f"--set {o}" for o in overrides) + f"`: {rep.done}/{rep.samples} "
        f"PMDs in {rep.wall_s:.1f} s on {rep.where} (grid {g.nx} x {g.ny}, dx = {g.dx:.3g} a.u., dt = {sim.dt}, "
        f"to {sim.t_end:g} t_f, mask at r_b = {sim.mask.radius:g}; intensity ladder of {sim.sampling.ladder}). "
        "PMDs by the mask method, shown as log10(P / max P) down to 1e-6; the `tiny` grid is a quick look, "
        "`tdse/small` and `tdse/paper` are the data presets.\n\n"
        "| sample | R (a.u.) | I (W/cm^2) | E0 (a.u.) | absorbed norm | mask-method yield |\n"
        "| --- | --- | --- | --- | --- | --- |\n"
        f"{rows}\n\n![tdse samples]({fig.name})\n"
    )
