"""What is inside a plan: its layers and their precisions (TensorRT's engine inspector), its profile,
and what its sidecar records. Parsing the inspector's JSON and describing a sidecar need no TensorRT.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from .env import require_tensorrt, tensorrt_errors
from .onnx_precision import Precision
from .profile import ShapeRange, dims_text
from .runner import load_engine

# Inspector spellings of data types → one name each.
_DTYPE_ALIASES = {"FLOAT": "FP32", "FLOAT32": "FP32", "HALF": "FP16", "FLOAT16": "FP16", "BFLOAT16": "BF16"}
_DTYPES = {"FP32", "FP16", "BF16", "FP8", "FP4", "INT4", "INT8", "UINT8", "INT32", "INT64", "BOOL"}


def _tensor_dtype(tensor: dict[str, Any]) -> str:
    """TensorRT 10 writes ``"Format/Datatype": "Row major linear FP32"``; 11 ``Datatype`` and ``Format``."""
    text = tensor.get("Format/Datatype") or " ".join(str(tensor.get(k, "")) for k in ("Datatype", "Format"))
    for token in re.findall(r"[A-Z0-9]+", text.upper()):
        token = _DTYPE_ALIASES.get(token, token)
        if token in _DTYPES:
            return token
    return "?"


@dataclass(frozen=True)
class LayerInfo:
    name: str
    type: str
    output_dtypes: tuple[str, ...] = ()
    tactic: str | None = None


def layer_info(info: dict[str, Any] | str) -> LayerInfo:
    """A layer of the inspector's JSON (a bare name if the engine was built without detailed profiling)."""
    if isinstance(info, str):
        return LayerInfo(info, "?")
    tactic = info.get("TacticName") or info.get("TacticValue")
    return LayerInfo(
        str(info.get("Name", "?")),
        str(info.get("LayerType", "?")),
        tuple(_tensor_dtype(t) for t in info.get("Outputs") or []),
        None if tactic is None else str(tactic),
    )


def sidecar_summary(sidecar: dict[str, Any]) -> str:
    """A few lines on how, from what and for what an engine was built."""
    trt, gpu, build = sidecar["tensorrt"], sidecar["gpu"], sidecar["build"]
    sm = f"sm_{gpu['compute_capability'].replace('.', '')}" if gpu["compute_capability"] else "?"
    fields = {k: v for k, v in sidecar["precision"].items() if k != "fp16_weight_fraction"}
    gates = sidecar["gate_outputs"]
    outputs = [o for o in sidecar["outputs"] if o not in gates]
    lines = [
        f"built with TensorRT {trt['version']} on {gpu['name']} ({sm}) at {build['built_at']} in "
        f"{build['seconds']} s; version-compatible: {'yes' if trt['version_compatible'] else 'no'}; "
        f"hardware compatibility: {gpu.get('hardware_compatibility') or 'none'}",
        f"from {sidecar['onnx']['file']} (sha256 {sidecar['onnx']['sha256'][:12]}…)",
        f"precision {Precision(**fields)}, strongly typed",
        *(
            f"profile {name}: {ShapeRange(**{k: tuple(v) for k, v in r.items()})}"
            for name, r in sidecar["profiles"][0].items()
        ),
        f"outputs {', '.join(outputs)}" + (f" + {len(gates)} gate tensors (--debug-gates)" if gates else ""),
        f"lint {sidecar['lint']['summary']}",
    ]
    twin = sidecar.get("verification_twin")
    if twin:
        lines.insert(2, f"verification twin of {twin['of']}: the ONNX with every SRU mask fed in")
    check = sidecar.get("verification")
    lines.append(
        f"verification {check['summary']} (golden {check['golden']})"
        if check
        else "verification: not run at build"
    )
    lines.append(", ".join(f"{k} {v}" for k, v in sidecar["toolkit"].items()))
    return "\n".join(lines)


@dataclass
class EngineReport:
    plan: str
    inputs: dict[str, dict[str, Any]]  # name → min/opt/max and dtype
    outputs: dict[str, list[int]]  # name → shape at the inputs' optimal shapes
    layers: list[LayerInfo]
    device_memory: int | None
    sidecar: dict[str, Any] | None = None
    counts: dict[str, dict[str, int]] = field(init=False)

    def __post_init__(self) -> None:
        self.counts = {
            "layer_types": dict(Counter(layer.type for layer in self.layers).most_common()),
            "output_precisions": dict(
                Counter(d for layer in self.layers for d in layer.output_dtypes).most_common()
            ),
        }

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def describe(self, layers: bool = False) -> str:
        memory = f"{self.device_memory / 2**20:.1f} MiB" if self.device_memory is not None else "unknown"
        lines = [f"{self.plan}: {len(self.layers)} layers, device memory {memory}"]
        for name, spec in self.inputs.items():
            shapes = ShapeRange(tuple(spec["min"]), tuple(spec["opt"]), tuple(spec["max"]))
            lines.append(f"  input  {name} {spec['dtype']}: {shapes}")
        lines += [f"  output {name} {dims_text(tuple(shape))} at opt" for name, shape in self.outputs.items()]
        for title, counts in (
            ("layer types", "layer_types"),
            ("layer output precisions", "output_precisions"),
        ):
            lines.append(
                f"  {title}: " + (", ".join(f"{n} {k}" for k, n in self.counts[counts].items()) or "unknown")
            )
        if layers:
            for layer in self.layers:
                dtypes = "/".join(layer.output_dtypes) or "-"
                lines.append(f"    {layer.name}  [{layer.type}]  {dtypes}  {layer.tactic or ''}".rstrip())
        if self.sidecar is not None:
            lines.append("sidecar:")
            lines += [f"  {line}" for line in sidecar_summary(self.sidecar).splitlines()]
        else:
            lines.append("no sidecar: TensorRT release and GPU of the build unknown")
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.describe()


def inspect_plan(path: str | Path, *, check_compatibility: bool = True) -> EngineReport:
    """Load a plan (checked against its sidecar) and read its layers at the profile's optimal shapes."""
    trt = require_tensorrt()
    with load_engine(path, check_compatibility=check_compatibility) as engine:
        cuda_engine, context = engine.trt_engine, engine.trt_context
        with tensorrt_errors(f"{path}: TensorRT's engine inspector failed"):
            for name, spec in engine.inputs.items():
                context.set_input_shape(name, spec.opt)
            inspector = cuda_engine.create_engine_inspector()
            inspector.execution_context = context
            layers = [
                layer_info(json.loads(inspector.get_layer_information(i, trt.LayerInformationFormat.JSON)))
                for i in range(cuda_engine.num_layers)
            ]
        memory = getattr(cuda_engine, "device_memory_size_v2", None) or getattr(
            cuda_engine, "device_memory_size", None
        )
        return EngineReport(
            str(path),
            {
                name: {"min": list(s.min), "opt": list(s.opt), "max": list(s.max), "dtype": str(s.dtype)}
                for name, s in engine.inputs.items()
            },
            {name: list(context.get_tensor_shape(name)) for name in engine.outputs},
            layers,
            memory,
            engine.sidecar,
        )
