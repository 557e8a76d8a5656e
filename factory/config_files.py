"""Reading the project's YAML files: a safe loader, where the presets live, one-line messages.

The base of every config in the project (generation configs, simulator presets, training
configs): the presets in ``configs/<kind>/<size>.yaml`` are the only copy of each preset's
numbers, read here by whoever needs them (``factory.config`` for datasets, the TDSE
simulator's ``preset`` key), and every validation problem becomes one line naming the key,
the value and the rule.
"""

from __future__ import annotations

import copy
import functools
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from .errors import ConfigError

MAX_CONFIG_BYTES = 1 << 20  # a config is a few hundred bytes; refuse anything past 1 MiB unread
MAX_YAML_DEPTH = 64  # nesting of lists/mappings in one config


class _ConfigLoader(yaml.SafeLoader):
    """SafeLoader without anchors and aliases (a nested-alias "billion laughs" file expands
    exponentially) and with bounded nesting; both become a YAMLError naming the line."""

    def compose_node(self, parent, index):
        event = self.peek_event()
        if isinstance(event, yaml.AliasEvent) or getattr(event, "anchor", None) is not None:
            raise yaml.MarkedYAMLError(problem="anchors (&name) and aliases (*name) are not allowed in configs; "
                                       "write the values out", problem_mark=event.start_mark)
        self._depth = getattr(self, "_depth", 0) + 1
        try:
            if self._depth > MAX_YAML_DEPTH:
                raise yaml.MarkedYAMLError(problem=f"nested more than {MAX_YAML_DEPTH} levels deep",
                                           problem_mark=event.start_mark)
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1

    def construct_mapping(self, node, deep=False):
        """A mapping whose keys are unique: a repeated key (the last silently winning) is an error."""
        seen: dict = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True)
            if isinstance(key, (str, int, float, bool)) or key is None:
                if key in seen:
                    raise yaml.MarkedYAMLError(
                        problem=f"key {key!r} appears twice in one mapping (first on line {seen[key] + 1})",
                        problem_mark=key_node.start_mark)
                seen[key] = key_node.start_mark.line
        return super().construct_mapping(node, deep=deep)


def load_yaml(text: str) -> Any:
    return yaml.load(text, Loader=_ConfigLoader)  # noqa: S506 - a SafeLoader subclass


def one_line(text: Any) -> str:
    return " ".join(str(text).split())


def configs_dir() -> Path:
    """The folder holding the presets: the repository's ``configs/`` or the installed copy."""
    here = Path(__file__).resolve().parent
    for candidate in (here.parent / "configs", here / "_configs"):
        if candidate.is_dir():
            return candidate
    raise ConfigError("cannot find the configs/ folder of presets (broken installation?)")


def read_yaml(path: Path) -> dict[str, Any]:
    """The mapping in a YAML config file: at most MAX_CONFIG_BYTES of UTF-8, no aliases."""
    try:
        with open(path, "rb") as f:
            raw = f.read(MAX_CONFIG_BYTES + 1)
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the config ({exc.strerror or exc})") from None
    if len(raw) > MAX_CONFIG_BYTES:
        raise ConfigError(f"{path}: larger than {MAX_CONFIG_BYTES // 1024} KiB; not a config file")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise ConfigError(f"{path}: line {line}: not UTF-8 text (byte {raw[exc.start]:#04x} at offset {exc.start})") from None
    try:
        data = load_yaml(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark else ""
        problem = one_line(getattr(exc, "problem", None) or exc)
        raise ConfigError(f"{path}:{where} malformed YAML: {problem}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: a config must be a YAML mapping, got {type(data).__name__}")
    return data


@functools.lru_cache(maxsize=None)
def _simulator_section(kind: str, size: str) -> dict[str, Any]:
    section = read_yaml(configs_dir() / kind / f"{size}.yaml").get("simulator")
    if not isinstance(section, dict):
        raise ConfigError(f"preset {kind}/{size}: no 'simulator' section (broken installation?)")
    return section


def simulator_preset(kind: str, size: str, *, exclude: tuple[str, ...] = ()) -> dict[str, Any]:
    """The ``simulator:`` section of the preset ``configs/<kind>/<size>.yaml`` (a fresh copy),
    without the keys in ``exclude``."""
    return {k: copy.deepcopy(v) for k, v in _simulator_section(kind, size).items() if k not in exclude}


def format_validation_error(exc: ValidationError, prefix: str = "") -> str:
    """One line naming each bad key, its value and the rule."""
    parts = []
    for err in exc.errors():
        loc = ".".join(str(p) for p in (*([prefix] if prefix else []), *err["loc"]))
        msg = err["msg"].removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            parts.append(f"unknown key {loc!r}")
        elif err["type"] == "missing":
            parts.append(f"missing key {loc!r}")
        elif not err["loc"]:  # a check across keys: its message names them, the whole section is noise
            parts.append(f"{loc}: {msg}" if loc else msg)
        else:
            parts.append(f"{loc} = {err.get('input')!r}: {msg}")
    return one_line("; ".join(parts))
