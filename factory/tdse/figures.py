"""Quick-look figure of one PMD: log-scale (kx, ky) map plus the 1D distribution dP/dkx."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .pmd_result import PMDResult


def plot_pmd(result: PMDResult, out: str | Path, decades: float = 5.0, title: str | None = None) -> Path:
    """Write a PNG: log10(P / max P) clipped at -decades, and dP/dkx (log scale)."""
    import matplotlib.pyplot as plt

    out = Path(out)
    fig = pmd_figure(result, decades, title)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


def pmd_figure(result: PMDResult, decades: float = 5.0, title: str | None = None):
    """The figure of :func:`plot_pmd` (a matplotlib Figure; the physics layer draws its own,
    with the units of :mod:`factory.tdse`: atomic units, W/cm^2, rad, degrees)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    p = result.pmd
    pmax = float(p.max()) if p.size and p.max() > 0 else 1.0
    w = np.log10(np.maximum(p / pmax, 10.0 ** (-decades)))
    fig, (ax0, ax1) = plt.subplots(1, 2, figsize=(11, 4.2), gridspec_kw={"width_ratios": [1.6, 1]})
    kx, ky = result.kx, result.ky
    im = ax0.imshow(w, origin="lower", extent=(kx[0], kx[-1], ky[0], ky[-1]), aspect="equal",
                    cmap="viridis", vmin=-decades, vmax=0)
    ax0.set_xlabel("$k_x$ (a.u., polarisation)")
    ax0.set_ylabel("$k_y$ (a.u.)")
    fig.colorbar(im, ax=ax0, label="log$_{10}$(P / P$_{max}$)", shrink=0.85)
    d = result.dp_dkx
    ax1.semilogy(kx, np.maximum(d, 1e-300))
    ax1.set_xlabel("$k_x$ (a.u.)")
    ax1.set_ylabel("dP/d$k_x$ (a.u.)")
    if d.max() > 0:
        ax1.set_ylim(d.max() * 10.0 ** (-decades), d.max() * 2)
    pr = result.params
    ax0.set_title(title or (f"R = {pr.get('R', float('nan')):g} a.u., I = {pr.get('intensity', 0):.3g} W/cm$^2$, "
                            f"CEP = {pr.get('cep', 0):.3g} rad, $\\alpha$ = {pr.get('alpha', 0):g} deg"), fontsize=9)
    ax1.set_title(f"E0 = {result.energy:.5f} a.u., absorbed = {result.absorbed:.3e}, yield = {result.total_yield:.3e}",
                  fontsize=9)
    fig.tight_layout()
    return fig
