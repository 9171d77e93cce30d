"""Execute a ``BuildPlan`` in named stages: parse, expose the gates, configure, build, keep the timing cache.

The only module that drives TensorRT's builder, through Polygraphy's public loaders
(``NetworkFromOnnxPath``, ``CreateConfig``, ``EngineBytesFromNetwork``); TensorRT is imported
lazily (``require_trt_gpu``). Precision comes from the ONNX: TensorRT 10 parses it with the
``STRONGLY_TYPED`` network flag, TensorRT 11 (where every network is strongly typed and the flag
is deprecated) without it; TF32 stays off (Polygraphy's default). Options are passed only where
the installed TensorRT has them, otherwise the build stops before it starts, with one line.

A verification twin's plan (``trt.twin``) builds the same way from its verification graph, which
is written to a temporary file for the parse (``NetworkFromOnnxPath``, as for the ONNX itself:
external weights resolve beside the model, the flags and ``strongly_typed`` are the same).

Once TensorRT has returned the plan's bytes nothing may lose them: the timing cache is written
afterwards by this module (a failure there is a warning), and ``BuiltEngine.save`` writes the
plan and its sidecar together.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, TextIO

from .._files import Staging
from ..errors import EngineError
from .env import TrtHost, polygraphy_verbosity, require_trt_gpu, tensorrt_errors
from .plan import BuildPlan, check_outputs
from .progress import BuildProgress, progress_monitor
from .sidecar import HARDWARE_LEVELS, BuildInfo, sha256_bytes, write_engine_files, write_sidecar
from .twin import onnx_to_parse

logger = logging.getLogger(__name__)


@dataclass
class BuiltEngine:
    """A built plan (bytes, not yet written) with the facts of its build."""

    plan: BuildPlan
    data: bytes
    info: BuildInfo

    def sidecar(self, verification: dict[str, Any] | None = None) -> dict[str, Any]:
        return self.plan.sidecar(self.info, verification)

    def save(self, verification: dict[str, Any] | None = None) -> tuple[Path, Path]:
        """Write the plan and ``MODEL.plan.json`` beside it, atomically."""
        return write_engine_files(self.plan.engine_path, self.data, self.sidecar(verification))

    def record_verification(self, verification: dict[str, Any] | None) -> Path:
        """Rewrite the saved plan's sidecar with a verification record (the plan itself is untouched)."""
        return write_sidecar(self.plan.engine_path, self.sidecar(verification))


def strongly_typed_flag(trt_major: int) -> bool:
    """Whether to ask for ``STRONGLY_TYPED``: TensorRT 10 needs it; 11 is always strongly typed."""
    return trt_major < 11


def parser_flags(trt: Any, plan: BuildPlan) -> list[Any] | None:
    """Version-compatible engines may not hold plugins: InstanceNormalization stays native, where it can."""
    native_norm = getattr(getattr(trt, "OnnxParserFlag", None), "NATIVE_INSTANCENORM", None)
    return [native_norm] if plan.version_compatible and native_norm is not None else None


def hardware_level(trt: Any, plan: BuildPlan) -> Any:
    """TensorRT's ``HardwareCompatibilityLevel`` member for the plan (None: TensorRT's default)."""
    if plan.hardware_compatibility == "none":
        return None
    member = HARDWARE_LEVELS[plan.hardware_compatibility]
    level = getattr(getattr(trt, "HardwareCompatibilityLevel", None), member, None)
    if level is None:
        raise EngineError(
            f"--hardware-compatibility {plan.hardware_compatibility}: TensorRT {trt.__version__} has no "
            f"HardwareCompatibilityLevel.{member}; use another level or a newer TensorRT"
        )
    return level


def parse_network(host: TrtHost, plan: BuildPlan, onnx_file: Path | None = None) -> tuple[Any, Any, Any]:
    """(builder, network, parser) of ``onnx_file`` (default: the plan's ONNX); the gate tensors become
    outputs with ``debug_gates``."""
    from polygraphy.backend.trt import NetworkFromOnnxPath

    loader = NetworkFromOnnxPath(
        str(onnx_file or plan.onnx_path),
        flags=parser_flags(host.trt, plan),
        strongly_typed=strongly_typed_flag(host.major),
    )
    builder, network, parser = loader()
    if plan.debug_gates:
        mark_outputs(network, plan.gate_tensors)
    return builder, network, parser


def mark_outputs(network: Any, names: list[str]) -> None:
    """Mark the gate tensors as network outputs, so the engine returns them (``--debug-gates``)."""
    tensors = {}
    for i in range(network.num_layers):
        layer = network.get_layer(i)
        for j in range(layer.num_outputs):
            tensor = layer.get_output(j)
            tensors[tensor.name] = tensor
    missing = [n for n in names if n not in tensors]
    if missing:
        raise EngineError(f"--debug-gates: gate tensors {missing[:3]} are not in the parsed TensorRT network")
    for name in names:
        if not tensors[name].is_network_output:
            network.mark_output(tensors[name])


def builder_config(
    host: TrtHost, plan: BuildPlan, builder: Any, network: Any, progress: TextIO | None
) -> Any:
    """The ``IBuilderConfig``: one profile, the plan's limits and compatibility, no precision flags."""
    from polygraphy.backend.trt import CreateConfig, Profile

    trt = host.trt
    profile = Profile()
    for name, shapes in plan.profile.items():
        profile.add(name, min=shapes.min, opt=shapes.opt, max=shapes.max)
    cache = plan.timing_cache
    create = CreateConfig(
        profiles=[profile],
        memory_pool_limits={trt.MemoryPoolType.WORKSPACE: plan.workspace} if plan.workspace else None,
        load_timing_cache=str(cache) if cache is not None and cache.is_file() else None,
        builder_optimization_level=plan.builder_opt_level,
        version_compatible=plan.version_compatible or None,
        hardware_compatibility_level=hardware_level(trt, plan),
        progress_monitor=progress_monitor(trt, BuildProgress(progress)) if progress is not None else None,
    )
    return create(builder, network)


def serialize(builder: Any, network: Any, parser: Any, config: Any) -> bytes:
    """The plan's bytes (TensorRT's build; the parser stays alive: it owns the weights)."""
    from polygraphy.backend.trt import EngineBytesFromNetwork

    return bytes(EngineBytesFromNetwork((builder, network, parser), config)())


def save_timing_cache(config: Any, path: Path | None) -> bool:
    """Write the config's timing cache (the loaded one plus this build's timings) to ``path``, atomically.

    Runs after the plan exists, so a failure is a warning: the engine is never lost to it.
    """
    if path is None:
        return False
    try:
        data = bytes(config.get_timing_cache().serialize())
        with Staging(EngineError) as staging:
            staging.temp_for(path).write_bytes(data)
    except Exception as err:  # TensorRT's or the file system's: the build succeeded regardless
        logger.warning("the timing cache was not saved to %s: %s", path, err)
        return False
    return True


def build_engine(plan: BuildPlan, progress: TextIO | None = None) -> BuiltEngine:
    """Build ``plan`` with TensorRT (``progress``: where to show the builder's phases)."""
    host = require_trt_gpu()
    check_outputs(plan.engine_path, plan.timing_cache)  # the folders may have changed since the plan
    hardware_level(host.trt, plan)  # an option this TensorRT lacks stops the build before it starts
    start = time.perf_counter()
    what = f"the verification twin of {plan.onnx_path}" if plan.twin_of is not None else str(plan.onnx_path)
    with (
        onnx_to_parse(plan) as onnx_file,
        polygraphy_verbosity(),
        tensorrt_errors(f"TensorRT could not build {what}"),
    ):
        builder, network, parser = parse_network(host, plan, onnx_file)
        config = builder_config(host, plan, builder, network, progress)
        data = serialize(builder, network, parser, config)
    seconds = time.perf_counter() - start
    save_timing_cache(config, plan.timing_cache)
    info = BuildInfo(
        trt_version=host.version,
        gpu_name=host.device.name,
        compute_capability=host.device.compute_capability,
        seconds=seconds,
        built_at=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        plan_sha256=sha256_bytes(data),
        plan_bytes=len(data),
    )
    logger.info("built %s in %.1f s (%d bytes)", plan.engine_path, seconds, len(data))
    return BuiltEngine(plan, data, info)
