"""What every figure of the project shares: quantities with units, colour bars that name their scale.

- :func:`label_units` reads the units of a store's labels from the store itself (the
  simulator's ``units`` attribute, a ``units`` attribute on the label arrays, "(nm)" in a label
  description), falling back to :data:`KNOWN_UNITS` for figures made without a store (training
  history, streamed predictions, models);
- :func:`axis_label`, :func:`value_text` and :func:`unit_text` write "k_x (a.u.)",
  "R = 7.55 a.u." and "W/cm²";
- :func:`image_scale` names the scale of a store's images for a colour bar ("log10(P / P_max)",
  "network input: log10(I / I_max) mapped to 0..1", ...) and whether they are already log-scaled;
- :func:`colorbar` adds a colour bar with that name; :func:`save` writes and closes a figure.

A unit ``""`` means dimensionless (written "(dimensionless)" on an axis), ``None`` unknown
(nothing written).
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from ..outputs import check_file_output, ensure_writable_parent, staging_name  # noqa: E402

#: units of the labels the simulators and networks use, for figures made without a store (the
#: stores carry their own: attrs.factory.simulator.units); "" = dimensionless
KNOWN_UNITS: dict[str, str] = {
    "R": "a.u.", "intensity": "W/cm^2", "I0": "W/cm^2", "cep": "rad", "alpha": "deg", "molecule": "code",
    "ladder_index": "", "E0": "a.u.", "norm_left": "", "absorbed": "", "yield": "", "background": "",
    "radius": "nm", "q0": "", "q1": "", "q2": "", "q3": "", "shape": "code", "augmentation": "code",
    "source_index": "", "interpolated": "",
}
#: short symbols for titles ("I = 3e14 W/cm²" instead of "intensity = ...")
SYMBOLS = {"intensity": "I", "I0": "I$_0$", "cep": "CEP", "alpha": "$\\alpha$", "kx": "$k_x$", "ky": "$k_y$",
           "qx": "$q_x$", "qy": "$q_y$"}
_PRETTY = {"W/cm^2": "W/cm$^2$", "arb.": "arb. u.", "1/a.u.^2": "a.u.$^{-2}$", "nm^2": "nm$^2$"}


def unit_text(unit: str | None) -> str:
    """A unit as written on a figure ("W/cm^2" -> "W/cm²" in mathtext)."""
    return _PRETTY.get(unit, unit) if unit else ""


def symbol(name: str) -> str:
    return SYMBOLS.get(name, name)


def axis_label(name: str, unit: str | None, prefix: str = "") -> str:
    """"k_x (a.u.)", "predicted R (a.u.)", "q0 (dimensionless)"; no parentheses for an unknown unit."""
    text = f"{prefix}{symbol(name)}"
    if unit is None:
        return text
    return f"{text} ({unit_text(unit) if unit else 'dimensionless'})"


def value_text(name: str, value: float, unit: str | None) -> str:
    """"R = 7.55 a.u.", "I = 2.44e14 W/cm²", "q0 = 0.71"."""
    v = f"{value:.3g}"
    if "e" in v:
        mant, exp = v.split("e")
        v = f"{mant}e{int(exp)}"
    u = unit_text(unit) if unit not in (None, "", "code") else ""
    return f"{symbol(name)} = {v}" + (f" {u}" if u else "")


def _from_description(text: Any) -> str | None:
    m = re.search(r"\(([^()]+)\)\s*$", text) if isinstance(text, str) else None
    return m.group(1) if m else None


def label_units(store, names: list[str] | None = None) -> dict[str, str | None]:
    """Units of a store's labels (``names``, default all): the store's simulator attributes, a
    ``units`` attribute on the label array, the label descriptions, else :data:`KNOWN_UNITS`."""
    meta = store.meta
    sim = meta.get("simulator") or {}
    units = dict(sim.get("units") or {})
    for k, text in (sim.get("labels") or {}).items():
        if _from_description(text) is not None:
            units.setdefault(k, _from_description(text))
    out: dict[str, str | None] = {}
    for n in names if names is not None else [*store.param_names, *store.diagnostic_names]:
        if n in units:
            out[n] = units[n]
            continue
        attrs = {}
        for group in ("params", "diagnostics"):
            try:
                attrs = dict(store.group[f"{group}/{n}"].attrs)
                break
            except Exception:  # noqa: BLE001 - no such array: try the next place
                continue
        unit = attrs.get("units")
        if unit == "1":  # CF's dimensionless
            unit = ""
        elif not isinstance(unit, str) or unit == "arb.":  # CF's "the simulator does not say"
            unit = KNOWN_UNITS.get(n, unit if isinstance(unit, str) else None)
        out[n] = unit
    return out


def coord_units(store) -> dict[str, str | None]:
    """Units of a store's image axes (the ``units`` attribute of each coordinate array)."""
    out = {}
    for d in store.meta["image_dims"][1:]:
        try:
            u = store.group[d].attrs.get("units")
        except Exception:  # noqa: BLE001 - a store without coordinate arrays
            u = None
        out[d] = u if isinstance(u, str) and u else None
    return out


def input_scale(pre: Mapping[str, Any] | None) -> str:
    """The scale of network-input images made by the preprocessing description ``pre``."""
    pre = dict(pre or {})
    name = pre.get("name")
    lo, hi = (pre.get("scale") or (0, 1))[:2]
    if name == "pmd2d":
        return f"network input: log$_{{10}}$(P / P$_{{max}}$) mapped to {lo:g}..{hi:g}"
    if name == "scatter":
        return f"network input: log$_{{10}}$(I / I$_{{max}}$) mapped to {lo:g}..{hi:g}"
    if name == "pmd1d":
        return "network input: dP/d$k_x$ / max (linear)"
    return "network input (arb. u., linear)"


def image_scale(meta: Mapping[str, Any], log: bool = False) -> tuple[str, bool]:
    """(colour-bar label, whether the stored images are already log-scaled) of a store's images;
    ``log``: the figure shows log10(image / its max) of linear images."""
    pre = meta.get("preprocessing")
    if pre:
        return input_scale(pre), dict(pre).get("name") in ("pmd2d", "scatter")
    sim = meta.get("simulator") or {}
    kind = str(meta.get("kind", ""))
    if kind == "tdse":
        return ("log$_{10}$(P / P$_{max}$)" if log else "P, probability per a.u.$^2$ (a.u.)"), False
    if kind == "msft":
        if sim.get("image_scale") == "log10":
            return "log$_{10}$(I / I$_{max}$)", True
        photons = (((meta.get("config") or {}).get("simulator") or {}).get("fluence")) is not None
        return ("log$_{10}$(I / I$_{max}$)" if log else f"I ({'photons' if photons else 'nm$^2$'} per pixel)"), False
    return ("log$_{10}$(intensity / max)" if log else "intensity (arb. u.)"), False


def colorbar(fig, ax, mappable, label: str, fontsize: float = 7, **kw):
    """A colour bar beside ``ax`` whose label names the scale."""
    cb = fig.colorbar(mappable, ax=ax, **({"shrink": 0.9, "pad": 0.02} | kw))
    cb.set_label(label, fontsize=fontsize)
    cb.ax.tick_params(labelsize=max(fontsize - 1, 5))
    return cb


def save(fig, out: str | Path, dpi: int = 110) -> Path:
    """Write ``fig`` as PNG (creating the folder) and close it.  An existing file is replaced
    only when it is a PNG (:func:`factory.outputs.check_file_output`), and only once the new one is
    written whole."""
    try:
        out = check_file_output(out)
        ensure_writable_parent(out)
        tmp = staging_name(out)
        try:
            fig.savefig(tmp, dpi=dpi, format="png")
            os.replace(tmp, out)
        finally:
            tmp.unlink(missing_ok=True)
    finally:
        plt.close(fig)
    return out


__all__ = ["KNOWN_UNITS", "axis_label", "colorbar", "coord_units", "image_scale", "input_scale", "label_units",
           "plt", "save", "symbol", "unit_text", "value_text"]
