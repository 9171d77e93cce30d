"""Deployment presets: TOML files of ``scconv-export`` options (see ``export/`` in the repository)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from .errors import ExportError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

#: Option name -> accepted Python type(s); the keyword arguments of ``export_onnx`` a preset may set.
PRESET_KEYS: dict[str, type | tuple[type, ...]] = {
    "input_shape": (str, list),
    "dynamic": str,
    "gates": str,
    "opset": int,
    "simplify": bool,
    "check": bool,
    "check_samples": int,
    "calib_data": str,
    "precision": str,
    "calib_samples": int,
    "calib_method": str,
    "int8_outputs": str,
    "exporter": str,
    "trt_major": int,
    "tie_guard": float,
    "rtol": float,
    "atol": float,
    "gate_atol": float,
}


def _fits(value: Any, expected: type | tuple[type, ...]) -> bool:
    if isinstance(value, bool):  # TOML booleans are not numbers here
        return expected is bool
    if expected is float:
        return isinstance(value, (int, float))
    return isinstance(value, expected)


def load_preset(path: str | Path) -> dict[str, Any]:
    """The options in a preset file; unknown keys or wrong types raise ``ExportError`` naming them."""
    path = Path(path)
    try:
        data = tomllib.loads(path.read_text())
    except FileNotFoundError as err:
        raise ExportError(f"preset {path}: no such file") from err
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as err:
        raise ExportError(f"preset {path} is not valid TOML: {err}") from err
    options = {}
    for key, value in data.items():
        name = key.replace("-", "_")
        if name not in PRESET_KEYS:
            raise ExportError(
                f"preset {path}: unknown key {key!r}; known keys: {', '.join(sorted(PRESET_KEYS))}"
            )
        if not _fits(value, PRESET_KEYS[name]):
            raise ExportError(f"preset {path}: {key} = {value!r} has the wrong type")
        options[name] = value
    return options
