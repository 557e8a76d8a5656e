"""Typed, validated generation configs loaded from YAML, with ``key.path=value`` overrides.

A config file looks like::

    kind: blobs          # simulator kind (factory.simulators.KINDS)
    seed: 0              # sample i depends on (seed, i) only
    samples: 64          # number of samples in the store
    chunk: 8             # samples per chunk = per generation block (one Ray task)
    simulator: {...}     # validated by the kind's own pydantic model

Presets live in ``configs/<kind>/<size>.yaml`` with sizes ``paper``, ``small`` and ``tiny``;
``load_config("blobs/tiny")`` finds them.  Every problem becomes a one-line
:class:`~factory.errors.ConfigError` naming the key, the value and what is allowed.
"""

from __future__ import annotations

import copy
import hashlib
import json
import math
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from .config_files import configs_dir, format_validation_error, load_yaml, one_line, read_yaml
from .errors import ConfigError
from .simulators import SimulatorConfig, simulator_class

SIZES = ("paper", "small", "tiny")


class GenerateConfig(BaseModel):
    """The resolved configuration of one generated dataset."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: str
    name: str = ""
    description: str = ""
    seed: int = Field(0, ge=0, lt=2**63)
    samples: int = Field(ge=1, le=10**9)
    chunk: int = Field(8, ge=1, le=10**6)
    simulator: SimulatorConfig

    def resolved(self) -> dict[str, Any]:
        """Plain JSON-able dict with every default filled in (what the store records)."""
        data = self.model_dump(mode="json", exclude={"simulator"})
        data["simulator"] = self.simulator.model_dump(mode="json")
        return data

    @property
    def hash(self) -> str:
        """sha256 of the resolved config (name and description excluded)."""
        data = self.resolved()
        data.pop("name", None)
        data.pop("description", None)
        blob = json.dumps(data, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(blob.encode()).hexdigest()


def parse_override(text: str) -> tuple[list[str], Any]:
    """``a.b=3`` -> (['a', 'b'], 3); the value is parsed as YAML (numbers, lists, bools)."""
    if "=" not in text:
        raise ConfigError(f"override {text!r} is not of the form key.path=value")
    key, raw = text.split("=", 1)
    path = [k for k in key.strip().split(".")]
    if not all(path):
        raise ConfigError(f"override {text!r} has an empty key")
    try:
        value = load_yaml(raw) if raw.strip() else ""
    except yaml.YAMLError as exc:
        problem = one_line(getattr(exc, "problem", None) or exc)
        raise ConfigError(f"override {text!r}: value is not valid YAML ({problem})") from None
    return path, value


def apply_overrides(data: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Apply ``key.path=value`` overrides to a nested dict (a new dict is returned)."""
    data = copy.deepcopy(data)
    for text in overrides:
        path, value = parse_override(text)
        node = data
        for key in path[:-1]:
            if not isinstance(node.get(key, {}), dict):
                raise ConfigError(f"override {text!r}: {key!r} is not a section")
            node = node.setdefault(key, {})
        node[path[-1]] = value
    return data


def resolve_config_path(spec: str | Path) -> Path:
    """A file path, or a preset name like ``blobs/tiny`` (``configs/blobs/tiny.yaml``)."""
    path = Path(spec)
    if _is_file(path):
        return path
    preset = configs_dir() / f"{spec}.yaml"
    if _is_file(preset):
        return preset
    raise ConfigError(
        f"config {str(spec)!r} is neither a file nor a preset; presets: {', '.join(list_presets())}"
    )


def _is_file(path: Path) -> bool:
    try:
        return path.is_file()
    except (OSError, ValueError):  # a name too long, a NUL byte: not a file either
        return False


def list_presets() -> list[str]:
    """The names of the generation presets: ``<kind>/<size>`` for ``configs/<kind>/<size>.yaml``.

    Returns
    -------
    list of str
        The sorted preset names (e.g. ``"blobs/tiny"``, ``"tdse/small"``); each is a valid
        ``spec`` of ``load_config``.
    """
    root = configs_dir()
    return sorted(str(p.relative_to(root).with_suffix("")) for p in root.glob("*/*.yaml"))


def config_from_dict(data: dict[str, Any], source: str = "config") -> GenerateConfig:
    """Validate a plain dict (e.g. read back from a store) into a GenerateConfig.

    Parameters
    ----------
    data : dict
        The config as plain data: ``kind``, ``samples`` and the ``simulator`` section, optionally
        ``name``, ``description``, ``seed`` and ``chunk`` (e.g. a store's ``meta["config"]``
        or ``GenerateConfig.resolved``).
    source : str, optional
        What the dict came from, named at the start of every error message.

    Returns
    -------
    GenerateConfig
        The validated, frozen config.

    Raises
    ------
    ConfigError
        ``data`` is not a mapping, names an unknown ``kind``, or holds an unknown, missing,
        out-of-range or non-finite value.
    """
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: a config must be a mapping")
    kind = data.get("kind")
    if not isinstance(kind, str):
        raise ConfigError(f"{source}: missing or non-string key 'kind'")
    try:
        sim_cls = simulator_class(kind)
    except ValueError as exc:
        raise ConfigError(f"{source}: {exc}") from None
    sim_raw = data.get("simulator", {})
    if not isinstance(sim_raw, dict):
        raise ConfigError(f"{source}: 'simulator' must be a mapping")
    try:
        sim_cfg = sim_cls.config_model.model_validate(sim_raw)
    except ValidationError as exc:
        raise ConfigError(f"{source}: {format_validation_error(exc, 'simulator')}") from None
    try:
        cfg = GenerateConfig.model_validate({**data, "simulator": sim_cfg})
    except ValidationError as exc:
        raise ConfigError(f"{source}: {format_validation_error(exc)}") from None
    key = _non_finite({**cfg.model_dump(exclude={"simulator"}), "simulator": cfg.simulator.model_dump()})
    if key is not None:
        raise ConfigError(f"{source}: {key[0]} = {key[1]!r}: every number in a config must be finite (no NaN or Inf)")
    return cfg


def _non_finite(node: Any, key: str = "") -> tuple[str, Any] | None:
    """(dotted key, value) of the first NaN/Inf anywhere in a validated config, else None."""
    if isinstance(node, float):
        return None if math.isfinite(node) else (key, node)
    items = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, (list, tuple)) else ()
    for k, v in items:
        found = _non_finite(v, f"{key}[{k}]" if isinstance(k, int) else f"{key}.{k}" if key else str(k))
        if found is not None:
            return found
    return None


def load_config(
    spec: str | Path,
    overrides: list[str] | None = None,
    *,
    samples: int | None = None,
    seed: int | None = None,
) -> GenerateConfig:
    """Load a preset or YAML file, apply overrides, validate; ConfigError on any problem.

    Parameters
    ----------
    spec : str or pathlib.Path
        A YAML file, or a preset name ``<kind>/<size>`` such as ``"blobs/tiny"``
        (``configs/blobs/tiny.yaml``; ``list_presets`` lists them).
    overrides : list of str, optional
        ``key.path=value`` overrides applied in order before validation; the value is parsed
        as YAML (numbers, lists, booleans), e.g. ``["chunk=16", "simulator.sampling.ladder=10"]``.
    samples : int, optional
        The number of samples in the store; replaces the file's ``samples`` when given.
    seed : int, optional
        The seed (sample i depends on (seed, i) only); replaces the file's ``seed`` when given.

    Returns
    -------
    GenerateConfig
        The validated, frozen config with every default filled in (``config.hash`` identifies
        it; ``factory.engine.generate`` takes it).

    Raises
    ------
    ConfigError
        The file or preset does not exist or is not a YAML mapping, an override is malformed,
        or a key is unknown, missing, out of range or not finite (one line naming key and value).
    """
    path = resolve_config_path(spec)
    data = apply_overrides(read_yaml(path), overrides or [])
    if samples is not None:
        data["samples"] = samples
    if seed is not None:
        data["seed"] = seed
    return config_from_dict(data, source=str(spec))


def resolve_simulator_config(kind: str, spec: Any = None) -> SimulatorConfig:
    """The ``kind`` simulator's config from None (defaults), a config, a dict of its
    ``simulator:`` section, a preset name (``"small"`` or ``"msft/small"``) or a YAML file.

    Parameters
    ----------
    kind : str
        The simulator kind (``"blobs"``, ``"tdse"``, ``"msft"``).
    spec : None, SimulatorConfig, dict, str or pathlib.Path, optional
        None for the simulator's defaults; a config of the kind's model, returned as it is; a
        dict of its ``simulator:`` section; a preset name (``"small"`` is taken as
        ``"<kind>/small"``) or a YAML file, whose ``simulator:`` section is used.

    Returns
    -------
    SimulatorConfig
        The validated config of the ``kind`` simulator (e.g. a ``TDSEConfig`` or ``MSFTConfig``).

    Raises
    ------
    ConfigError
        The dict does not validate, the preset or file is missing or invalid, or it is of
        another kind.
    ValueError
        ``kind`` is not a known simulator kind.
    """
    model = simulator_class(kind).config_model
    if spec is None:
        return model()
    if isinstance(spec, model):
        return spec
    if isinstance(spec, dict):
        try:
            return model.model_validate(spec)
        except ValidationError as exc:
            raise ConfigError(f"{kind} config: {format_validation_error(exc, 'simulator')}") from None
    name = str(spec)
    if "/" not in name and not name.endswith(".yaml") and not Path(name).exists():
        name = f"{kind}/{name}"
    cfg = load_config(name)
    if cfg.kind != kind:
        raise ConfigError(f"config {spec!r} is of kind {cfg.kind!r}, not {kind!r}")
    return cfg.simulator
