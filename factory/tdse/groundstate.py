"""Ground state: imaginary-time split-operator relaxation, then (given the real-time step ``dt``)
a spectral filter that makes it stationary under the discrete field-free propagator.

Imaginary time: ``psi <- exp(-V dtau/2) F^-1 exp(-k^2 dtau/2) F exp(-V dtau/2) psi``,
renormalised; the energy ``<psi|H|psi>`` (spectral kinetic term) is evaluated every
``check_every`` steps and the iteration stops when two successive values differ by less than
``tol``.  The split error shifts the fixed point by O(dtau^2) and the variational energy by
O(dtau^4).

Stationarity: the real-time step ``U = e^{-iV dt/2} F^-1 e^{-i k^2 dt/2} F e^{-iV dt/2}`` is
exactly ``e^{-i H_U dt}`` with ``H_U = H + O(dt^2)`` (the split commutators), and the
imaginary-time fixed point is the ground state of a different ``H + O(dtau^2)`` (even the
same ordering gives the opposite sign of the dtau^2 term).  So the relaxed state is *not* an
eigenstate of the propagator actually used: field-free it sheds a population of a few 1e-7
into the continuum, which the mask method counts as ionisation (tiny grid, H2+, R = 1..8:
field-free yield 7.4e-7 .. 2.6e-7, while the smallest physical yield of that preset's range,
R = 1 a.u. at 1e14 W/cm^2, is 3.0e-9).  :func:`stationary_filter` removes it with a windowed
time-domain filter on ``U`` itself (filter diagonalisation),

    psi_f = sum_{n=0}^{N} w(n/N) e^{i E_U n dt} U^n psi,     N dt = filter_time,

``w`` the 4-term Blackman-Harris window and ``E_U = -arg<psi|U psi>/dt`` the step's own
eigenphase.  An eigencomponent of U at E is multiplied by W(E - E_U), the window's transform:
1 at E_U, below 2.5e-5 (the sidelobes) once |E - E_U| > 8 pi / (N dt).  With N dt >= 10 pi / Ip
(enforced) every continuum state (E - E_U >= Ip) is suppressed by >= 4e4 in amplitude; the
default 60 a.u. also takes out the bound excited states more than 0.42 a.u. away (which a
pulse would ionise: at R = 1, 1e14 W/cm^2 a 25 a.u. window leaves the yield 0.4 % high, 60
and 200 a.u. agree to 3e-5).  The filter uses the same operator ordering and ``dt`` as the
propagation but no field and no mask (M = 1 where the bound state lives; the propagator stays
unitary, so the filter is a spectral projection); it runs in double precision on the backend
given, with FFTW_ESTIMATE plans, so it is deterministic, and the result serves both
precisions (a float32 propagation adds its own rounding floor: field-free yield 6.5e-11 on the
tiny grid, R = 1, from the ~1e-14 per step that rounding scatters into the continuum).

Both stages run on a centred sub-box of the propagation grid (same spacing, holding the
molecule plus ``margin`` a.u. on every side), which makes the ground state cheap even on the
paper's 4096 x 2048 grid; the result is embedded into the full box.  The sub-box's and the full
box's eigenstates of U differ by the state's small tail beyond the sub-box (the spectral
kinetic operator couples grid points ~1/d^2, so bound states carry a power-law tail: on the
tiny grid ~1e-6 in amplitude at r = 20 a.u., against 0.4 at the peak).  That difference alone
would shed ~1e-12 on the tiny grid, so a second, short filter (``polish_time``, 10 a.u.) on
the full grid removes it (it lies at high energies).  Measured field-free yields after both
(double precision, the same propagation as a PMD run): tiny 7.7e-15 .. 1.1e-14 for
R = 1..8 a.u., small 2.8e-16 (R = 2) and 9.3e-16 (R = 8).  The norm the mask absorbs
field-free stays ~1e-8 (tiny) / 3e-10 (small): the stationary state's high-momentum grid tail
reaching the mask, outside the stored momentum window.

:func:`background_bound` bounds the field-free ionisation of a state from one step:
Chebyshev's inequality in the step's own phases.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .fftops import make_ops
from .grid import Grid
from .potentials import Molecule, initial_guess, potential


#: 4-term Blackman-Harris window: sidelobes -92 dB (2.5e-5 of the peak), main lobe |omega| < 8 pi / T
_BLACKMAN_HARRIS = (0.35875, 0.48829, 0.14128, 0.01168)
#: the filter is at least this many times 2 pi / Ip long: the window's main lobe (8 pi / T) then
#: ends at 0.8 Ip, below the continuum threshold
FILTER_PERIODS = 5.0


@dataclass
class GroundState:
    energy: float  # a.u., <psi|H|psi>
    psi: np.ndarray  # (ny, nx) on ``grid``, normalised: sum |psi|^2 dx dy = 1
    grid: Grid
    steps: int  # imaginary-time steps
    converged: bool
    energy_change: float  # |E_k - E_(k-1)| at the last check
    dt: float | None = None  # real-time step the state was made stationary under (None: imaginary time only)
    filter_steps: int = 0  # applications of U in the stationarity filters (sub-box + full grid)
    nonstationary: float = 0.0  # population of the imaginary-time state the filters removed
    background: float = float("nan")  # background_bound of psi under the step dt (nan without dt)

    @property
    def x(self) -> np.ndarray:
        return self.grid.x

    @property
    def y(self) -> np.ndarray:
        return self.grid.y


def energy(grid: Grid, V: np.ndarray, psi: np.ndarray) -> float:
    """<psi|H|psi> / <psi|psi> with the spectral kinetic energy (numpy)."""
    psik = np.fft.fft2(psi)
    k2 = grid.kx[None, :] ** 2 + grid.ky[:, None] ** 2
    w = np.abs(psik) ** 2
    kin = 0.5 * float((k2 * w).sum() / w.sum())
    d = np.abs(psi) ** 2
    return kin + float((V * d).sum() / d.sum())


def imaginary_time(
    grid: Grid,
    V: np.ndarray,
    psi: np.ndarray,
    dtau: float = 0.05,
    tol: float = 1e-10,
    max_steps: int = 50000,
    check_every: int = 20,
    backend: str = "auto",
) -> GroundState:
    """Relax ``psi`` to the lowest state of H = -nabla^2/2 + V of its symmetry class."""
    if dtau <= 0:
        raise ValueError(f"groundstate dtau = {dtau!r}: must be > 0")
    ops = make_ops(backend, (1, *grid.shape), buffers=1, quick_plan=True)
    vh_np = np.exp(-0.5 * dtau * V)
    vh, vf = ops.asarray(vh_np[None]), ops.asarray((vh_np * vh_np)[None])
    n_tot = grid.nx * grid.ny
    ty = ops.asarray(np.exp(-0.5 * dtau * grid.ky**2) / n_tot)
    tx = ops.asarray(np.exp(-0.5 * dtau * grid.kx**2)[None, :])
    buf = ops.empty()
    buf[...] = ops.asarray(np.asarray(psi, dtype=np.complex128)[None])
    dA = grid.area_element
    e_old, steps, change, converged = np.inf, 0, np.inf, False
    cur = buf
    while steps < max_steps:
        n = min(check_every, max_steps - steps)
        ops.mul(cur, vh)
        for i in range(n):
            cur = ops.fft(cur)
            ops.kinetic(cur, ty, tx)
            cur = ops.ifft(cur)
            ops.mul(cur, vh if i == n - 1 else vf)
        steps += n
        nrm = float(ops.norms(cur)[0]) * dA
        if not np.isfinite(nrm) or nrm == 0:
            raise FloatingPointError("imaginary-time propagation lost the wave function (dtau too large?)")
        cur *= 1.0 / np.sqrt(nrm)
        e = energy(grid, V, ops.to_numpy(cur)[0])
        change = abs(e - e_old)
        e_old = e
        if change < tol:
            converged = True
            break
    out = ops.to_numpy(cur)[0].copy()
    out /= np.sqrt(np.sum(np.abs(out) ** 2) * dA)
    return GroundState(float(e_old), out, grid, steps, converged, float(change))


def _step_factors(ops, grid: Grid, V: np.ndarray, dt: float):
    """exp(-i V dt/2), its square and the kinetic factors of one field-free real-time step, laid
    out as :class:`~factory.tdse.propagator.Propagator` lays them out (1/N folded into ky)."""
    vh_np = np.exp(-0.5j * dt * V)
    vh, vf = ops.asarray(vh_np[None]), ops.asarray((vh_np * vh_np)[None])
    ty = ops.asarray(np.exp(-0.5j * dt * grid.ky**2) / (grid.nx * grid.ny))
    tx = ops.asarray(np.exp(-0.5j * dt * grid.kx**2)[None, :])
    return vh, vf, ty, tx


def step_eigenphase(grid: Grid, V: np.ndarray, psi: np.ndarray, dt: float, backend="auto") -> tuple[float, float]:
    """(E_U, residual): E_U = -arg<psi|U psi>/dt, the energy the field-free step ``U`` gives
    ``psi`` (normalised here), and ``|| U psi - <psi|U psi> psi ||^2``, its population outside
    that eigenphase weighted by ``|e^{-i (E - E_U) dt} - 1|^2`` (double precision)."""
    ops = make_ops(backend, (1, *grid.shape), buffers=1, quick_plan=True)
    vh, _, ty, tx = _step_factors(ops, grid, V, dt)
    p0 = np.asarray(psi, dtype=np.complex128)
    p0 = p0 / np.sqrt(np.vdot(p0, p0).real)
    cur = ops.empty()
    cur[...] = ops.asarray(p0[None])
    ops.mul(cur, vh)
    cur = ops.fft(cur)
    ops.kinetic(cur, ty, tx)
    cur = ops.ifft(cur)
    ops.mul(cur, vh)
    u1 = ops.to_numpy(cur)[0]
    lam = np.vdot(p0, u1)
    r = u1 - lam * p0
    return float(-np.angle(lam) / dt), float(np.vdot(r, r).real)


def stationary_filter(
    grid: Grid, V: np.ndarray, psi: np.ndarray, dt: float, filter_time: float = 60.0, backend="auto",
    min_periods: float = FILTER_PERIODS,
) -> tuple[np.ndarray, int, float]:
    """Project ``psi`` onto the ground state of the field-free real-time step (module docstring).

    Returns ``(psi_f, N, removed)``: the filtered state (normalised to sum |psi|^2 dx dy = 1),
    the number of steps of U applied and ``removed = 1 - |<psi_f|psi>|^2``, the population of
    ``psi`` that was not stationary.  The window is ``max(filter_time, min_periods 2 pi / Ip)``
    long, Ip = -E_U (``min_periods`` >= 5 suppresses the whole continuum).
    """
    if dt <= 0:
        raise ValueError(f"dt = {dt!r}: must be > 0")
    if filter_time <= 0:
        raise ValueError(f"filter_time = {filter_time!r}: must be > 0")
    dA = grid.area_element
    p0 = np.asarray(psi, dtype=np.complex128)
    p0 = p0 / np.sqrt(np.vdot(p0, p0).real * dA)
    e_u, _ = step_eigenphase(grid, V, p0, dt, backend)
    if not e_u < 0:
        raise ValueError(f"the state's energy under the real-time step is {e_u:.4g} a.u. >= 0: not bound, "
                         "nothing to make stationary")
    span = max(filter_time, min_periods * 2 * np.pi / -e_u)
    n = max(2, int(np.ceil(span / dt - 1e-9)))
    u = np.arange(n + 1) / n
    a0, a1, a2, a3 = _BLACKMAN_HARRIS
    w = a0 - a1 * np.cos(2 * np.pi * u) + a2 * np.cos(4 * np.pi * u) - a3 * np.cos(6 * np.pi * u)
    coef = w * np.exp(1j * e_u * dt * np.arange(n + 1))
    ops = make_ops(backend, (1, *grid.shape), buffers=1, quick_plan=True)
    vh, vf, ty, tx = _step_factors(ops, grid, V, dt)
    cur = ops.empty()  # the planned buffer
    cur[...] = ops.asarray(p0[None])
    acc = ops.empty()
    acc[...] = 0
    # U^m psi = Vh chi_m with chi_1 = K Vh psi, chi_(m+1) = K Vf chi_m (K: the kinetic step),
    # so sum_m c_m U^m psi = Vh sum_m c_m chi_m: one real-space pass per step, as in the propagator
    ops.mul(cur, vh)
    for m in range(1, n + 1):
        if m > 1:
            ops.mul(cur, vf)
        cur = ops.fft(cur)
        ops.kinetic(cur, ty, tx)
        cur = ops.ifft(cur)
        acc += complex(coef[m]) * cur
    ops.mul(acc, vh)
    out = ops.to_numpy(acc)[0] + coef[0] * p0
    out /= np.sqrt(np.vdot(out, out).real * dA)
    overlap = abs(np.vdot(out, p0)) * dA
    return out, n, float(max(0.0, 1.0 - overlap**2))


def background_bound(grid: Grid, V: np.ndarray, psi: np.ndarray, dt: float, backend="auto") -> float:
    """Upper bound on the field-free ionisation of ``psi`` under the real-time step of ``dt``.

    The continuum lies at least Ip = -E_U above the state's eigenphase energy E_U, so its
    population is at most ``residual / (2 sin(Ip dt / 2))^2`` (:func:`step_eigenphase`; the
    discrete-time form of Chebyshev's bound P(|E - E_U| >= Ip) <= Var E / Ip^2), as long as no
    continuum phase (E - E_U) dt, E <= (kx_max^2 + ky_max^2)/2, wraps past 2 pi (else inf).
    Bound excited states count too, so it overestimates a state with bound admixtures.
    """
    e_u, res = step_eigenphase(grid, V, psi, dt, backend)
    ip = -e_u
    if not ip > 0:
        return float("inf")
    lo, hi = ip * dt, (0.5 * (grid.kx_max**2 + grid.ky_max**2) + ip) * dt
    if hi >= 2 * np.pi:
        return float("inf")
    gap = 2 * min(np.sin(lo / 2), np.sin(hi / 2))
    return float(res / gap**2)


def molecule_ground_state(
    molecule: Molecule,
    R: float,
    alpha: float,
    grid: Grid,
    margin: float = 20.0,
    dtau: float = 0.05,
    tol: float = 1e-10,
    max_steps: int = 50000,
    check_every: int = 20,
    backend: str = "auto",
    embed: bool = True,
    dt: float | None = None,
    filter_time: float = 60.0,
    polish_time: float = 10.0,
) -> GroundState:
    """Ground state of ``molecule`` (R, alpha in rad) computed on a sub-box of ``grid``.

    Without ``dt`` it is the imaginary-time fixed point.  With ``dt`` (the real-time step of
    the propagation, a.u.) it is made stationary under the field-free real-time step: filtered
    on the sub-box (:func:`stationary_filter`, window ``filter_time`` a.u. or longer), embedded,
    and filtered once more on ``grid`` with a short window of ``polish_time`` a.u. (0: skip),
    which removes what the embedding changed (the sub-box's periodic images of the state's
    tail: high energies, so a short window suffices); ``background`` is then
    :func:`background_bound` on ``grid``.  With ``embed`` the returned wave function lives on
    ``grid``, otherwise on the sub-box itself (``result.grid``; no polish).
    """
    half = molecule.extent(R) + margin
    sub, (rows, cols) = grid.window(half, half)
    V = potential(molecule, R, alpha, sub.x, sub.y)
    guess = initial_guess(molecule, R, alpha, sub.x, sub.y)
    gs = imaginary_time(sub, V, guess, dtau, tol, max_steps, check_every, backend)
    if dt is not None:
        psi, n, removed = stationary_filter(sub, V, gs.psi, dt, filter_time, backend)
        gs = GroundState(energy(sub, V, psi), psi, sub, gs.steps, gs.converged, gs.energy_change, float(dt), n, removed)
    if not embed or sub == grid:
        if dt is not None:
            gs.background = background_bound(sub, V, gs.psi, dt, backend)
        return gs
    # the sub-box's first row/column is its own periodic image (-L = +L); in the full box it
    # would have no mirror partner, so drop it to keep the embedded state exactly symmetric
    inner = gs.psi.copy()
    if sub.ny < grid.ny:
        inner[0, :] = 0
    if sub.nx < grid.nx:
        inner[:, 0] = 0
    full = np.zeros(grid.shape, dtype=np.complex128)
    full[rows, cols] = inner
    full /= np.sqrt(np.sum(np.abs(full) ** 2) * grid.area_element)
    out = GroundState(gs.energy, full, grid, gs.steps, gs.converged, gs.energy_change, gs.dt, gs.filter_steps,
                      gs.nonstationary)
    if dt is None:
        return out
    V = potential(molecule, R, alpha, grid.x, grid.y)
    if polish_time > 0:
        full, n, removed = stationary_filter(grid, V, full, dt, polish_time, backend, min_periods=0.0)
        out.psi, out.filter_steps, out.nonstationary = full, out.filter_steps + n, out.nonstationary + removed
        out.energy = energy(grid, V, full)
    out.background = background_bound(grid, V, full, dt, backend)
    return out
