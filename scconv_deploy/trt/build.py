"""Execute a ``BuildPlan``: parse the ONNX strongly typed, build through Polygraphy's loaders, keep the bytes.

The only module that drives TensorRT's builder (imported lazily: ``require_tensorrt``). Precision
comes from the ONNX; TF32 stays off (Polygraphy's default), so an FP32 ONNX gives an FP32 engine.
``BuiltEngine.save`` writes the plan and its sidecar together.
"""

from __future__ import annotations

import functools
import logging
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, TextIO

from ..errors import EngineError
from .env import cuda_device, polygraphy_verbosity, require_cuda, require_tensorrt
from .plan import BuildPlan
from .sidecar import BuildInfo, sha256_bytes, write_engine_files

logger = logging.getLogger(__name__)


class BuildProgress:
    """Writes the builder's phases to ``stream`` as they start and finish (the outer ``depth`` levels)."""

    def __init__(self, stream: TextIO, depth: int = 2) -> None:
        self._stream = stream
        self._max_depth = depth
        self._depth: dict[str, int] = {}
        self._started: dict[str, float] = {}
        self._lock = threading.Lock()  # TensorRT may report from several threads

    def phase_start(self, phase: str, parent: str | None, steps: int) -> None:
        with self._lock:
            depth = 0 if parent is None else self._depth.get(parent, 0) + 1
            self._depth[phase], self._started[phase] = depth, time.perf_counter()
            if depth < self._max_depth:
                self._write(f"{'  ' * depth}{phase} ({steps} step{'s' * (steps != 1)})")

    def step_complete(self, phase: str, step: int) -> bool:
        """True: go on (False would cancel the build)."""
        return True

    def phase_finish(self, phase: str) -> None:
        with self._lock:
            depth = self._depth.pop(phase, 0)
            seconds = time.perf_counter() - self._started.pop(phase, time.perf_counter())
            if depth == 0:
                self._write(f"{phase}: done in {seconds:.1f} s")

    def _write(self, line: str) -> None:
        print(f"[build] {line}", file=self._stream, flush=True)


def _monitor(trt: Any, progress: BuildProgress) -> Any:
    """A ``trt.IProgressMonitor`` forwarding to ``progress`` (subclassing it needs TensorRT)."""

    class Monitor(trt.IProgressMonitor):
        def __init__(self) -> None:
            trt.IProgressMonitor.__init__(self)

        def phase_start(self, phase_name: str, parent_phase: str | None, num_steps: int) -> None:
            progress.phase_start(phase_name, parent_phase, num_steps)

        def step_complete(self, phase_name: str, step: int) -> bool:
            return progress.step_complete(phase_name, step)

        def phase_finish(self, phase_name: str) -> None:
            progress.phase_finish(phase_name)

    return Monitor()


def _mark_outputs(network: Any, names: list[str]) -> None:
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


def engine_loader(trt: Any, plan: BuildPlan, progress: TextIO | None = None) -> Any:
    """Polygraphy's loader chain for ``plan``: parse strongly typed, expose the gates, configure, serialise.

    Nothing runs until the returned loader is called (then TensorRT and a GPU are needed).
    """
    from polygraphy.backend.trt import (
        CreateConfig,
        EngineBytesFromNetwork,
        NetworkFromOnnxPath,
        PostprocessNetwork,
        Profile,
    )

    # Version-compatible engines may not hold plugins: keep InstanceNormalization native.
    native_norm = getattr(trt.OnnxParserFlag, "NATIVE_INSTANCENORM", None)
    flags = [native_norm] if plan.version_compatible and native_norm is not None else None
    network: Any = NetworkFromOnnxPath(str(plan.onnx_path), flags=flags, strongly_typed=True)
    if plan.debug_gates:
        mark = functools.partial(_mark_outputs, names=plan.gate_tensors)
        network = PostprocessNetwork(network, mark, name="expose gate tensors")
    profile = Profile()
    for name, shapes in plan.profile.items():
        profile.add(name, min=shapes.min, opt=shapes.opt, max=shapes.max)
    cache = str(plan.timing_cache) if plan.timing_cache is not None else None
    config = CreateConfig(
        profiles=[profile],
        memory_pool_limits={trt.MemoryPoolType.WORKSPACE: plan.workspace} if plan.workspace else None,
        load_timing_cache=cache,
        builder_optimization_level=plan.builder_opt_level,
        version_compatible=plan.version_compatible or None,
        progress_monitor=_monitor(trt, BuildProgress(progress)) if progress is not None else None,
    )
    return EngineBytesFromNetwork(network, config, save_timing_cache=cache)


def build_engine(plan: BuildPlan, progress: TextIO | None = None) -> BuiltEngine:
    """Build ``plan`` with TensorRT (``progress``: where to show the builder's phases)."""
    trt = require_tensorrt()
    require_cuda()
    from polygraphy.exception import PolygraphyException

    start = time.perf_counter()
    try:
        with polygraphy_verbosity():
            data = bytes(engine_loader(trt, plan, progress)())
    except PolygraphyException as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise EngineError(f"TensorRT could not build {plan.onnx_path}: {first}") from err
    seconds = time.perf_counter() - start
    gpu, capability = cuda_device()
    info = BuildInfo(
        trt_version=trt.__version__,
        gpu_name=gpu,
        compute_capability=capability,
        seconds=seconds,
        built_at=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        plan_sha256=sha256_bytes(data),
        plan_bytes=len(data),
    )
    logger.info("built %s in %.1f s (%d bytes)", plan.engine_path, seconds, len(data))
    return BuiltEngine(plan, data, info)
