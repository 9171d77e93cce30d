"""INT8 ONNX with explicit Q/DQ nodes, calibrated on real inputs, gate path left unquantized.

ONNX Runtime's ``quantize_static`` (QDQ format) is used rather than NVIDIA ModelOpt's ONNX PTQ:
it is already a dependency, runs on the CPU here, and writes the explicit, symmetric
QuantizeLinear/DequantizeLinear pairs that TensorRT 10/11 build as strongly typed INT8
(activations and weights symmetric, weights per channel). Only convolutions and matrix products
are quantized; the gate path and the CRU softmax (``gate_path``) stay FP32, and so may the
network's output layers (``output_layers``: a detector's class-logit and box-distribution
convolutions, whose INT8 rounding moves scores across a sigmoid and boxes across a softmax).

Calibration is cached: the quantized model is stored under a key made of the FP32 model, the
calibration data and the options, and reused while none of them changes.
"""

from __future__ import annotations

import hashlib
import logging
import tempfile
from pathlib import Path

import numpy as np
import onnx

from .gate_path import ensure_node_names, gate_path

logger = logging.getLogger(__name__)

QUANTIZED_OPS = ["Conv", "Gemm", "MatMul"]
TARGETS = ("trt", "ort-cpu")


def _fixed_batch(model: onnx.ModelProto) -> int | None:
    dims = model.graph.input[0].type.tensor_type.shape.dim
    return dims[0].dim_value if dims and dims[0].HasField("dim_value") and dims[0].dim_value > 0 else None


def _chunks(inputs: np.ndarray, batch: int, fixed: int | None) -> list[np.ndarray]:
    """Calibration batches, all of one size: the model's fixed batch, else ``batch`` (at most the
    inputs there are). The last chunk is filled up with the first inputs again, not with zeros
    that would skew the ranges; equal sizes also keep ONNX Runtime's histogram calibrators
    (percentile, entropy), which stack the batches, from failing on a short last one."""
    size = fixed if fixed is not None else min(batch, len(inputs))
    chunks = [inputs[i : i + size] for i in range(0, len(inputs), size)]  # views, no copy
    short = size - len(chunks[-1])
    if short:  # the inputs again from the first, cyclically (np.resize), as many as the last one lacks
        chunks[-1] = np.concatenate([chunks[-1], np.resize(inputs, (short, *inputs.shape[1:]))])
    return chunks


def _reader(chunks: list[np.ndarray], name: str, progress):
    from onnxruntime.quantization import CalibrationDataReader

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self._chunks = iter(chunks)

        def get_next(self) -> dict[str, np.ndarray] | None:
            chunk = next(self._chunks, None)
            if chunk is not None and progress is not None:
                progress(len(chunk))
            return None if chunk is None else {name: chunk}

    return Reader()


def cache_key(
    model: onnx.ModelProto, inputs: np.ndarray, method: str, target: str = "trt", float_layers=()
) -> str:
    h = hashlib.sha256()
    h.update(model.SerializeToString())
    h.update(np.ascontiguousarray(inputs).tobytes())
    h.update(f"{inputs.shape}|{method}|{QUANTIZED_OPS}|{target}|{sorted(float_layers)}".encode())
    return h.hexdigest()[:24]


def output_layers(model: onnx.ModelProto) -> list[str]:
    """The network's last layers: the quantizable nodes (``QUANTIZED_OPS``) whose results reach a graph
    output through no other quantizable node — a classifier's final ``Gemm``, a YOLO head's class-logit
    convolutions and its box-distribution (DFL) convolution. Named as ``to_int8`` names nodes."""
    work = onnx.ModelProto()
    work.CopyFrom(model)
    ensure_node_names(work)
    producer = {o: n for n in work.graph.node for o in n.output}
    found, seen = [], set()
    todo = [o.name for o in work.graph.output]
    while todo:
        node = producer.get(todo.pop())
        if node is None or node.name in seen:
            continue
        seen.add(node.name)
        if node.op_type in QUANTIZED_OPS:
            found.append(node.name)
        else:
            todo.extend(i for i in node.input if i)
    order = {n.name: i for i, n in enumerate(work.graph.node)}
    return sorted(found, key=order.__getitem__)


def to_int8(
    model: onnx.ModelProto,
    calib_inputs: np.ndarray,
    *,
    method: str = "minmax",
    target: str = "trt",
    cache_dir: str | Path | None = None,
    batch: int = 16,
    progress=None,
    float_layers: list[str] | tuple[str, ...] = (),
) -> onnx.ModelProto:
    """Quantize ``model`` (FP32, exported by scconv-export) to explicit Q/DQ INT8 on ``calib_inputs``.

    ``target="trt"``: full 8-bit weights, what TensorRT builds from. ``target="ort-cpu"``: 7-bit
    weights (``reduce_range``), so that ONNX Runtime's u8s8 integer kernels cannot saturate on x86
    CPUs without VNNI (AVX2 only), where the full 8-bit file loses accuracy. ``progress`` gets the
    number of inputs fed per calibration batch. ``float_layers`` (node names, e.g. ``output_layers``)
    stay FP32 beside the gate path.
    """
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

    methods = {
        "minmax": CalibrationMethod.MinMax,
        "percentile": CalibrationMethod.Percentile,
        "entropy": CalibrationMethod.Entropy,
    }
    if method not in methods:
        raise ValueError(f"calibration method {method!r} is unknown: use one of {', '.join(methods)}")
    if target not in TARGETS:
        raise ValueError(f"INT8 target {target!r} is unknown: use one of {', '.join(TARGETS)}")
    key = cache_key(model, calib_inputs, method, target, float_layers)
    cached = Path(cache_dir) / f"int8-{key}.onnx" if cache_dir is not None else None
    if cached is not None and cached.exists():
        logger.info("INT8: reusing calibration cache %s", cached)
        return onnx.load(cached)
    work = onnx.ModelProto()
    work.CopyFrom(model)
    keep = sorted(set(gate_path(work).nodes) | set(float_layers))
    name = work.graph.input[0].name
    with tempfile.TemporaryDirectory() as tmp:
        src, dst = Path(tmp) / "fp32.onnx", Path(tmp) / "int8.onnx"
        onnx.save(work, src)
        logger.info("INT8: calibrating on %d inputs (%s)", len(calib_inputs), method)
        root = logging.getLogger()  # the quantizer logs a generic pre-processing hint on the root logger
        level = root.level
        root.setLevel(logging.ERROR)
        try:
            quantize_static(
                str(src),
                str(dst),
                _reader(_chunks(calib_inputs, batch, _fixed_batch(work)), name, progress),
                quant_format=QuantFormat.QDQ,
                activation_type=QuantType.QInt8,
                weight_type=QuantType.QInt8,
                per_channel=True,
                reduce_range=target == "ort-cpu",
                op_types_to_quantize=QUANTIZED_OPS,
                nodes_to_exclude=keep,
                calibrate_method=methods[method],
                extra_options={
                    "ActivationSymmetric": True,
                    "WeightSymmetric": True,
                    # Q/DQ only on the edges into quantized ops: a tensor the gate path also reads
                    # (a conv output pooled for the CRU softmax) stays FP32 on that edge.
                    "OpTypesToExcludeOutputQuantization": QUANTIZED_OPS,
                    "DedicatedQDQPair": True,
                },
            )
        finally:
            root.setLevel(level)
        quantized = onnx.load(dst)
    del quantized.metadata_props[:]
    quantized.metadata_props.extend(model.metadata_props)
    if cached is not None:
        cached.parent.mkdir(parents=True, exist_ok=True)
        onnx.save(quantized, cached)
    return quantized
