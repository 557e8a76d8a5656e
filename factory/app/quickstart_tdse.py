"""The TDSE stages of ``factory quickstart``: PMDs the PMD CNN trains on, and the shifted sets of Table I.

``stage_tdse`` generates H2+ PMDs (Shvetsov-Shilovski & Lein, PRA 107, 033106 (2023)) as
intensity ladders (a ladder shares one ground state and one batched propagation) and
preprocesses them to network input (pmd2d, each image's own window, the paper's Sec. II A);
the PMD CNN stage trains on that store (``ctx.stores["tdse-net"]``).  ``stage_tdse_shifted``
(after the CNN) generates the shifted sets of Table I: focal-averaged PMDs (eqs. 5-6) from the
ladders of a store of their own (new R values: averages of ladders the CNN trained on would let
direct comparison find their members), R in [8, 12], alpha, CEP and HeH+; it preprocesses them
the same way and transfer-learns the CNN on each, so the Table I stage scores every method on
physics data made in this run.

Sizes: the TDSE's own data presets cost a minute per PMD on 2 cores, so the quickstart runs
the ``tdse/tiny`` grid with the settings in :data:`SPEED` (their fidelity against the
preset's own numerics is measured in README, "Quickstart on TDSE PMDs"); ``paper`` uses the
``tdse/small`` preset as it is.  Orchestration only: the physics lives in ``factory.tdse``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

#: cheaper numerics for the quickstart's tiny-grid PMDs: the mask every 4 steps (M^4 each time: the PMD moves
#: by 7e-4, rel. L2). Double precision stays: in single precision the rounding floor of the field-free
#: propagation (~7e-11 on this grid) exceeds the yield of the weakest ladder members (R = 1 a.u. at
#: 2.5e13 W/cm^2: 1.8e-11)
SPEED = ["simulator.mask.every=4"]
#: R in [8, 12] needs a larger box: the mask must stay outside R/2 + the quiver radius (check_physics)
LARGE_BOX = ["simulator.grid.nx=216", "simulator.grid.ny=216", "simulator.grid.x_max=64.0",
             "simulator.grid.y_max=64.0", "simulator.mask.radius=50.0"]
#: each shifted set: (config, overrides); the configs name the `small` preset, the quickstart runs them on `tiny`
SHIFTED = {
    "focal": ("tdse/focal", []),  # ladders, focal-averaged before preprocessing
    "large-R": ("tdse/large-R", LARGE_BOX),
    "alpha": ("tdse/alpha", []),
    "cep": ("tdse/cep", []),
    "heh": ("tdse/heh", []),
}
SHIFT_SPLIT = (0.5, 0.15, 0.35)  # train (transfer learning) / validation / test, as in docs/baselines.md's Table I
MAIN_SPLIT = (0.7, 0.15, 0.15)


@dataclass(frozen=True)
class Plan:
    preset: str  # the TDSE grid and numerics
    samples: int  # PMDs of the main set, in ladders of `ladder` intensities
    ladder: int
    shifted_samples: int  # PMDs per shifted set
    speed: list[str] = field(default_factory=lambda: list(SPEED))
    transfer_epochs: int = 15

    def main_overrides(self) -> list[str]:
        return [f"samples={self.samples}", f"chunk={2 * self.ladder}", f"simulator.sampling.ladder={self.ladder}",
                f"simulator.batch={self.ladder}", *self._numerics()]

    def shifted_overrides(self, name: str, extra: list[str]) -> list[str]:
        if name == "focal":  # as many focal-averaged PMDs as the other sets have PMDs
            return [f"samples={self.shifted_samples * self.ladder}", f"chunk={2 * self.ladder}",
                    f"simulator.sampling.ladder={self.ladder}", f"simulator.batch={self.ladder}", *self._numerics()]
        return [f"samples={self.shifted_samples}", "chunk=4", "simulator.batch=1", *self._numerics(), *extra]

    def _numerics(self) -> list[str]:
        name = self.preset.split("/")[-1]
        return [f"simulator.preset={name}", *self.speed]


PLANS = {
    # a smoke run of the chain (the test suite runs it): propagation only to the end of the pulse
    "tiny": Plan("tdse/tiny", samples=16, ladder=4, shifted_samples=4, transfer_epochs=2,
                 speed=[*SPEED, "simulator.t_end=1.0"]),
    "small": Plan("tdse/tiny", samples=128, ladder=4, shifted_samples=10, transfer_epochs=10),
    "paper": Plan("tdse/small", samples=2000, ladder=4, shifted_samples=200, speed=[], transfer_epochs=30),
}


def _plan(ctx) -> Plan:
    return PLANS.get(ctx.size, PLANS["tiny"])


def _cli(preset: str, overrides: list[str], out: str) -> str:
    return f"factory generate {preset} " + " ".join(f"--set {o}" for o in overrides) + f" --out {out}"


def _preprocess(ctx, name: str, source: Path, split: tuple[float, float, float]):
    from factory.processing.steps import preprocess_store

    rep = preprocess_store([source], ctx.out / f"{name}.zarr", mode="pmd2d", window="per-image", split=split,
                           overwrite=True, workers=ctx.workers, progress=ctx.progress)
    ctx.stores[name] = Path(rep.path)
    return rep


def stage_tdse(ctx) -> str:
    """Generate the main PMD set, plot it, focal-average its ladders, preprocess both."""
    from factory.plots import plot_samples
    from factory.store import DatasetStore

    from factory.app.quickstart_context import generate_stage

    plan = _plan(ctx)
    overrides = plan.main_overrides()
    cfg, rep, store = generate_stage(ctx, "tdse", plan.preset, overrides)
    fig = plot_samples(store, ctx.out / "tdse-samples.png", n=8, log=True, labels=["R", "intensity"])
    sim, g = cfg.simulator, cfg.simulator.build_grid()
    p, d = store.params(), store.diagnostics()
    rows = "\n".join(f"| {i} | {p['R'][i]:.2f} | {p['intensity'][i]:.2e} | {d['E0'][i]:.5f} | {d['absorbed'][i]:.2e} | "
                     f"{d['yield'][i]:.2e} | {d['background'][i]:.1e} |" for i in range(min(8, len(p["R"]))))
    weak = int((d["yield"] < 100 * d["background"]).sum())
    net = _preprocess(ctx, "tdse-net", store.path, MAIN_SPLIT)
    nf = plot_samples(DatasetStore.open(net.path), ctx.out / "tdse-net.png", n=4, labels=["R", "intensity"])
    return (
        "## 2D TDSE photoelectron momentum distributions (H2+, Shvetsov-Shilovski & Lein, PRA 107, 033106 (2023))\n\n"
        f"`{_cli(plan.preset, overrides, 'tdse.zarr')}`: {rep.done}/{rep.samples} PMDs in {rep.wall_s:.1f} s on "
        f"{rep.where} (grid {g.nx} x {g.ny}, dx = {g.dx:.3g} a.u., dt = {sim.dt}, {sim.precision} precision, mask "
        f"at r_b = {sim.mask.radius:g} every {sim.mask.every} steps, to {sim.t_end:g} t_f; R in "
        f"[{sim.sampling.bounds('R')[0]:g}, {sim.sampling.bounds('R')[1]:g}] a.u., ladders of "
        f"{sim.sampling.ladder} intensities). PMDs by the mask method, shown as log10(P / max P) down to 1e-6.\n\n"
        "| sample | R (a.u.) | I (W/cm^2) | E0 (a.u.) | absorbed norm | mask-method yield | field-free background |\n"
        "| --- | --- | --- | --- | --- | --- | --- |\n"
        f"{rows}\n\n{weak} of {len(p['R'])} PMDs have a yield below 100x the field-free background of their initial "
        f"state (the numerical floor: a PMD at that level is not physics).\n\n![tdse samples]({fig.name})\n\n"
        "### Network input (Shvetsov-Shilovski & Lein, PRA 107, 033106 (2023), Sec. II A)\n\n"
        "`factory process preprocess tdse.zarr --mode pmd2d --window per-image "
        f"--split {','.join(map(str, MAIN_SPLIT))}`: {net.samples} images of 128 x 256 (log10(P / max P) clipped "
        "at -5 in each image's own momentum window, bicubic, 0..255), the PMD CNN's training set.\n\n"
        f"![network input]({nf.name})\n"
    )


def stage_tdse_shifted(ctx) -> str:
    """The shifted sets of Table I, preprocessed like the main set, and the CNN transfer-learned on each."""
    from factory.plots import plot_samples
    from factory.processing.steps import focal_average_store
    from factory.store import DatasetStore

    from factory.app.quickstart_context import generate_stage
    from models.transfer import transfer

    plan = _plan(ctx)
    model = ctx.out / "train-pmd-cnn" / "model"
    if "tdse-net" not in ctx.stores or not (model / "model.json").is_file():
        return "## Shifted TDSE sets (Table I)\n\nNo PMD CNN trained on TDSE PMDs in this run; skipped.\n"
    rows, figure = [], ""
    for name, (preset, extra) in SHIFTED.items():
        overrides = plan.shifted_overrides(name, extra)
        _, rep, store = generate_stage(ctx, f"tdse-{name}", preset, overrides)
        how = f"`{_cli(preset, overrides, f'tdse-{name}.zarr')}` ({rep.wall_s:.0f} s)"
        raw = store.path
        if name == "focal":
            focal = focal_average_store(raw, ctx.out / "tdse-focal-averaged.zarr", overwrite=True,
                                        workers=ctx.workers, progress=ctx.progress)
            raw = Path(focal.path)
            how += f", then `factory process focal-average tdse-focal.zarr` ({focal.samples} PMDs)"
            fig = plot_samples(DatasetStore.open(raw), ctx.out / "tdse-focal.png", n=4, log=True, labels=["R", "I0"])
            figure = f"\n![focal-averaged]({fig.name})\n"
        net = _preprocess(ctx, f"pmd-shift-{name}", raw, SHIFT_SPLIT)
        out = ctx.out / f"transfer-{name}"
        res = transfer(model, net.path, out, freeze=3, lr=1e-3, epochs=plan.transfer_epochs, scratch=False,
                       overrides={"run.backend": "local"}, overwrite=True, progress=False)
        ctx.stores[f"pmd-transfer-{name}"] = out / "transfer" / "model"
        rows.append(f"| {name} | {how} | {net.samples} | {res.get('n_train', '-')} | {res.get('held_out', '-')} |")
    return (
        "## Shifted TDSE sets and transfer learning (Shvetsov-Shilovski & Lein, PRA 107, 033106 (2023), Sec. IV)\n\n"
        f"Each set preprocessed like the training set (pmd2d, per-image window, split "
        f"{', '.join(map(str, SHIFT_SPLIT))}); the PMD CNN transfer-learned on its training part (first 3 conv "
        f"blocks frozen, Adam lr 1e-3, {plan.transfer_epochs} epochs). Focal averaging (eqs. 5-6, product "
        "trapezoidal rule) turns each ladder of intensities into one PMD.\n\n"
        "| set | made by | PMDs | transfer training | held out |\n| --- | --- | --- | --- | --- |\n"
        + "\n".join(rows) + "\n" + figure
    )
