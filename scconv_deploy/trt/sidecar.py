"""``MODEL.plan.json``: what an engine was built from, with and for, kept beside the untouched plan.

A TensorRT plan runs only with the TensorRT release that built it, build number included (a
version-compatible plan: with that release or a later one), and on GPUs of the compute
capability it was built for (any Ampere or newer GPU when built for that hardware compatibility
level). The sidecar records the release, the GPU, its compute capability and the level, with
the profiles, the ONNX's precision, hash and metadata (gate tensor names included), so that a
loader can refuse a mismatch with a message instead of TensorRT's deserialisation error.
Headers are never prepended to the plan: trtexec and Triton read it as is.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from .._files import Staging
from ..errors import EngineError

SIDECAR_FORMAT = "scconv-deploy/tensorrt-engine"
SIDECAR_VERSION = 2
READABLE_VERSIONS = (1, 2)  # format 1 lacks gpu.hardware_compatibility ("none")
# --hardware-compatibility -> the member of TensorRT HardwareCompatibilityLevel
HARDWARE_LEVELS = {"none": "NONE", "ampere+": "AMPERE_PLUS", "same-cc": "SAME_COMPUTE_CAPABILITY"}


@dataclass(frozen=True)
class BuildInfo:
    """Facts only known once an engine is built: the toolchain, the device and the plan itself."""

    trt_version: str
    gpu_name: str
    compute_capability: str  # "9.0"
    seconds: float
    built_at: str  # ISO 8601, UTC
    plan_sha256: str
    plan_bytes: int

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def sidecar_path(plan_path: str | Path) -> Path:
    """``model.plan`` → ``model.plan.json``."""
    plan_path = Path(plan_path)
    return plan_path.with_name(plan_path.name + ".json")


def sha256_bytes(data: bytes) -> str:
    """Hex SHA-256 of ``data`` (the sidecar ties itself to its plan with it)."""
    return hashlib.sha256(data).hexdigest()


def dump_sidecar(data: Any, indent: str = "") -> str:
    """JSON, one key per line, with lists of plain values (shapes, names) and short flat dicts inline."""
    inner = indent + "  "
    flat = json.dumps(data)
    if (
        isinstance(data, dict)
        and data
        and (len(flat) > 72 or any(isinstance(v, (dict, list)) for v in data.values()))
    ):
        items = [f"{inner}{json.dumps(str(k))}: {dump_sidecar(v, inner)}" for k, v in data.items()]
        return "{\n" + ",\n".join(items) + f"\n{indent}}}"
    if isinstance(data, list) and any(isinstance(v, (dict, list)) for v in data):
        return "[\n" + ",\n".join(inner + dump_sidecar(v, inner) for v in data) + f"\n{indent}]"
    return flat


def write_engine_files(plan_path: str | Path, plan: bytes, sidecar: dict[str, Any]) -> tuple[Path, Path]:
    """Write the plan, byte for byte, and its sidecar together: both appear, or neither."""
    plan_path = Path(plan_path)
    side = sidecar_path(plan_path)
    with Staging(EngineError) as staging:
        staging.temp_for(plan_path).write_bytes(plan)
        staging.temp_for(side).write_text(dump_sidecar(sidecar) + "\n")
    return plan_path, side


def write_sidecar(plan_path: str | Path, sidecar: dict[str, Any]) -> Path:
    """Replace the sidecar of an existing plan (e.g. to add a verification record), atomically."""
    side = sidecar_path(plan_path)
    with Staging(EngineError) as staging:
        staging.temp_for(side).write_text(dump_sidecar(sidecar) + "\n")
    return side


def read_sidecar(plan_path: str | Path) -> dict[str, Any] | None:
    """The sidecar of ``plan_path``; None when there is none; ``EngineError`` when it is unreadable."""
    path = sidecar_path(plan_path)
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise EngineError(f"{path} is not a readable sidecar: {err}") from err
    if not isinstance(data, dict) or data.get("format") != SIDECAR_FORMAT:
        raise EngineError(f"{path} is not an scconv-deploy engine sidecar (no format '{SIDECAR_FORMAT}')")
    if data.get("format_version") not in READABLE_VERSIONS:
        raise EngineError(f"{path}: sidecar version {data.get('format_version')} is not supported")
    return data


def check_plan(sidecar: dict[str, Any], plan: bytes, plan_path: str | Path) -> None:
    """Refuse a sidecar that describes another plan (the plan was rebuilt or replaced without it)."""
    recorded = sidecar["plan"]["sha256"]
    if recorded != sha256_bytes(plan):
        raise EngineError(
            f"{sidecar_path(plan_path)} describes another plan (sha256 {recorded[:12]}…, the file's is "
            f"{sha256_bytes(plan)[:12]}…): rebuild the engine or remove the stale sidecar"
        )


def _release(version: str) -> tuple[int, ...]:
    match = re.match(r"\d+(\.\d+)*", str(version).strip())
    if match is None:
        raise EngineError(f"{version!r} is not a TensorRT version")
    return tuple(int(p) for p in match[0].split("."))


def _dotted(release: tuple[int, ...]) -> str:
    return ".".join(map(str, release))


def _capability(text: str) -> tuple[int, int]:
    major, _, minor = str(text).partition(".")
    try:
        return int(major), int(minor or 0)
    except ValueError as err:
        raise EngineError(f"{text!r} is not a compute capability like 9.0") from err


def _sm(compute_capability: str) -> str:
    return "sm_" + compute_capability.replace(".", "")


def hardware_level(sidecar: dict[str, Any]) -> str:
    """The engine's hardware compatibility level (sidecars of format 1 predate it: "none")."""
    return sidecar["gpu"].get("hardware_compatibility") or "none"


def _trt_mismatch(built_text: str, here_text: str, version_compatible: bool) -> str | None:
    """The TensorRT release the engine needs, when ``here_text`` is not one (None when it is)."""
    built, here = _release(built_text), _release(here_text)
    if version_compatible:
        # A version-compatible plan carries its own lean runtime: the same or any later release runs it.
        return None if here >= built else f"TensorRT {built_text} or newer (the engine is version-compatible)"
    # Otherwise TensorRT deserialises only plans of its exact release, build number included.
    width = min(len(built), len(here), 4)
    return None if built[:width] == here[:width] else f"TensorRT {_dotted(built[:width])} exactly"


def _gpu_mismatch(level: str, built_cc: str, here_cc: str) -> str | None:
    """The GPU the engine needs under its hardware compatibility level (None when this one will do)."""
    if level == "ampere+":
        return None if _capability(here_cc) >= (8, 0) else "an Ampere or newer GPU (sm_80+: built ampere+)"
    if _capability(here_cc) == _capability(built_cc):
        return None
    return f"a GPU of compute capability {built_cc}"


def check_compatible(
    sidecar: dict[str, Any], trt_version: str, gpu_name: str, compute_capability: str
) -> list[str]:
    """Refuse, naming both sides, an engine this TensorRT and GPU cannot run; notes on what merely differs.

    As TensorRT defines it: a plan runs with the TensorRT release that built it, build number
    included (a ``--version-compatible`` plan: with that release or any later one), on a GPU of
    the same compute capability (``--hardware-compatibility ampere+``: any sm_80 or newer GPU).
    The GPU's name does not decide: another board or a MIG slice of the same compute capability
    runs the plan, with tactics timed on the GPU that built it (the note says so).
    """
    built_trt, gpu = sidecar["tensorrt"], sidecar["gpu"]
    level = hardware_level(sidecar)
    needs = (
        _trt_mismatch(built_trt["version"], trt_version, bool(built_trt["version_compatible"])),
        _gpu_mismatch(level, gpu["compute_capability"], compute_capability),
    )
    wanted = [need for need in needs if need is not None]
    if wanted:
        raise EngineError(
            f"engine built with TensorRT {built_trt['version']} on {gpu['name']} "
            f"({_sm(gpu['compute_capability'])}, hardware compatibility {level}); this machine has TensorRT "
            f"{trt_version} on {gpu_name} ({_sm(compute_capability)}): it needs {' and '.join(wanted)} — "
            "rebuild it here with scconv-trt build, or skip this check (--no-compat-check)"
        )
    if gpu_name != gpu["name"]:
        return [
            f"engine built on {gpu['name']}, running on {gpu_name}: it runs ({_sm(compute_capability)}), "
            "with "
            "tactics timed on the other GPU; rebuild it here for the best speed"
        ]
    return []
