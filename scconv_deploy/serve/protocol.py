"""KServe v2 / Triton inference protocol: request parsing and response encoding (no HTTP framework).

JSON tensors (``data``, flat row-major or nested) and the binary tensor data extension: a body
that starts with ``Inference-Header-Content-Length`` bytes of JSON, followed by the raw
little-endian tensors named by ``parameters.binary_data_size``, in input order. Outputs are
returned as binary when the output asks for it (``parameters.binary_data``) or the request
does (``parameters.binary_data_output``); tritonclient asks for binary by default.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..runtime import InputError

HEADER_LENGTH = "Inference-Header-Content-Length"

DATATYPES: dict[str, np.dtype] = {
    name: np.dtype(code).newbyteorder("<")
    for name, code in {
        "BOOL": "?",
        "UINT8": "u1",
        "UINT16": "u2",
        "UINT32": "u4",
        "UINT64": "u8",
        "INT8": "i1",
        "INT16": "i2",
        "INT32": "i4",
        "INT64": "i8",
        "FP16": "f2",
        "FP32": "f4",
        "FP64": "f8",
    }.items()
}
_NAMES = {dtype: name for name, dtype in DATATYPES.items()}


class RequestError(InputError):
    """A request the server refuses; ``status`` is the HTTP status (400 bad request, 404 not found)."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


def datatype(dtype: np.dtype) -> str:
    """The protocol's name for a numpy dtype, e.g. ``"FP32"`` (``KeyError`` for one it lacks)."""
    return _NAMES[np.dtype(dtype).newbyteorder("<")]


@dataclass(frozen=True)
class InferRequest:
    id: str | None
    inputs: dict[str, np.ndarray]
    outputs: dict[str, bool] | None  # requested output → binary; None: all outputs
    binary_outputs: bool  # the request-level default for outputs


def _field(obj: Mapping[str, Any], key: str, kind: type, where: str) -> Any:
    value = obj.get(key)
    if not isinstance(value, kind):
        raise RequestError(f"{where}: '{key}' is missing or not a {kind.__name__}")
    return value


def _parameters(obj: Mapping[str, Any], where: str) -> dict[str, Any]:
    params = obj.get("parameters", {})
    if not isinstance(params, dict):
        raise RequestError(f"{where}: 'parameters' must be an object")
    return params


def _tensor(spec: Mapping[str, Any], binary: memoryview, offset: int) -> tuple[str, np.ndarray, int]:
    """One input: (name, array, offset past its binary data)."""
    if not isinstance(spec, dict):
        raise RequestError("each entry of 'inputs' must be an object")
    name = _field(spec, "name", str, "input")
    where = f"input {name!r}"
    shape = _field(spec, "shape", list, where)
    if not all(isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape):
        raise RequestError(f"{where}: shape {shape} must be a list of non-negative integers")
    kind = _field(spec, "datatype", str, where)
    if kind not in DATATYPES:
        raise RequestError(f"{where}: datatype {kind!r} is not supported; use one of {', '.join(DATATYPES)}")
    dtype, count = DATATYPES[kind], math.prod(shape)
    size = _parameters(spec, where).get("binary_data_size")
    if size is not None:
        if not isinstance(size, int) or isinstance(size, bool) or size != count * dtype.itemsize:
            raise RequestError(
                f"{where}: binary_data_size {size!r} != {count} × {dtype.itemsize} bytes of {kind}"
            )
        if offset + size > len(binary):
            raise RequestError(
                f"{where}: the body holds {len(binary) - offset} binary bytes, {size} announced"
            )
        array = np.frombuffer(binary[offset : offset + size], dtype=dtype).reshape(shape)
        return name, array.astype(dtype.newbyteorder("="), copy=False), offset + size
    if "data" not in spec:
        raise RequestError(f"{where}: neither 'data' nor parameters.binary_data_size given")
    try:
        array = np.asarray(spec["data"], dtype=dtype)
    except (TypeError, ValueError) as err:
        raise RequestError(f"{where}: 'data' is not a (nested) list of {kind} values: {err}") from err
    if array.size != count:
        raise RequestError(f"{where}: shape {shape} needs {count} values, 'data' has {array.size}")
    return name, array.reshape(shape).astype(dtype.newbyteorder("="), copy=False), offset


def parse_infer_request(body: bytes, header_length: str | None) -> InferRequest:
    """The JSON (+ binary) body of ``POST .../infer`` → arrays; ``RequestError`` (400) on anything amiss."""
    split = len(body)
    if header_length is not None:
        try:
            split = int(header_length)
        except ValueError:
            split = -1
        if not 0 <= split <= len(body):
            raise RequestError(f"{HEADER_LENGTH} {header_length!r} is not a length within the body")
    try:
        request = json.loads(bytes(body[:split]))
    except (UnicodeDecodeError, ValueError) as err:
        raise RequestError(f"request body is not valid JSON: {err}") from err
    if not isinstance(request, dict):
        raise RequestError("request body must be a JSON object")
    specs = _field(request, "inputs", list, "request")
    if not specs:
        raise RequestError("request: 'inputs' is empty")
    binary, offset, inputs = memoryview(body)[split:], 0, {}
    for spec in specs:
        name, array, offset = _tensor(spec, binary, offset)
        if name in inputs:
            raise RequestError(f"input {name!r} is given twice")
        inputs[name] = array
    if offset != len(binary):
        raise RequestError(f"{len(binary) - offset} bytes of binary data after the last input")
    binary_default = bool(_parameters(request, "request").get("binary_data_output", False))
    outputs = None
    if "outputs" in request:
        outputs = {}
        for out in _field(request, "outputs", list, "request"):
            if not isinstance(out, dict):
                raise RequestError("each entry of 'outputs' must be an object")
            name = _field(out, "name", str, "output")
            params = _parameters(out, f"output {name!r}")
            if params.get("classification"):
                raise RequestError(f"output {name!r}: the classification extension is not supported")
            outputs[name] = bool(params.get("binary_data", binary_default))
    request_id = request.get("id")
    return InferRequest(None if request_id is None else str(request_id), inputs, outputs, binary_default)


def encode_infer_response(
    model: str, version: str, request: InferRequest, outputs: Mapping[str, np.ndarray]
) -> tuple[bytes, dict[str, str]]:
    """(body, headers) of the response: JSON, with binary tensors appended where asked for."""
    wanted = (
        request.outputs if request.outputs is not None else dict.fromkeys(outputs, request.binary_outputs)
    )
    entries, blobs = [], []
    for name, binary in wanted.items():
        array = outputs[name]
        entry: dict[str, Any] = {"name": name, "datatype": datatype(array.dtype), "shape": list(array.shape)}
        if binary:
            blob = np.ascontiguousarray(array, dtype=array.dtype.newbyteorder("<")).tobytes()
            entry["parameters"] = {"binary_data_size": len(blob)}
            blobs.append(blob)
        else:
            entry["data"] = array.ravel().tolist()
        entries.append(entry)
    response: dict[str, Any] = {"model_name": model, "model_version": version, "outputs": entries}
    if request.id is not None:
        response["id"] = request.id
    header = json.dumps(response, separators=(",", ":")).encode()
    if not blobs:
        return header, {"content-type": "application/json"}
    return header + b"".join(blobs), {
        "content-type": "application/octet-stream",
        HEADER_LENGTH: str(len(header)),
    }
