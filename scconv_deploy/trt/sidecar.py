"""``MODEL.plan.json``: what an engine was built from, with and for, kept beside the untouched plan.

A TensorRT plan runs only with the TensorRT release and GPU model that built it (a
version-compatible plan: with that release or a newer one of the same major). The sidecar
records both, with the profiles, the ONNX's precision, hash and metadata (gate tensor names
included), so that a loader can refuse a mismatch with a message instead of TensorRT's
deserialisation error. Headers are never prepended to the plan: trtexec and Triton read it as is.
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
SIDECAR_VERSION = 1


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
    if data.get("format_version") != SIDECAR_VERSION:
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
    match = re.match(r"\d+(\.\d+)*", version.strip())
    if match is None:
        raise EngineError(f"{version!r} is not a TensorRT version")
    return tuple(int(p) for p in match[0].split("."))


def _sm(compute_capability: str) -> str:
    return "sm_" + compute_capability.replace(".", "")


def _where(trt_version: str, gpu_name: str, compute_capability: str) -> str:
    return f"TensorRT {trt_version} on {gpu_name} ({_sm(compute_capability)})"


def check_compatible(
    sidecar: dict[str, Any], trt_version: str, gpu_name: str, compute_capability: str
) -> None:
    """Refuse, naming both sides, an engine built with another TensorRT release or on another GPU model.

    Releases match on major.minor.patch; an engine built ``--version-compatible`` also runs on any
    newer release of the same major. GPUs match on name and compute capability.
    """
    built_trt, gpu = sidecar["tensorrt"], sidecar["gpu"]
    built, here = _release(built_trt["version"]), _release(trt_version)
    if built_trt["version_compatible"]:
        trt_ok = here[0] == built[0] and here >= built
        needs = f"TensorRT {built[0]}.x, {built_trt['version']} or newer (the engine is version-compatible)"
    else:
        trt_ok = here[:3] == built[:3]
        needs = f"TensorRT {'.'.join(map(str, built[:3]))}"
    gpu_ok = gpu_name == gpu["name"] and compute_capability == gpu["compute_capability"]
    if trt_ok and gpu_ok:
        return
    wanted = [needs] if not trt_ok else []
    if not gpu_ok:
        wanted.append(f"a {gpu['name']} ({_sm(gpu['compute_capability'])})")
    raise EngineError(
        f"engine built with {_where(built_trt['version'], gpu['name'], gpu['compute_capability'])}; "
        f"this machine has {_where(trt_version, gpu_name, compute_capability)}: it needs "
        f"{' and '.join(wanted)} — rebuild it here with scconv-trt build"
    )
