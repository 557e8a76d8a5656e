"""CF attributes of a store: ``units`` / ``long_name`` of every array, flat global attributes.

Written into the arrays' metadata when a store is created (schema 3) and derived the same
way for older stores when they are viewed with xarray or exported.  The units of a label
come from what the simulator recorded in ``attrs["factory"]["simulator"]``:

* ``units`` {name: unit} (``""`` = dimensionless, written ``"1"``);
* ``labels`` {name or ``q0..q3``: "description (unit)"} (no unit in brackets = dimensionless);
* ``<name>_codes`` {meaning: code}: a coded label, written as CF ``flag_values``/``flag_meanings``;
* a name ending in ``_s`` / ``_ms`` / ``_nm`` is in s / ms / nm;

anything else gets ``units = "arb."`` (the simulator does not say).  Every value is a string,
a number or a list of numbers, so NetCDF accepts it.
"""

from __future__ import annotations

import datetime as _dt
import json
import re
from typing import Any

CONVENTIONS = "CF-1.10"
UNKNOWN = "arb."
SUFFIX_UNITS = {"_s": "s", "_ms": "ms", "_nm": "nm"}
_TRAILING_UNIT = re.compile(r"^(.*?)\s*\(([^()]*)\)\s*$")
_RANGE = re.compile(r"^([A-Za-z_]+)(\d+)\.\.\1?(\d+)$")


def _dict(value: Any) -> dict:
    return value if isinstance(value, dict) else {}


def _expand(key: str) -> list[str]:
    """``"q0..q3"`` -> q0, q1, q2, q3; any other key as it is."""
    m = _RANGE.match(key)
    if not m:
        return [key]
    return [f"{m.group(1)}{i}" for i in range(int(m.group(2)), int(m.group(3)) + 1)]


def _word(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.+@-]+", "_", str(text)).strip("_") or "_"


def label_attrs(meta: dict[str, Any], sub: str, name: str) -> dict[str, Any]:
    """CF attributes of the label (``sub`` = "params") or diagnostic ``name``."""
    sim = _dict(meta.get("simulator"))
    attrs: dict[str, Any] = {"units": UNKNOWN,
                             "long_name": f"{name} ({'label' if sub == 'params' else 'diagnostic'})"}
    for suffix, unit in SUFFIX_UNITS.items():
        if name.endswith(suffix):
            attrs["units"] = unit
    described = {n: (str(text), len(_expand(str(key))) > 1)
                 for key, text in _dict(sim.get("labels")).items() for n in _expand(str(key))}
    if name in described:
        text, component = described[name]
        m = _TRAILING_UNIT.match(text)
        attrs["long_name"], attrs["units"] = (m.group(1), m.group(2)) if m else (text, "1")
        if component:  # one of "q0..q3"
            attrs["long_name"] += f"; component {name}"
    unit = _dict(sim.get("units")).get(name)
    if isinstance(unit, str):
        attrs["units"] = unit or "1"
    codes = _dict(sim.get(f"{name}_codes"))
    if codes and all(isinstance(v, int) and not isinstance(v, bool) for v in codes.values()):
        pairs = sorted((v, k) for k, v in codes.items())
        attrs.update(units="1", flag_values=[v for v, _ in pairs], flag_meanings=" ".join(_word(k) for _, k in pairs))
    return attrs


def image_attrs(meta: dict[str, Any]) -> dict[str, Any]:
    """CF attributes of the images: network input (a processed store), log10 or the simulator's units."""
    sim = _dict(meta.get("simulator"))
    prep = meta.get("preprocessing")
    if isinstance(prep, dict):
        mode = prep.get("mode") or prep.get("name")
        return {"units": "1", "long_name": f"network input image{f' ({mode})' if mode else ''}, "
                "scaled as recorded in factory_config_json"}
    text = str(sim.get("image") or "image")
    if sim.get("image_scale") == "log10":
        return {"units": "1", "long_name": text}
    m = re.search(r"\s\(([^()]*)\)", text)  # "|b(k)|^2 (probability per a.u.^2), ...": the bracket after a space
    if m:
        return {"units": m.group(1), "long_name": " ".join((text[:m.start()] + text[m.end():]).split())}
    return {"units": UNKNOWN, "long_name": text}


DONE_ATTRS = {"units": "1", "long_name": "sample written (set only after all its data)"}
SAMPLE_ATTRS = {"units": "1", "long_name": "sample index"}
DIGEST_ATTRS = {"units": "1", "long_name": "crc32c digest of each chunk of each sample-chunked array"}


def sample_array_attrs(name: str, attrs: dict[str, Any]) -> dict[str, Any]:
    """A per-sample array's attributes made flat: ``codes`` {code: meaning} become CF flags,
    other nested values JSON strings; units/long_name added when missing."""
    out: dict[str, Any] = {"units": "1", "long_name": name}
    for key, value in dict(attrs).items():
        if key == "codes" and isinstance(value, dict):
            pairs = sorted((int(k), str(v)) for k, v in value.items())
            out.update(flag_values=[k for k, _ in pairs], flag_meanings=" ".join(_word(v) for _, v in pairs))
            if name == "split":
                out["long_name"] = "data split"
        else:
            out[key] = _flat(value)
    return out


def flat_attrs(attrs: dict[str, Any]) -> dict[str, Any]:
    """Attributes NetCDF accepts: strings, numbers, lists of numbers (anything else as JSON)."""
    return {str(k): _flat(v) for k, v in attrs.items()}


def _flat(value: Any) -> Any:
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, (str, int, float)) or value is None:
        return "" if value is None else value
    if isinstance(value, (list, tuple)) and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value):
        return list(value)
    return json.dumps(value, sort_keys=True, default=str)


def global_attrs(meta: dict[str, Any]) -> dict[str, Any]:
    """Flat CF global attributes (strings and numbers only) describing the store."""
    config = _dict(meta.get("config"))
    title = config.get("description") or config.get("name") or f"{meta.get('kind', 'factory')} dataset"
    created = meta.get("created") or _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
    source = f"ultrafast-data-factory {meta.get('code_version', '')}".strip()
    step = meta.get("step")
    return {
        "Conventions": CONVENTIONS,
        "title": str(title),
        "source": f"{source}, {'processing step ' + str(step) if step else 'simulation kind ' + str(meta.get('kind'))}",
        "history": f"{created} created by {source}",
        "comment": "labels and diagnostics are the variables along 'sample' besides images, done and split; "
                   "the factory's own metadata (lineage, runs, simulator) is the attribute 'factory' "
                   "(the JSON string 'factory_json' in flat views and exports)",
        "factory_kind": str(meta.get("kind", "")),
        "factory_schema_version": int(meta.get("schema_version", 0) or 0),
        "factory_config_hash": str(meta.get("config_hash", "")),
        "factory_config_json": json.dumps(config, sort_keys=True, default=str),
    }
