"""Triton Inference Server model repositories: ``DIR/<name>/config.pbtxt`` + ``DIR/<name>/1/model.onnx|plan``.

Inputs, outputs, dims and the batch size come from the model: an ONNX graph is read directly; a
TensorRT engine from its sidecar (``MODEL.plan.json``: inputs and optimisation profile), with
the outputs left to Triton's auto-complete, which reads them from the engine (no TensorRT or GPU
is needed here). With ``max_batch_size`` > 0 dims leave out the batch dimension (Triton adds it);
-1 marks a dynamic dimension. Class names recorded in an ONNX's metadata become ``labels.txt``
for Triton's classification extension.

The config is checked by parsing it with Triton's own schema (``ModelConfig`` from tritonclient's
``model_config_pb2``, loaded from its file so that tritonclient's gRPC extra is not needed);
without tritonclient the check is skipped with a warning. The repository entry is written in a
temp directory beside its target and renamed into place: nothing is half-written on failure.
"""

from __future__ import annotations

import functools
import importlib.util
import logging
import os
import shutil
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import onnx

from .errors import DependencyError, ExportError
from .runtime.base import parse_metadata
from .runtime.tensorrt import sidecar_metadata, trt_layer

logger = logging.getLogger(__name__)

DEFAULT_MAX_BATCH = 8  # for models with a dynamic batch and no engine profile to bound it
PLATFORMS = {".onnx": "onnxruntime_onnx", ".plan": "tensorrt_plan"}
FILENAMES = {".onnx": "model.onnx", ".plan": "model.plan"}
TYPES = {
    np.dtype(np.bool_): "TYPE_BOOL",
    np.dtype(np.uint8): "TYPE_UINT8",
    np.dtype(np.uint16): "TYPE_UINT16",
    np.dtype(np.uint32): "TYPE_UINT32",
    np.dtype(np.uint64): "TYPE_UINT64",
    np.dtype(np.int8): "TYPE_INT8",
    np.dtype(np.int16): "TYPE_INT16",
    np.dtype(np.int32): "TYPE_INT32",
    np.dtype(np.int64): "TYPE_INT64",
    np.dtype(np.float16): "TYPE_FP16",
    np.dtype(np.float32): "TYPE_FP32",
    np.dtype(np.float64): "TYPE_FP64",
}


@dataclass(frozen=True)
class _Tensor:
    name: str
    dtype: np.dtype
    shape: tuple[int, ...]  # -1: dynamic


@dataclass(frozen=True)
class _Description:
    inputs: list[_Tensor]
    outputs: list[_Tensor]  # empty: left to Triton's auto-complete
    max_batch: int | None  # the engine profile's largest batch; None: unbounded or unknown
    metadata: dict[str, Any]
    extra_files: list[str]  # ONNX external data, relative to the model file


@dataclass(frozen=True)
class TritonRepository:
    """What ``write_triton_repository`` wrote, and whether Triton's schema checked the config."""

    model_dir: Path
    config_path: Path
    model_path: Path
    config: str
    schema_checked: bool


def _describe_onnx(path: Path) -> _Description:
    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as err:  # protobuf DecodeError, OSError
        raise ExportError(f"{path} is not a readable ONNX model: {err}") from err
    initializers = {t.name for t in model.graph.initializer}

    def tensor(value: onnx.ValueInfoProto) -> _Tensor:
        ttype = value.type.tensor_type
        dims = tuple(d.dim_value if d.HasField("dim_value") else -1 for d in ttype.shape.dim)
        return _Tensor(value.name, np.dtype(onnx.helper.tensor_dtype_to_np_dtype(ttype.elem_type)), dims)

    extra = sorted(
        {
            entry.value
            for t in model.graph.initializer
            if t.data_location == onnx.TensorProto.EXTERNAL
            for entry in t.external_data
            if entry.key == "location"
        }
    )
    return _Description(
        [tensor(v) for v in model.graph.input if v.name not in initializers],
        [tensor(v) for v in model.graph.output],
        None,
        parse_metadata({p.key: p.value for p in model.metadata_props}),
        extra,
    )


def _describe_plan(path: Path) -> _Description:
    sidecar = trt_layer().read_sidecar(path)
    if sidecar is None:
        logger.warning(
            "%s has no sidecar: config.pbtxt leaves the tensors to Triton's auto-complete", path.name
        )
        return _Description([], [], None, {}, [])
    profile = sidecar["profiles"][0]
    inputs = [
        _Tensor(
            name,
            np.dtype(info["dtype"]),
            tuple(
                lo if lo == hi else -1
                for lo, hi in zip(profile[name]["min"], profile[name]["max"], strict=True)
            ),
        )
        for name, info in sidecar["inputs"].items()
    ]
    max_batch = min(profile[t.name]["max"][0] for t in inputs)
    return _Description(inputs, [], max_batch, sidecar_metadata(sidecar), [])


def _batchable(desc: _Description) -> bool | None:
    """Whether every known tensor has a dynamic first dimension; None when no tensor is known."""
    tensors = desc.inputs + desc.outputs
    return all(t.shape and t.shape[0] == -1 for t in tensors) if tensors else None


def _max_batch_size(desc: _Description, requested: int | None, path: Path) -> int:
    batchable = _batchable(desc)
    if requested is None:
        return (desc.max_batch or DEFAULT_MAX_BATCH) if batchable else 0
    if requested < 0:
        raise ExportError(f"max_batch_size {requested} must be 0 (no batching) or positive")
    if requested > 0 and batchable is False:
        raise ExportError(f"max_batch_size {requested}: {path.name} has a fixed batch dimension; use 0")
    if requested > 0 and desc.max_batch is not None and requested > desc.max_batch:
        raise ExportError(
            f"max_batch_size {requested} exceeds the engine profile's largest batch {desc.max_batch}"
        )
    return requested


def _quote(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def _tensor_block(t: _Tensor, batched: bool, label_file: str | None) -> list[str]:
    if t.dtype not in TYPES:
        raise ExportError(f"tensor {t.name!r} has dtype {t.dtype}, which Triton has no type for")
    dims = t.shape[1:] if batched else t.shape
    lines = [
        "  {",
        f"    name: {_quote(t.name)}",
        f"    data_type: {TYPES[t.dtype]}",
        f"    dims: [ {', '.join(map(str, dims))} ]",
    ]
    if label_file:
        lines.append(f"    label_filename: {_quote(label_file)}")
    return [*lines, "  }"]


def _labels(desc: _Description, batched: bool) -> list[str] | None:
    """Class names for the single output of shape (classes,) per sample, if the metadata has them."""
    names = desc.metadata.get("class_names")
    if not isinstance(names, list) or len(desc.outputs) != 1:
        return None
    dims = desc.outputs[0].shape[1:] if batched else desc.outputs[0].shape
    return (
        [str(n) for n in names] if list(dims)[-1:] == [len(names)] and np.prod(dims) == len(names) else None
    )


def render_config(
    name: str,
    platform: str,
    desc: _Description,
    max_batch_size: int,
    dynamic_batching: bool,
    instance_count: int,
    label_file: str | None,
) -> str:
    """config.pbtxt text (protobuf text format of Triton's ``ModelConfig``)."""
    batched = max_batch_size > 0
    lines = [f"name: {_quote(name)}", f"platform: {_quote(platform)}", f"max_batch_size: {max_batch_size}"]
    for key, tensors in (("input", desc.inputs), ("output", desc.outputs)):
        if tensors:
            blocks = [_tensor_block(t, batched, label_file if key == "output" else None) for t in tensors]
            lines += [f"{key} [", ",\n".join("\n".join(b) for b in blocks), "]"]
    if dynamic_batching and batched:
        lines.append("dynamic_batching { }")
    kind = "\n    kind: KIND_GPU" if platform == PLATFORMS[".plan"] else ""
    lines += ["instance_group [", "  {", f"    count: {instance_count}{kind}", "  }", "]"]
    return "\n".join(lines) + "\n"


@functools.cache
def model_config_schema() -> ModuleType | None:
    """tritonclient's ``model_config_pb2`` (Triton's ModelConfig schema), or None without tritonclient.

    ``tritonclient.grpc`` imports grpcio on import; the schema module itself needs only protobuf,
    so it is loaded from its file when the gRPC extra is absent.
    """
    loaded = sys.modules.get("tritonclient.grpc.model_config_pb2")
    if loaded is not None:
        return loaded
    spec = importlib.util.find_spec("tritonclient")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(next(iter(spec.submodule_search_locations))) / "grpc" / "model_config_pb2.py"
    module_spec = importlib.util.spec_from_file_location("scconv_deploy._triton_model_config_pb2", path)
    if module_spec is None or module_spec.loader is None or not path.is_file():
        return None
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    return module


def parse_config(text: str) -> Any:
    """``text`` parsed into Triton's ``ModelConfig`` message; ``ExportError`` if it does not parse."""
    from google.protobuf import text_format

    schema = model_config_schema()
    if schema is None:
        raise DependencyError("checking config.pbtxt needs tritonclient: pip install 'scconv-deploy[triton]'")
    try:
        return text_format.Parse(text, schema.ModelConfig())
    except text_format.ParseError as err:
        raise ExportError(f"config.pbtxt does not parse with Triton's model-config schema: {err}") from err


def _clear(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


def write_triton_repository(
    model_path: str | Path,
    directory: str | Path,
    name: str | None = None,
    max_batch_size: int | None = None,
    dynamic_batching: bool = True,
    instance_count: int = 1,
    overwrite: bool = False,
) -> TritonRepository:
    """Write ``directory/<name>/`` for Triton: config.pbtxt, ``1/model.onnx|plan`` (+ labels.txt).

    ``name`` defaults to the model file's stem; ``max_batch_size`` to the engine profile's largest
    batch (TensorRT), 8 (dynamic-batch ONNX) or 0 (a fixed batch; an engine without sidecar, whose
    batch size Triton's auto-complete then reads from the engine). An existing ``directory/<name>``
    is refused unless ``overwrite``; then it is replaced as a whole, after the new one is complete.
    """
    source = Path(model_path)
    suffix = source.suffix.lower()
    if suffix not in PLATFORMS:
        raise ExportError(f"{source}: Triton repositories take .onnx or .plan models, not {source.suffix!r}")
    if not source.is_file():
        raise ExportError(f"{source}: no such file")
    name = name or source.stem
    if name in {"", ".", ".."} or "/" in name or "\\" in name:
        raise ExportError(f"model name {name!r} is not a directory name")
    if instance_count < 1:
        raise ExportError(f"instance_count {instance_count} must be at least 1")
    root = Path(directory)
    target = root / name
    if target.exists() or target.is_symlink():
        if not target.is_dir():
            raise ExportError(f"{target} exists and is not a directory")
        if not overwrite:
            raise ExportError(f"{target} already exists: pass overwrite=True (--overwrite) to replace it")
    desc = _describe_onnx(source) if suffix == ".onnx" else _describe_plan(source)
    batch = _max_batch_size(desc, max_batch_size, source)
    labels = _labels(desc, batch > 0)
    config = render_config(
        name,
        PLATFORMS[suffix],
        desc,
        batch,
        dynamic_batching,
        instance_count,
        "labels.txt" if labels else None,
    )
    schema_checked = model_config_schema() is not None
    if schema_checked:
        parse_config(config)
    else:
        logger.warning("tritonclient is not installed: config.pbtxt is written unchecked")

    root.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{name}.", suffix=".tmp", dir=root))
    backup = None
    try:
        staging.chmod(0o755)  # mkdtemp's 0700 would hide the model from a server running as another user
        (staging / "config.pbtxt").write_text(config)
        (staging / "1").mkdir()
        shutil.copyfile(source, staging / "1" / FILENAMES[suffix])
        for rel in desc.extra_files:
            if Path(rel).is_absolute() or ".." in Path(rel).parts:
                raise ExportError(
                    f"{source.name}: external data location {rel!r} is outside the model's folder"
                )
            (staging / "1" / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(source.parent / rel, staging / "1" / rel)
        if labels:
            (staging / "labels.txt").write_text("\n".join(labels) + "\n")
        if target.exists():
            backup = Path(tempfile.mkdtemp(prefix=f".{name}.", suffix=".old", dir=root))
            os.replace(target, backup / name)
        os.replace(staging, target)
    except BaseException as err:
        _clear(staging)
        if backup is not None and (backup / name).exists() and not target.exists():
            os.replace(backup / name, target)
        if backup is not None:
            _clear(backup)
        if isinstance(err, OSError):
            raise ExportError(f"cannot write {target}: {err}") from err
        raise
    if backup is not None:
        _clear(backup)
    logger.info("wrote %s (%s, max_batch_size %d)", target, PLATFORMS[suffix], batch)
    return TritonRepository(
        target, target / "config.pbtxt", target / "1" / FILENAMES[suffix], config, schema_checked
    )
