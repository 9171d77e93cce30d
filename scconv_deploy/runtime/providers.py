"""ONNX Runtime execution providers: which to ask for, with which options, and whether ORT gave them.

ONNX Runtime lists the TensorRT and CUDA providers whenever onnxruntime-gpu is installed, and
when their libraries fail to load it runs on the CPU with a printed warning only. So a session's
active providers are compared with the requested ones: a provider that did not come is an error
(``FallbackError``) unless the caller allows it (``allow_fallback=True``, ``--allow-fallback``).

The TensorRT EP gets options from the model (``tensorrt_options``): engine and timing caches
under a cache folder (so engines are built once per model, TensorRT and profile, not in every
process), one optimisation profile from the ONNX's dynamic axes and the caller's batch limit
(so a new batch size inside it never triggers a rebuild), and FP16/INT8 only where the ONNX's
own precision is FP16/INT8. The CUDA EP gets ``cudnn_conv_algo_search=HEURISTIC`` (no cuDNN
benchmark for every new input shape: dynamic batching makes many). Options given by the caller,
as ``(name, options)`` pairs in ``providers``, win over these.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from .._files import cache_root
from ..deps import installed_onnxruntimes
from ..errors import DependencyError, ModelError
from ..trt.onnx_file import OnnxInput, export_shapes, load_onnx, model_sha256, read_inputs, read_metadata
from ..trt.onnx_precision import onnx_precision

TENSORRT, CUDA, CPU = "TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"
GPU_PROVIDERS = (TENSORRT, CUDA)  # preference order for device="auto"
CPU_PROVIDER = CPU
DEFAULT_MAX_BATCH = 64  # the TensorRT EP profile's largest batch when the caller gives none
CUDA_OPTIONS = {"cudnn_conv_algo_search": "HEURISTIC"}

Provider = str | tuple[str, Mapping[str, object]]


class FallbackError(ModelError, DependencyError):
    """ONNX Runtime did not activate a requested execution provider (and would have run without it)."""


def provider_names(providers: Sequence[Provider]) -> list[str]:
    return [p if isinstance(p, str) else p[0] for p in providers]


def load_tensorrt() -> bool:
    """Whether TensorRT's libraries are loaded into this process, as its TensorRT EP needs them.

    The tensorrt wheels keep libnvinfer outside the loader's path and load it when ``tensorrt``
    is imported; importing it first lets ONNX Runtime's TensorRT EP find the same libraries.
    """
    try:
        import tensorrt  # noqa: F401
    except (ImportError, OSError):
        return False
    return True


def choose_providers(
    device: str, providers: Sequence[Provider] | None, available: Sequence[str], *, tensorrt: bool = True
) -> list[str]:
    """The execution providers for a session: ``providers`` as given (names), else by ``device``
    (the TensorRT EP only where ``tensorrt``: its libraries are there)."""
    if providers is not None:
        names = provider_names(providers)
        missing = [p for p in names if p not in available]
        if missing or not names:
            raise DependencyError(
                f"execution provider(s) {', '.join(missing) or '(none given)'} not available; "
                f"this onnxruntime has {', '.join(available)}"
            )
        return names
    gpu = [p for p in GPU_PROVIDERS if p in available and (p != TENSORRT or tensorrt)]
    if device == "cuda" and not gpu:
        raise DependencyError(
            "device='cuda' needs onnxruntime-gpu (pip install 'scconv-deploy[gpu]' or a trt extra); "
            f"this onnxruntime has {', '.join(available)}"
        )
    return ([] if device == "cpu" else gpu) + [CPU_PROVIDER]


@dataclass(frozen=True)
class OnnxFacts:
    """What the provider options are derived from: inputs, the shapes they were exported with, precision."""

    inputs: list[OnnxInput]
    exported: dict[str, tuple[int, ...]]
    precision: str  # "FP32", "FP16" or "INT8"
    sha256: str

    @classmethod
    def read(cls, path: str | Path) -> OnnxFacts:
        path = Path(path)
        model = load_onnx(path)
        inputs = read_inputs(model)
        digest = model_sha256(path, model)  # engine caches are keyed on it: external weights count
        return cls(inputs, export_shapes(inputs, read_metadata(model)), onnx_precision(model).kind, digest)


def _dims(shape: Sequence[int]) -> str:
    return "x".join(map(str, shape))


def profile_shapes(facts: OnnxFacts, max_batch: int) -> dict[str, tuple[tuple[int, ...], ...]] | None:
    """min/opt/max per input: static axes as they are, a dynamic batch 1..max_batch (tuned for full
    batches), other dynamic axes at the export shape; None when some dynamic axis has no known size."""
    profile = {}
    for inp in facts.inputs:
        ranges = []
        for axis, dim in enumerate(inp.dims):
            if isinstance(dim, int):
                ranges.append((dim, dim, dim))
            elif axis == 0:
                ranges.append((1, max_batch, max_batch))
            elif inp.name in facts.exported:
                size = facts.exported[inp.name][axis]
                ranges.append((size, size, size))
            else:
                return None
        profile[inp.name] = tuple(tuple(r[k] for r in ranges) for k in range(3))
    return profile


def default_cache_dir() -> Path:
    """``$XDG_CACHE_HOME/scconv-deploy/onnxruntime-tensorrt`` (or under ~/.cache)."""
    return cache_root() / "onnxruntime-tensorrt"


def tensorrt_options(facts: OnnxFacts, max_batch: int, cache_dir: Path, ort_version: str) -> dict[str, str]:
    """TensorRT EP options for the model: caches, one profile, precision from the ONNX."""
    engines = cache_dir / f"{facts.sha256[:16]}-ort{ort_version}"
    options = {
        "trt_engine_cache_enable": "True",
        "trt_engine_cache_path": str(engines),
        "trt_timing_cache_enable": "True",
        "trt_timing_cache_path": str(cache_dir),
        "trt_fp16_enable": str(facts.precision == "FP16"),
        "trt_int8_enable": str(facts.precision == "INT8"),
    }
    profile = profile_shapes(facts, max_batch)
    if profile is not None:
        for k, key in enumerate(
            ("trt_profile_min_shapes", "trt_profile_opt_shapes", "trt_profile_max_shapes")
        ):
            options[key] = ",".join(f"{name}:{_dims(shapes[k])}" for name, shapes in profile.items())
    return options


def with_options(
    names: Sequence[str],
    given: Sequence[Provider] | None,
    facts: OnnxFacts | None,
    max_batch: int,
    cache_dir: Path,
    ort_version: str,
) -> list[tuple[str, dict[str, str]]]:
    """(name, options) per provider: ours for TensorRT (from ``facts``) and CUDA, the caller's on top."""
    user = {p[0]: {k: str(v) for k, v in p[1].items()} for p in given or () if not isinstance(p, str)}
    ours = {
        TENSORRT: lambda: tensorrt_options(facts, max_batch, cache_dir, ort_version) if facts else {},
        CUDA: lambda: dict(CUDA_OPTIONS),
    }
    return [(name, {**(ours[name]() if name in ours else {}), **user.get(name, {})}) for name in names]


def fallback_hint(missing: Sequence[str]) -> str:
    """Why a GPU provider usually fails to load, and the fix."""
    installed = installed_onnxruntimes()
    if len(installed) > 1:
        return (
            f"{' and '.join(installed)} are both installed and overwrite each other: "
            "pip uninstall -y onnxruntime onnxruntime-gpu, then install one extra"
        )
    if TENSORRT in missing:
        return (
            "its TensorRT libraries did not load: onnxruntime-gpu before 1.27 needs TensorRT 10, from 1.27 "
            "TensorRT 11 (the trt10-cu12 and trt11-cu12 extras pair them), and a driver for their CUDA"
        )
    return (
        "the CUDA 12 / cuDNN 9 libraries did not load: pip install 'onnxruntime-gpu[cuda,cudnn]', "
        "check nvidia-smi"
    )


def check_active(
    name: str, requested: Sequence[str], active: Sequence[str], allow_fallback: bool
) -> list[str]:
    """The requested providers ONNX Runtime did not activate (logged by the caller when allowed);
    ``FallbackError`` when there are any and ``allow_fallback`` is False."""
    missing = [p for p in requested if p not in active]
    if missing and not allow_fallback:
        raise FallbackError(
            f"{name}: ONNX Runtime did not activate {', '.join(missing)} and would run on "
            f"{', '.join(active)}: {fallback_hint(missing)}; pass allow_fallback=True (--allow-fallback) "
            "to run anyway"
        )
    return missing
