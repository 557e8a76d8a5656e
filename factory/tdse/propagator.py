"""Real-time Feit-Fleck-Steiger split-operator propagation in velocity gauge, batched.

One step of ``H = k^2/2 + A(t) kx + V`` (the A^2 term is a pure phase and is dropped) is

    psi <- exp(-i V dt/2) F^-1 exp(-i dt [k^2/2 + A(t + dt/2) kx]) F exp(-i V dt/2) psi

(note ``-i A d/dx -> +A kx``).  Consecutive potential half steps are merged, and the mask of
eq. 4 (raised to the power ``mask_every`` when it is applied every ``mask_every`` steps) is
folded into the same real-space pass.  When ``collect`` is on, the part the mask removes is
accumulated for the mask method (:mod:`factory.tdse.mask`): one extra FFT per mask step.

A batch axis runs several wave functions at once (e.g. an intensity ladder): each has its own
vector potential, and either all share one potential V (ny, nx) or each has its own (B, ny, nx).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from .fftops import make_ops
from .grid import Grid
from .mask import KWindow, volkov_phase_factors
from .pulse import Pulse

PRECISIONS = {"double": np.complex128, "single": np.complex64}


@dataclass
class PropagationResult:
    amplitude: np.ndarray | None  # (B, ny, nx) mask-method amplitudes b(k) (FFT order), or None
    psi: np.ndarray  # (B, ny, nx) wave functions left in the box at the final time
    norm_left: np.ndarray  # (B,) norm in the box at the end
    absorbed: np.ndarray  # (B,) norm the mask removed (see Propagator.absorbed)
    norm_initial: np.ndarray  # (B,)
    t: float
    steps: int


class Propagator:
    """Stateful batched propagator: build once, ``run(n)`` as often as needed."""

    def __init__(
        self,
        grid: Grid,
        potential: np.ndarray,
        psi0: np.ndarray,
        dt: float,
        pulses: Sequence[Pulse | None] | None = None,
        n_steps: int | None = None,
        mask: np.ndarray | None = None,
        mask_every: int = 1,
        collect: bool = True,
        backend: str = "auto",
        precision: str = "double",
        device: str | None = None,
        k_window: float | None = None,
    ):
        if dt <= 0:
            raise ValueError(f"dt = {dt!r}: must be > 0")
        if mask_every < 1:
            raise ValueError(f"mask_every = {mask_every!r}: must be >= 1")
        if precision not in PRECISIONS:
            raise ValueError(f"precision = {precision!r}: choose one of {', '.join(PRECISIONS)}")
        pulses = list(pulses) if pulses is not None else [None]
        nb = len(pulses)
        psi0 = np.asarray(psi0)
        if psi0.shape == grid.shape:
            psi0 = np.broadcast_to(psi0, (nb, *grid.shape))
        if psi0.shape != (nb, *grid.shape):
            raise ValueError(f"psi0 has shape {psi0.shape}; expected {grid.shape} or {(nb, *grid.shape)}")
        V = np.asarray(potential, dtype=np.float64)
        if V.shape not in (grid.shape, (nb, *grid.shape)):
            raise ValueError(f"potential has shape {V.shape}; expected {grid.shape} or {(nb, *grid.shape)}")

        self.grid, self.dt, self.nb = grid, float(dt), nb
        self.pulses = pulses
        self.mask_every = int(mask_every)
        self.collect = bool(collect and mask is not None)
        self.has_mask = mask is not None
        self.ops = ops = make_ops(backend, (nb, *grid.shape), PRECISIONS[precision], device)
        self.backend = ops.name

        # real-space factors (merged half steps, mask folded in); exp(-i V dt/2) itself is only
        # needed at the two ends of a run
        vh = np.exp(-0.5j * self.dt * V)
        self._vh = ops.asarray(vh)
        self._Vf = ops.asarray(vh * vh)
        if mask is not None:
            m = np.asarray(mask, dtype=np.float64) ** self.mask_every
            self._MVf = ops.asarray(m * vh * vh)
            self._Wr = ops.asarray((1.0 - m) * vh)
            self._loss_w = ops.loss_weight(1.0 - m * m)
        del vh
        # k-space: exp(-i dt ky^2/2) / N (fixed) and exp(-i dt (kx^2/2 + A kx)) (per step, on device)
        n_tot = grid.nx * grid.ny
        self._ty = ops.asarray(np.exp(-0.5j * self.dt * grid.ky**2) / n_tot)
        self._kx = ops.real64(grid.kx)
        self._kx2 = ops.real64(0.5 * grid.kx**2)

        self.psi = ops.empty()
        self.tmp = ops.empty() if self.collect else None
        self.psi[...] = ops.asarray(psi0)
        self.window = KWindow.build(grid, k_window)
        self._wkx = ops.real64(self.window.kx)
        self._wkx2 = ops.real64(0.5 * self.window.kx**2)
        self._wky2 = ops.real64(0.5 * self.window.ky**2)
        self.acc = self.lost = None
        if self.collect:
            self.acc = ops.asarray(np.zeros((nb, *self.window.shape)))
            self.lost = ops.zeros_real64(nb)  # norm removed by the mask, summed step by step
        self.norm_initial = ops.norms(self.psi) * grid.area_element
        self.step_index = 0
        self.alpha = np.zeros(nb)  # discrete excursion sum_m A_m dt, per batch element
        self._a_cache: tuple[int, np.ndarray] | None = None
        if n_steps is not None:
            self._precompute_a(0, n_steps)

    @property
    def t(self) -> float:
        return self.step_index * self.dt

    def _precompute_a(self, start: int, n: int) -> None:
        a = np.zeros((self.nb, n))
        for b, p in enumerate(self.pulses):
            if p is not None:
                a[b] = p.midpoint_potential(self.dt, n, t0=start * self.dt)
        self._a_cache = (start, a)

    def _a_mid(self, start: int, n: int) -> np.ndarray:
        if self._a_cache is not None:
            s0, a = self._a_cache
            if s0 <= start and start + n <= s0 + a.shape[1]:
                return a[:, start - s0 : start - s0 + n]
        self._precompute_a(start, n)
        return self._a_cache[1]

    def run(self, n: int) -> None:
        """Advance ``n`` steps; the state is left at a step boundary."""
        if n <= 0:
            return
        ops, dt = self.ops, self.dt
        a_host = self._a_mid(self.step_index, n)
        alpha_host = self.alpha[:, None] + np.cumsum(a_host, axis=1) * dt  # excursion after each step
        a_dev, alpha_dev = ops.real64(a_host.T.copy()), ops.real64(alpha_host.T.copy())  # (n, B)
        psi = self.psi
        ops.mul(psi, self._vh)  # leading half step; later half steps are merged into Vf / MVf
        for i in range(n):
            psi = ops.fft(psi)
            tx = ops.expi(-dt * (self._kx2[None, :] + a_dev[i][:, None] * self._kx[None, :]))
            ops.kinetic(psi, self._ty, tx)
            psi = ops.ifft(psi)
            self.step_index += 1
            if self.has_mask and self.step_index % self.mask_every == 0:
                if self.collect:
                    ops.split(psi, self.tmp, self._Wr, self._MVf, self.lost, self._loss_w)
                    self.tmp = ops.fft(self.tmp)
                    t = self.step_index * dt
                    py = ops.expi(t * self._wky2)
                    px = ops.expi(t * self._wkx2[None, :] + alpha_dev[i][:, None] * self._wkx[None, :])
                    ops.accumulate(self.acc, self.tmp, py, px, self.window)
                else:
                    ops.mul(psi, self._MVf)
            else:
                ops.mul(psi, self._Vf)
        ops.mul_conj(psi, self._vh)  # undo the next step's leading half: psi at the step boundary
        self.alpha = alpha_host[:, -1].copy()
        self.psi = psi
        ops.synchronize()

    def norms(self) -> np.ndarray:
        return self.ops.norms(self.psi) * self.grid.area_element

    def absorbed(self) -> np.ndarray:
        """Norm the mask removed, per batch element: summed over the mask steps when collecting
        (free of the single-precision norm drift), else initial minus current norm."""
        if self.lost is not None:
            return np.asarray(self.ops.to_numpy(self.lost), dtype=np.float64) * self.grid.area_element
        return np.asarray(self.norm_initial) - self.norms()

    def wavefunction(self) -> np.ndarray:
        return self.ops.to_numpy(self.psi).copy()

    def amplitude(self) -> np.ndarray | None:
        """Mask-method amplitudes b(k) on ``self.window`` (compact FFT order; the full grid when
        no ``k_window`` was given); PMD = |b|^2 dx^2 dy^2 / (2 pi)^2."""
        return None if self.acc is None else self.ops.to_numpy(self.acc).copy()

    def inner_outer_overlap(self) -> np.ndarray:
        """-2 Re <psi_in | psi_out(T)> per batch element: yield - absorbed for a free electron.

        ``psi_out(T)`` is the Volkov-propagated sum of the removed parts; when it still overlaps
        the part left in the box, the mask-method yield and the absorbed norm differ by this.
        """
        if self.acc is None:
            return np.zeros(self.nb)
        if self.window.shape != self.grid.shape:
            raise ValueError("inner_outer_overlap needs the full momentum grid (k_window=None)")
        psi = self.wavefunction()
        acc = self.amplitude()
        g = self.grid
        psik = np.fft.fft2(psi, axes=(-2, -1))
        py, px = volkov_phase_factors(g, self.t, self.alpha)
        out_k = acc * np.conj(py)[None, :, None] * np.conj(px)[:, None, :]
        ov = np.einsum("bij,bij->b", np.conj(psik), out_k) * g.area_element / (g.nx * g.ny)
        return -2.0 * ov.real

    def result(self) -> PropagationResult:
        return PropagationResult(
            amplitude=self.amplitude(),
            psi=self.wavefunction(),
            norm_left=self.norms(),
            absorbed=self.absorbed(),
            norm_initial=np.asarray(self.norm_initial),
            t=self.t,
            steps=self.step_index,
        )


def propagate(
    grid: Grid,
    potential: np.ndarray,
    psi0: np.ndarray,
    dt: float,
    n_steps: int,
    pulses: Sequence[Pulse | None] | None = None,
    mask: np.ndarray | None = None,
    mask_every: int = 1,
    collect: bool = True,
    backend: str = "auto",
    precision: str = "double",
    k_window: float | None = None,
) -> PropagationResult:
    """Propagate ``n_steps`` from t = 0; see :class:`Propagator`."""
    prop = Propagator(grid, potential, psi0, dt, pulses, n_steps, mask, mask_every, collect, backend, precision,
                      k_window=k_window)
    prop.run(n_steps)
    return prop.result()
