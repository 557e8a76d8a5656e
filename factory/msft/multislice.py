"""Multi-slice Fourier transform (MSFT) of a 3D density: the wide-angle scattered far field.

Physics as in Stielow, Schmidt, Peltz, Fennel & Scheel, Mach. Learn.: Sci. Technol. (2020),
App. B.  The beam travels along +z; the density ``rho[z, y, x]`` (fill fraction, >= 0) sits on
a cubic voxel grid of edge ``voxel_nm`` with voxel centres at ``(i - (n - 1) / 2) * voxel_nm``.
Slice ``j`` at depth ``z_j`` is illuminated by the field left over after the material already
passed along its line of sight: with the accumulated path
``d_j(x, y) = voxel * (sum_{i<j} rho_i + rho_j / 2)`` (midpoint rule: half of the slice
itself), the local field is

- ``exp(-d_j / absorption_length)`` (``absorption_length_nm``, the *field* attenuation
  length as in the authors' code; intensity falls off twice as fast), or
- ``exp(i k (n - 1) d_j)`` with the complex refractive index ``n = 1 - delta + i beta``
  (``delta``, ``beta`` given: phase retardation and absorption), or
- 1 (``absorption_length_nm=None``: no absorption, the first Born approximation).

Each slice's 2D Fourier transform is multiplied by the exact Ewald-sphere phase and the
slices are summed coherently::

    A(qx, qy) = C * sum_j exp(+i q_z z_j) * sum_{y,x} rho_j T_j exp(-i (qx x + qy y)) dV
    q_z = k - sqrt(k^2 - qx^2 - qy^2),   A = 0 where qx^2 + qy^2 >= k^2,

i.e. the 3D transform of ``rho T`` at the scattering vector ``q = k_out - k_in``
(whose z component is ``-q_z``).  ``C = k^2 / (4 pi) * chi`` with the susceptibility
``chi = n^2 - 1``, so ``|A|^2`` is the differential cross section ``dsigma/dOmega`` in
nm^2/sr (no polarisation factor).  With only ``absorption_length_nm`` given,
``chi`` is that of a pure absorber with ``beta = 1 / (k a)``; without absorption
``chi = 1`` (cross section per unit susceptibility squared).  Image axes: ``[qy, qx]`` with
``q = 2 pi m / (pad * voxel)``, the central ``crop`` values of the zero-padded grid
(``m = -crop//2 ... crop - crop//2 - 1``).

Methods (all give the same amplitude to float rounding; ``auto`` is ``dft``, the fastest
measured on CPU and GPU):

- ``reference``: the straightforward implementation, numpy only: ``fft2`` of every slice
  zero-padded to ``pad x pad``, Ewald phase on the full grid, sum, crop.
- ``fft``: pruned FFTs of the backend (numpy.fft, pyFFTW plans, torch.fft).
- ``dft``: pruned DFT by two matrix products over the particle's bounding box.

``fft`` and ``dft`` are one implementation (:mod:`factory.msft.transform`) over a
:class:`~factory.backend.Backend`: numpy/pyFFTW on the CPU, torch on a GPU or CPU, where it is
differentiable end to end.  The functions here take numpy arrays and return numpy arrays;
:func:`~factory.msft.transform.amplitude_array` keeps backend arrays (tensors, gradients).
"""

from __future__ import annotations

import math

import numpy as np

from ..backend import Backend
from . import transform
from .params import METHODS, PRECISIONS, MSFTParams, Pattern, check_grid, ewald_qz, q_axis, relative_difference
from .shapes import user_density


def resolve_method(method: str) -> str:
    """The concrete method for ``method``: 'auto' is 'dft' (the fastest measured)."""
    if method not in METHODS:
        raise ValueError(f"method = {method!r}: choose one of {', '.join(METHODS)}")
    return "dft" if method == "auto" else method


def backend_for(params: MSFTParams, backend: Backend | None = None) -> Backend:
    """``backend`` when given, else the one ``params.backend`` names (one thread)."""
    return backend if backend is not None else Backend.create(params.backend)


def effective_density(rho, params: MSFTParams, backend: Backend | None = None) -> np.ndarray:
    """``rho * T`` of one density ``[z, y, x]`` (numpy): see :func:`factory.msft.transform.effective_density`."""
    be = backend_for(params, backend)
    with be.activated():
        out = transform.effective_density(be, be.asarray(rho, params.real_dtype.name)[None], params)
    return be.to_numpy(out)[0]


def reference_amplitude(rho: np.ndarray, params: MSFTParams) -> np.ndarray:
    """The straightforward MSFT (numpy): fft2 of each zero-padded slice, Ewald phase, sum, crop."""
    be = Backend.create("numpy")
    f = be.to_numpy(transform.effective_density(be, np.asarray(rho, dtype=params.real_dtype)[None], params))[0]
    nz, ny, nx = f.shape
    pad, crop, cdt = params.pad, params.crop, params.complex_dtype
    dq = 2.0 * math.pi / (pad * params.voxel_nm)
    q = (np.arange(pad) - pad // 2) * dq  # fftshifted axis
    qz, mask = ewald_qz(q, q, params.k)
    zs = (np.arange(nz) - (nz - 1) / 2.0) * params.voxel_nm
    total = np.zeros((pad, pad), dtype=cdt)
    buf = np.zeros((pad, pad), dtype=cdt)
    for j in range(nz):
        buf[:ny, :nx] = f[j]
        F = np.fft.fftshift(np.fft.fft2(buf))
        total += F * np.exp(1j * qz * zs[j]).astype(cdt)
    # the FFT puts voxel 0 at the origin: shift to the box centre
    shift = np.exp(1j * (q[None, :] * (nx - 1) / 2.0 + q[:, None] * (ny - 1) / 2.0) * params.voxel_nm)
    total = total * shift * mask
    c0 = pad // 2 - crop // 2
    return (total[c0 : c0 + crop, c0 : c0 + crop] * params.prefactor()).astype(cdt)


def amplitude(density, params: MSFTParams, *, validate: bool = True, backend: Backend | None = None) -> np.ndarray:
    """Complex scattering amplitude ``A[qy, qx]`` (nm / sr^0.5) on the detector crop.

    ``backend``: the :class:`~factory.backend.Backend` to compute with (default: the one
    ``params.backend`` names, with one thread).
    """
    if validate:  # the per-slice maxima of the checks give the occupied slices for free
        rho, zmax = user_density(density, return_zmax=True)
    else:
        rho, zmax = np.asarray(density), None
    check_grid(rho.shape, params)
    method = resolve_method(params.method)
    if method == "reference":
        return reference_amplitude(rho, params)
    be = backend_for(params, backend)
    zspan = None if zmax is None else be.nonzero_span(zmax > 0)
    amp = transform.amplitude_array(rho[None], params, be, method=method, zspan=zspan)
    return be.to_numpy(amp)[0].astype(params.complex_dtype, copy=False)


def amplitude_batch(densities, params: MSFTParams, *, backend: Backend | None = None) -> np.ndarray:
    """Amplitudes of a batch ``(B, nz, ny, nx)`` of densities: one call on torch, a loop on the CPU."""
    rho = np.asarray(densities)
    if rho.ndim != 4:
        raise ValueError(f"a batch of densities must be 4D [batch, z, y, x]; got shape {rho.shape}")
    be = backend_for(params, backend)
    method = resolve_method(params.method)
    if not be.is_torch or method == "reference":
        return np.stack([amplitude(r, params, backend=be) for r in rho])
    for r in rho:
        user_density(r)
    amp = transform.amplitude_array(rho, params, be, method=method)
    return be.to_numpy(amp).astype(params.complex_dtype, copy=False)


def scatter(
    density,
    voxel_nm: float,
    *,
    wavelength_nm: float = 13.5,
    absorption_length_nm: float | None = 12.5,
    delta: float | None = None,
    beta: float | None = None,
    pad: int = 512,
    crop: int = 128,
    method: str = "auto",
    backend: str = "auto",
    precision: str = "complex64",
) -> Pattern:
    """Scattered intensity ``dsigma/dOmega`` (nm^2/sr) of a density ``[z, y, x]`` on the q-grid crop.

    Returns ``Pattern(intensity, qx, qy)``; ``intensity[iy, ix]`` belongs to ``(qy[iy], qx[ix])``.

    Parameters
    ----------
    density : array_like
        Real, finite, non-negative 3D array ``[z, y, x]`` (fill fraction or relative
        density) on a cubic voxel grid; the beam travels along +z.
    voxel_nm : float
        Voxel edge, nm.
    wavelength_nm : float, optional
        Wavelength, nm (13.5: extreme ultraviolet).
    absorption_length_nm : float or None, optional
        Field attenuation length of the material, nm (intensity falls off twice as fast);
        None: no absorption (first Born approximation).  Ignored when ``delta`` and ``beta``
        are given.
    delta, beta : float, optional
        The complex refractive index ``n = 1 - delta + i beta`` (both or neither;
        ``beta >= 0``): phase retardation and absorption.
    pad : int, optional
        Width of the zero-padded transform grid (>= the box width); sets the q spacing
        ``2 pi / (pad * voxel_nm)``.
    crop : int, optional
        Width of the central q window returned (<= ``pad``).
    method : {"auto", "reference", "fft", "dft"}, optional
        How the transform is computed; all agree to float rounding (``auto`` is ``dft``).
    backend : {"auto", "fftw", "torch", "numpy"}, optional
        The array backend (``auto``: torch on a GPU, else pyFFTW when installed, else numpy).
    precision : {"complex64", "complex128"}, optional
        Precision of the amplitude.

    Returns
    -------
    Pattern
        ``intensity``: ``(crop, crop)`` differential cross section ``dsigma/dOmega`` in nm^2/sr,
        indexed ``[qy, qx]``; ``qx``, ``qy``: the ``(crop,)`` axes in 1/nm.

    Raises
    ------
    ValueError
        An invalid density (not 3D, complex, NaN/Inf, negative, wider than ``pad``) or
        option.
    """
    params = MSFTParams(
        voxel_nm=voxel_nm,
        wavelength_nm=wavelength_nm,
        absorption_length_nm=absorption_length_nm,
        delta=delta,
        beta=beta,
        pad=pad,
        crop=crop,
        method=method,
        backend=backend,
        precision=precision,
    )
    amp = amplitude(density, params)
    q = q_axis(pad, voxel_nm, crop)
    return Pattern(np.abs(amp) ** 2, q.copy(), q.copy())


__all__ = [
    "METHODS",
    "PRECISIONS",
    "MSFTParams",
    "Pattern",
    "amplitude",
    "amplitude_batch",
    "backend_for",
    "effective_density",
    "ewald_qz",
    "q_axis",
    "reference_amplitude",
    "relative_difference",
    "resolve_method",
    "scatter",
]
