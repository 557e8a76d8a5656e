"""``kind: tdse``: the 2D TDSE as a simulator of the generation engine (no Ray in here).

Labels of sample i come from (seed, i) only.  With ``sampling.ladder = n`` consecutive groups
of n samples share (molecule, R, I0, CEP, alpha), drawn from ``rng_for(seed, i // n, 0)``, and
sample i has intensity ``I0 (i % n + 1) / n``: the intensity ladder of focal averaging.  A
block's samples with the same geometry share one ground state and are propagated together
in batches of ``batch``.  Images are the PMD, float32 (ky, kx), |k| <= k_out.

Diagnostics per sample: ``E0`` (ground-state energy), ``norm_left`` and ``absorbed`` (norm in
the box at the end / removed by the mask), ``yield`` (the stored PMD integrated) and
``background``, the field-free background of the run in the units of ``yield``
(:func:`factory.tdse.api.field_free_background`): an upper bound on the continuum population
of the initial state under the discrete field-free step (what it would ionise with no pulse;
computed once per geometry with the ground state, one extra step on the full grid), plus with
``precision: single`` the float32 rounding floor (measured: n_steps x 1.6e-14).  The ground
state is made stationary under that step (``groundstate.stationary``), so in double precision
it is 3e-16 .. 2e-12 on the tiny and small presets (H2+, R = 1..8), and their measured
field-free yields lie below it, while the smallest yield of their range (R = 1 a.u.,
1e14 W/cm^2) is 3.0e-9 (tiny) / 2.4e-9 (small).  With ``stationary`` off it bounds the
imaginary-time state at 2-4e-5 (loosely: that state's measured field-free yield is 3-7e-7 on
the tiny grid).  In single precision it is 7.1e-11 (tiny) and 1.8e-10 (small): only 1/40 and
1/15 of the yield at that corner.  ``yield / background >= 100`` means the PMD is not spurious
ionisation.  The propagated field-free yield itself (a run with intensity 0, one extra
propagation) is measured per preset by ``benchmarks/tdse_validation.py``.
"""

from __future__ import annotations

from collections import OrderedDict

import numpy as np

from ..backend import Backend
from ..simulation import Coord, SimResult, Simulator, rng_for
from .api import compute_pmds, geometry_key
from .config import TDSEConfig
from .groundstate import GroundState
from .mask import crop_axes

PARAMS = ["R", "intensity", "cep", "alpha", "molecule", "I0", "ladder_index"]
DIAGNOSTICS = ["E0", "norm_left", "absorbed", "yield", "background"]
UNITS = {"R": "a.u.", "intensity": "W/cm^2", "cep": "rad", "alpha": "deg", "molecule": "code",
         "I0": "W/cm^2", "ladder_index": "", "E0": "a.u.", "norm_left": "", "absorbed": "", "yield": "",
         "background": ""}
BACKGROUND_NOTE = ("field-free background of the run in units of yield: upper bound on the continuum population of the "
                   "initial state under the discrete field-free step (Chebyshev bound from the step's residual), plus "
                   "with precision single the float32 rounding floor n_steps x 1.6e-14 (measured); "
                   "yield / background >= 100: the PMD is not spurious ionisation")


class TDSESimulator(Simulator):
    kind = "tdse"
    config_model = TDSEConfig

    def __init__(self, config: TDSEConfig, threads: int = 1):
        super().__init__(config, threads=threads)
        self.cfg: TDSEConfig = config
        self.backend = Backend.create(config.backend, threads=self.threads)
        self.grid = config.build_grid()
        self._kx, self._ky = crop_axes(self.grid, config.k_out)
        self._gs_cache: OrderedDict[tuple, GroundState] = OrderedDict()

    # -- description ------------------------------------------------------------
    def coords(self) -> tuple[Coord, Coord]:
        return (
            Coord("ky", self._ky, "a.u.", "photoelectron momentum perpendicular to the polarisation"),
            Coord("kx", self._kx, "a.u.", "photoelectron momentum along the polarisation"),
        )

    @property
    def param_names(self) -> list[str]:
        return list(PARAMS)

    @property
    def diagnostic_names(self) -> list[str]:
        return list(DIAGNOSTICS)

    def store_attrs(self) -> dict:
        c = self.cfg
        return {
            "units": UNITS,
            "molecule_codes": {name: i for i, name in enumerate(c.molecule_names())},
            "image": "photoelectron momentum distribution |b(k)|^2 (probability per a.u.^2), mask method",
            "grid": {"nx": c.grid.nx, "ny": c.grid.ny, "dx": self.grid.dx, "dy": self.grid.dy,
                     "x_max": c.grid.x_max, "y_max": c.grid.y_max},
            "dt": c.dt, "n_steps": c.n_steps(), "ladder": c.sampling.ladder,
            "ladder_rule": "intensity = I0 * (ladder_index + 1) / ladder",
            "ground_state": ("imaginary time (dtau = %g a.u.) on a sub-box, " % c.groundstate.dtau)
            + ("then filtered to the ground state of the field-free real-time step (windows %g a.u. on the sub-box, "
               "%g a.u. on the grid)" % (c.groundstate.filter_time, c.groundstate.polish_time)
               if c.groundstate.stationary else "not made stationary under the real-time step"),
            "background": BACKGROUND_NOTE,
        }

    # -- sampling -------------------------------------------------------------------
    def sample_params(self, seed: int, index: int) -> dict[str, float]:
        s = self.cfg.sampling
        n = s.ladder
        group, k = divmod(int(index), n)
        rng = rng_for(seed, group, 0)
        u = rng.random(5)  # always 5 draws: fixed values do not shift the others

        def pick(name: str, ui: float) -> float:
            lo, hi = s.bounds(name)
            return lo + (hi - lo) * ui

        molecule = s.molecule[min(int(u[0] * len(s.molecule)), len(s.molecule) - 1)]
        i0 = pick("intensity", u[2])
        return {
            "R": float(pick("R", u[1])),
            "intensity": float(i0 * (k + 1) / n),
            "cep": float(pick("cep", u[3])),
            "alpha": float(pick("alpha", u[4])),
            "molecule": float(self.cfg.molecule_code(molecule)),
            "I0": float(i0),
            "ladder_index": float(k),
        }

    # -- simulation -----------------------------------------------------------------
    def simulate(self, params: dict[str, float], rng: np.random.Generator) -> SimResult:
        return self.simulate_batch([params], [rng])[0]

    def simulate_batch(self, params: list[dict[str, float]], rngs: list[np.random.Generator]) -> list[SimResult]:
        """Batches of ``batch`` runs, same geometries next to each other (they share arrays)."""
        names = self.cfg.molecule_names()
        runs = [{"molecule": names[int(p["molecule"])], "R": float(p["R"]), "alpha": float(p["alpha"]),
                 "intensity": float(p["intensity"]), "cep": float(p["cep"])} for p in params]
        order = sorted(range(len(runs)), key=lambda j: (geometry_key(runs[j]["molecule"], runs[j]["R"], runs[j]["alpha"]), j))
        results: list[SimResult | None] = [None] * len(runs)
        for s in range(0, len(order), self.cfg.batch):
            part = order[s : s + self.cfg.batch]
            grounds = {k: g for k, g in self._gs_cache.items()}
            with self.backend.activated():  # torch kernels on this instance's threads
                pmds = compute_pmds(self.cfg, [runs[j] for j in part], grounds, backend=self.backend)
            for key, gs in grounds.items():
                self._remember(key, gs)
            for j, res in zip(part, pmds):
                if not np.isfinite(res.pmd).all():
                    raise FloatingPointError(f"TDSE produced NaN/Inf for sample parameters {params[j]}")
                results[j] = SimResult(res.pmd.astype(np.float32), res.diagnostics())
        return results  # type: ignore[return-value]

    def _remember(self, key: tuple, gs: GroundState) -> None:
        """Keep the ground states of the last few geometries (ladders span blocks)."""
        self._gs_cache[key] = gs
        self._gs_cache.move_to_end(key)
        while len(self._gs_cache) > 4:
            self._gs_cache.popitem(last=False)
