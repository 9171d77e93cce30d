"""Helpers for the TensorRT-layer tests: a recording stand-in for the ``tensorrt`` module and the CUDA driver.

``FakeTensorRT(version)`` is a module object that Polygraphy's public loaders (``NetworkFromOnnxPath``,
``CreateConfig``, ``EngineBytesFromNetwork``, ``EngineFromBytes``) drive exactly as they drive
TensorRT: every call on the builder, network, parser, config, profile, runtime and timing cache
is appended to ``journal`` as ``(object, method, args)``, so tests state what TensorRT was asked
to do. Its parser reads the ONNX file it is given (kept in ``parsed``) and gives the network that
file's inputs, as TensorRT's does. It builds no engine: ``build_serialized_network`` returns
``plan_bytes`` (``build_error``: raises it; ``fail_build``: raises on that build, counted from 1).
Members a release lacks are left out (``without=``), so tests can show that options are passed only
where they exist. ``FakeDriver`` answers the CUDA driver calls of ``scconv_deploy.trt.cuda`` for a
chosen GPU. ``OrtPlanEngine`` stands in for a built engine: it runs the ONNX its sidecar names (the
verification graph, for a twin) in ONNX Runtime, with the inputs, profiles and outputs the sidecar
records.
"""

from __future__ import annotations

import ctypes
import enum
import sys
import types
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper

from scconv_deploy.gates import with_gate_outputs
from scconv_deploy.trt import TensorSpec
from scconv_deploy.trt.runner import check_feed
from scconv_deploy.verify import forced_graph


def run_cli(capsys, *argv: Any) -> tuple[int, str, str]:
    from scconv_deploy.cli.trt import main

    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def tiny_model(nodes, inits=(), shape=(1, 4)) -> onnx.ModelProto:
    graph = helper.make_graph(
        nodes,
        "tiny",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, list(shape))],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, list(shape))],
        initializer=list(inits),
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])


def save(model: onnx.ModelProto, path: Path) -> Path:
    onnx.save(model, str(path))
    return path


class _Recorded:
    """An object whose method calls go to the journal; unknown methods are recorded no-ops."""

    def __init__(self, fake: FakeTensorRT, kind: str) -> None:
        self._fake, self._kind = fake, kind

    def _record(self, method: str, *args: Any, **kwargs: Any) -> None:
        self._fake.journal.append((self._kind, method, args + tuple(kwargs.items())))

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)

        def method(*args: Any, **kwargs: Any) -> Any:
            self._record(name, *args, **kwargs)
            return True

        return method

    def __enter__(self) -> Any:
        return self

    def __exit__(self, *exc: Any) -> None:
        return None


class _Tensor:
    def __init__(self, name: str, shape: tuple[int, ...] = ()) -> None:
        self.name, self.shape, self.dtype = name, shape, "FLOAT"
        self.is_network_output = self.is_shape_tensor = False


class _Layer:
    def __init__(self, output: _Tensor) -> None:
        self.num_outputs, self._output = 1, output
        self.name, self.precision_is_set = output.name, False

    def get_output(self, index: int) -> _Tensor:
        return self._output


class Network(_Recorded):
    """Layers with one output each, named like the ONNX tensors the parser keeps."""

    def __init__(self, fake: FakeTensorRT, flags: int) -> None:
        super().__init__(fake, "network")
        self.flags = flags
        self.layers = [_Layer(_Tensor(name)) for name in fake.tensor_names]
        self.num_layers = len(self.layers)
        self.inputs = [_Tensor(name, (-1, 1, 32, 32)) for name in fake.input_names]
        self.num_inputs, self.num_outputs = len(self.inputs), 0

    def get_layer(self, index: int) -> _Layer:
        return self.layers[index]

    def get_input(self, index: int) -> _Tensor:
        return self.inputs[index]

    def __iter__(self) -> Any:
        return iter(self.layers)

    def mark_output(self, tensor: _Tensor) -> None:
        tensor.is_network_output = True
        self._record("mark_output", tensor.name)


class Parser(_Recorded):
    def __init__(self, network: Network, logger: Any, fake: FakeTensorRT) -> None:
        super().__init__(fake, "parser")
        self.num_errors = 0
        self._flags = 0
        self._network = network

    @property
    def flags(self) -> int:
        return self._flags

    @flags.setter
    def flags(self, value: int) -> None:
        self._flags = value
        self._record("flags", value)

    def parse_from_file(self, path: str) -> bool:
        self._record("parse_from_file", path)
        model = onnx.load(path, load_external_data=False)
        self._fake.parsed.append(model)
        weights = {t.name for t in model.graph.initializer}
        network = self._network
        network.inputs = [
            _Tensor(v.name, tuple(d.dim_value or -1 for d in v.type.tensor_type.shape.dim))
            for v in model.graph.input
            if v.name not in weights
        ]
        network.num_inputs = len(network.inputs)
        return True


class TimingCache(_Recorded):
    def __init__(self, fake: FakeTensorRT, data: bytes) -> None:
        super().__init__(fake, "timing_cache")
        self.data = bytes(data)

    def serialize(self) -> Any:
        return _HostMemory(self.data + self._fake.new_timings)

    def combine(self, other: TimingCache, ignore_mismatch: bool) -> bool:
        return True


class _HostMemory(bytes):
    def __enter__(self) -> bytes:
        return self

    def __exit__(self, *exc: Any) -> None:
        return None


class Profile(_Recorded):
    def __init__(self, fake: FakeTensorRT) -> None:
        super().__init__(fake, "profile")
        self.shapes: dict[str, tuple] = {}

    def set_shape(self, name: str, min: Any, opt: Any, max: Any) -> None:
        self.shapes[name] = (tuple(min), tuple(opt), tuple(max))
        self._record("set_shape", name, tuple(min), tuple(opt), tuple(max))

    def get_shape(self, name: str) -> tuple:
        return self.shapes[name]

    def __bool__(self) -> bool:
        return True


class Config(_Recorded):
    def __init__(self, fake: FakeTensorRT) -> None:
        super().__init__(fake, "config")
        self.flags: set[Any] = set()
        self.cache: TimingCache | None = None
        self.num_optimization_profiles = 0
        self.DLA_core, self.default_device_type = -1, fake.DeviceType.GPU

    _STATE = ("flags", "cache", "num_optimization_profiles", "DLA_core", "default_device_type")

    def __setattr__(self, name: str, value: Any) -> None:
        if not name.startswith("_") and name not in self._STATE:
            self._record(f"{name}=", value)
        object.__setattr__(self, name, value)

    def set_flag(self, flag: Any) -> None:
        self.flags.add(flag)
        self._record("set_flag", flag)

    def clear_flag(self, flag: Any) -> None:
        self.flags.discard(flag)
        self._record("clear_flag", flag)

    def get_flag(self, flag: Any) -> bool:
        return flag in self.flags

    def add_optimization_profile(self, profile: Profile) -> int:
        self._record("add_optimization_profile", dict(profile.shapes))
        self.num_optimization_profiles += 1
        return self.num_optimization_profiles - 1

    def create_timing_cache(self, data: bytes) -> TimingCache:
        self._record("create_timing_cache", bytes(data))
        return TimingCache(self._fake, data)

    def set_timing_cache(self, cache: TimingCache, ignore_mismatch: bool) -> bool:
        self.cache = cache
        return True

    def get_timing_cache(self) -> TimingCache | None:
        return self.cache


class Builder(_Recorded):
    def __init__(self, logger: Any, fake: FakeTensorRT) -> None:
        super().__init__(fake, "builder")

    def create_network(self, flags: int = 0) -> Network:
        self._record("create_network", flags)
        return Network(self._fake, flags)

    def create_builder_config(self) -> Config:
        return Config(self._fake)

    def create_optimization_profile(self) -> Profile:
        return Profile(self._fake)

    def build_serialized_network(self, network: Network, config: Config) -> Any:
        self._record("build_serialized_network")
        builds = len(self._fake.calls("builder", "build_serialized_network"))
        if self._fake.build_error is not None and self._fake.fail_build in (None, builds):
            raise self._fake.build_error
        return _HostMemory(self._fake.plan_bytes)


class Runtime(_Recorded):
    def __init__(self, logger: Any, fake: FakeTensorRT) -> None:
        super().__init__(fake, "runtime")
        object.__setattr__(self, "engine_host_code_allowed", False)

    def __setattr__(self, name: str, value: Any) -> None:
        if name == "engine_host_code_allowed" and hasattr(self, "_fake"):
            self._record("engine_host_code_allowed=", value)
        object.__setattr__(self, name, value)

    def deserialize_cuda_engine(self, data: bytes) -> Any:
        self._record("deserialize_cuda_engine", bytes(data))
        if self._fake.deserialize_error is not None:
            raise self._fake.deserialize_error
        return None  # the real runtime returns None (and logs) for a plan it cannot load


def _enum(name: str, members: list[str], without: set[str]) -> type[enum.IntEnum]:
    return enum.IntEnum(name, [m for m in members if m not in without], start=0)


class FakeTensorRT(types.ModuleType):
    """A stand-in ``tensorrt`` module of release ``version``; ``journal`` holds what it was asked to do."""

    def __init__(
        self,
        version: str = "10.8.0.43",
        tensor_names: list[str] | None = None,
        without: set[str] | None = None,
        input_names: tuple[str, ...] = ("input",),
    ) -> None:
        super().__init__("tensorrt")
        without = set(without or ())
        self.__version__ = version
        self.journal: list[tuple[str, str, tuple]] = []
        self.tensor_names = list(tensor_names or [])
        self.input_names = list(input_names)
        self.plan_bytes = b"serialized plan"
        self.new_timings = b"+timings"
        self.build_error: BaseException | None = None
        self.fail_build: int | None = None  # with build_error: the build that fails (None: every one)
        self.parsed: list[onnx.ModelProto] = []
        self.deserialize_error: BaseException | None = None
        fake = self
        self.Builder = lambda logger: Builder(logger, fake)
        self.OnnxParser = lambda network, logger: Parser(network, logger, fake)
        self.Runtime = lambda logger: Runtime(logger, fake)
        self.init_libnvinfer_plugins = lambda logger, namespace: True
        self.NetworkDefinitionCreationFlag = _enum(
            "NetworkDefinitionCreationFlag", ["EXPLICIT_BATCH", "STRONGLY_TYPED"], without
        )
        self.OnnxParserFlag = _enum("OnnxParserFlag", ["NATIVE_INSTANCENORM"], without)
        self.BuilderFlag = _enum(
            "BuilderFlag", ["FP16", "INT8", "TF32", "VERSION_COMPATIBLE", "EXCLUDE_LEAN_RUNTIME"], without
        )
        self.MemoryPoolType = _enum("MemoryPoolType", ["WORKSPACE"], without)
        self.HardwareCompatibilityLevel = _enum(
            "HardwareCompatibilityLevel", ["NONE", "AMPERE_PLUS", "SAME_COMPUTE_CAPABILITY"], without
        )
        self.TensorIOMode = _enum("TensorIOMode", ["NONE", "INPUT", "OUTPUT"], without)
        self.DeviceType = _enum("DeviceType", ["GPU", "DLA"], without)

        class ILogger:
            def __init__(self) -> None:
                pass

        class Logger:
            INTERNAL_ERROR, ERROR, WARNING, INFO, VERBOSE = range(5)

        class IProgressMonitor:
            def __init__(self) -> None:
                pass

        self.ILogger, self.Logger, self.IProgressMonitor = ILogger, Logger, IProgressMonitor
        for name in ("IBuilderConfig", "INetworkDefinition", "ICudaEngine", "IOptimizationProfile"):
            setattr(self, name, type(name, (), {}))

    def calls(self, kind: str, method: str | None = None) -> list[tuple]:
        """The recorded arguments of ``kind``'s calls (of ``method``, when given), in order."""
        return [
            (m, args) if method is None else args
            for k, m, args in self.journal
            if k == kind and (method is None or m == method)
        ]


class FakeDriver:
    """``libcuda`` answering as a GPU ``name`` of ``capability``, its driver for CUDA ``driver_cuda``."""

    def __init__(
        self,
        name: str = "NVIDIA H100 80GB HBM3",
        capability: tuple[int, int] = (9, 0),
        driver_cuda: int = 12080,
        fail: dict[str, int] | None = None,
    ) -> None:
        self.name, self.capability, self.driver_cuda = name, capability, driver_cuda
        self.fail = dict(fail or {})

    def _status(self, call: str) -> int:
        return self.fail.get(call, 0)

    @staticmethod
    def _set(ref: Any, value: Any) -> None:
        ctypes.cast(ref, ctypes.POINTER(type(ref._obj)))[0] = value

    def cuInit(self, flags: int) -> int:
        return self._status("cuInit")

    def cuDeviceGet(self, ref: Any, ordinal: int) -> int:
        self._set(ref, ordinal)
        return self._status("cuDeviceGet")

    def cuDeviceGetName(self, buffer: Any, size: int, device: int) -> int:
        buffer.value = self.name.encode()
        return self._status("cuDeviceGetName")

    def cuDeviceGetAttribute(self, ref: Any, attribute: int, device: int) -> int:
        self._set(ref, self.capability[0] if attribute == 75 else self.capability[1])
        return self._status("cuDeviceGetAttribute")

    def cuDriverGetVersion(self, ref: Any) -> int:
        self._set(ref, self.driver_cuda)
        return self._status("cuDriverGetVersion")


def forget_tensorrt() -> None:
    """Make Polygraphy import ``tensorrt`` afresh: its lazy imports keep the first module they saw.

    A stand-in installed by one test must not stay behind for the next test (or for a real
    TensorRT later in the session): test set-up and tear-down call this.
    """
    for name, module in list(sys.modules.items()):
        if not name.startswith("polygraphy") or module is None:
            continue
        for value in list(vars(module).values()):
            if type(value).__name__ == "LazyModule" and isinstance(vars(value).get("module"), FakeTensorRT):
                object.__setattr__(value, "module", None)


class OrtPlanEngine:
    """The engine contract (``inputs``, ``outputs``, ``infer``, ``sidecar``, ``close``) over ONNX Runtime.

    Runs the ONNX the sidecar names (relative to the plan): for a verification twin its verification
    graph, with ``--debug-gates`` with the gate values exposed. Inputs, profiles, dtypes and outputs
    are the sidecar's, and feeds are checked as the real engine checks them. ``scale`` multiplies the
    output named ``output``: an engine that computes wrongly.
    """

    def __init__(self, plan_path: str | Path, sidecar: dict[str, Any], scale: float = 1.0) -> None:
        self.name, self.sidecar, self.scale = str(plan_path), sidecar, scale
        model = onnx.load(str(Path(plan_path).parent / sidecar["onnx"]["file"]))
        if sidecar.get("verification_twin"):
            model = forced_graph(model).model
        if sidecar["gate_outputs"]:
            model = with_gate_outputs(model)
        self.session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
        (profile,) = sidecar["profiles"]
        self.inputs = {
            name: TensorSpec(
                tuple(r["min"]), tuple(r["opt"]), tuple(r["max"]), np.dtype(sidecar["inputs"][name]["dtype"])
            )
            for name, r in profile.items()
        }
        self.outputs = list(sidecar["outputs"])
        self.batches: list[int] = []

    def infer(self, feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        arrays = check_feed(self.name, self.inputs, feed)
        self.batches.append(len(next(iter(arrays.values()))))
        results = dict(zip(self.outputs, self.session.run(self.outputs, arrays), strict=True))
        if "output" in results:
            results["output"] = results["output"] * np.float32(self.scale)
        return results

    def close(self) -> None:
        self.session = None

    def __enter__(self) -> OrtPlanEngine:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()
