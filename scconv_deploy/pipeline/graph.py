"""PyTorch → ONNX: the debug graph, the shipped graph, and proof that the requested axes stayed dynamic.

The network is exported once, wrapped in ``GateTap``: its outputs, then every SRU's gate values
and masks as extra outputs, which gives those tensors stable names (``gate:<block>``,
``mask:<block>``). The shipped graph is the same graph without the extra outputs; the names stay
in its metadata so that verification can expose the masks again or feed them in.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import warnings
from typing import Any

import numpy as np
import onnx
import torch
from torch import nn

from ..errors import ExportError
from ..ort_cpu import OrtFailure, cpu_session, run_batched

logger = logging.getLogger(__name__)

DYNAMIC = ("none", "batch", "batch+hw")
EXPORTERS = ("dynamo", "legacy")
INPUT_NAME = "input"
AXIS_NAMES = {0: "batch", 2: "height", 3: "width"}


def dynamic_axes(dynamic: str) -> dict[int, str]:
    """Input axis → name for a ``dynamic`` mode ("none", "batch", "batch+hw")."""
    if dynamic == "none":
        return {}
    return {0: "batch"} if dynamic == "batch" else dict(AXIS_NAMES)


@contextlib.contextmanager
def quiet():
    """torch.onnx prints progress to stdout and warns about itself: keep that out of our output."""
    noisy = logging.getLogger("torch.onnx._internal.exporter._registration")  # "torchvision is not installed"
    level = noisy.level
    noisy.setLevel(logging.ERROR)
    try:
        with (
            warnings.catch_warnings(),
            contextlib.redirect_stdout(io.StringIO()),
            contextlib.redirect_stderr(io.StringIO()),
        ):
            warnings.simplefilter("ignore")
            yield
    finally:
        noisy.setLevel(level)


def root_cause(err: BaseException) -> str:
    """``Type: first line`` of the innermost cause of an exception chain (the exporter's real reason)."""
    inner = err
    seen = {id(err)}
    while (nxt := inner.__cause__ or inner.__context__) is not None and id(nxt) not in seen:
        seen.add(id(nxt))
        inner = nxt
    lines = [line.strip() for line in str(inner).splitlines() if line.strip()]
    first = lines[0] if lines else ""
    return f"{type(inner).__name__}: {first}" if first else type(inner).__name__


def torch_export(
    module: nn.Module, example: torch.Tensor, names: list[str], exporter: str, dynamic: str, opset: int
) -> onnx.ModelProto:
    """``module`` on ``example`` to an ONNX model with the given output names and dynamic axes."""
    axes = dynamic_axes(dynamic)
    try:
        with quiet():
            if exporter == "dynamo":
                from torch.export import Dim

                program = torch.onnx.export(
                    module,
                    (example,),
                    dynamo=True,
                    dynamic_shapes=({i: Dim(name) for i, name in axes.items()},),
                    input_names=[INPUT_NAME],
                    output_names=names,
                    opset_version=opset,
                    external_data=False,
                    verbose=False,
                )
                return program.model_proto
            buf = io.BytesIO()
            torch.onnx.export(
                module,
                (example,),
                buf,
                dynamo=False,
                input_names=[INPUT_NAME],
                output_names=names,
                opset_version=opset,
                dynamic_axes=({INPUT_NAME: axes, **{n: {0: "batch"} for n in names}} if axes else None),
                do_constant_folding=True,
            )
            return onnx.load_from_string(buf.getvalue())
    except Exception as err:
        other = "legacy" if exporter == "dynamo" else "dynamo"
        raise ExportError(
            f"torch.onnx.export ({exporter}) failed: {root_cause(err)}; try --exporter {other}"
        ) from err


def simplify(model: onnx.ModelProto) -> onnx.ModelProto:
    """onnxslim: constant folding, dead-node and shape-op cleanup; keeps every graph output."""
    import onnxslim

    with quiet():
        return onnxslim.slim(model)


def annotate_shapes(model: onnx.ModelProto) -> onnx.ModelProto:
    """Every tensor's shape, symbolically (N, H, W stay dynamic), from ONNX Runtime's shape inference.

    With the shapes known, ONNX Runtime proves that residual ``Add``s join equal shapes and fuses
    them with their ``Relu``; on SCConv-ResNet-50 this cut CPU latency by ~7 % (benchmarks/latency.py,
    "deploy+shapes"). A graph the inference cannot handle is returned unchanged.
    """
    from onnxruntime.tools.symbolic_shape_infer import SymbolicShapeInference

    try:
        with quiet():
            return SymbolicShapeInference.infer_shapes(model, auto_merge=True)
    except Exception as err:
        logger.info("symbolic shape inference skipped: %s", root_cause(err))
        return model


def simplify_and_annotate(model: onnx.ModelProto) -> onnx.ModelProto:
    """The ``simplify`` stage of ``scconv-export``: onnxslim, then symbolic shapes (``annotate_shapes``)."""
    return annotate_shapes(simplify(model))


def shipped_graph(debug: onnx.ModelProto, outputs: int) -> onnx.ModelProto:
    """The debug graph minus its gate and mask outputs (the tensors still feed the network)."""
    model = onnx.ModelProto()
    model.CopyFrom(debug)
    del model.graph.output[outputs:]
    return model


def set_metadata(model: onnx.ModelProto, entries: dict[str, Any]) -> None:
    """Replace ``model``'s metadata with ``entries`` (strings as they are, other values as JSON)."""
    del model.metadata_props[:]
    for key, value in entries.items():
        if value is not None:
            prop = model.metadata_props.add()
            prop.key, prop.value = key, value if isinstance(value, str) else json.dumps(value)


def _dims(value_info: onnx.ValueInfoProto) -> list[str | int]:
    return [d.dim_param or d.dim_value for d in value_info.type.tensor_type.shape.dim]


def check_dynamic_axes(model: onnx.ModelProto, dynamic: str, shape: tuple[int, ...], exporter: str) -> None:
    """Prove that every requested dynamic axis stayed dynamic: in the graph's declared shapes, and by
    running the graph at other sizes (a graph can declare a dynamic batch and still hold a
    reshape to the example's). Raises ``ExportError`` naming the axis that was specialised."""
    axes = dynamic_axes(dynamic)
    if not axes:
        return
    fallback = f"--dynamic {'batch' if 2 in axes else 'none'}"
    hint = f"the {exporter} exporter could not keep it dynamic: " + (
        f"try --exporter legacy, or export with {fallback}"
        if exporter == "dynamo"
        else f"export with {fallback}"
    )
    declared = _dims(model.graph.input[0])
    fixed = [AXIS_NAMES[i] for i in axes if isinstance(declared[i], int) and declared[i] > 0]
    if fixed:
        raise ExportError(
            f"the exported graph's input is {declared}: the {', '.join(fixed)} axis was specialised; {hint}"
        )
    for out in model.graph.output:
        first = _dims(out)[:1]
        if first and isinstance(first[0], int) and first[0] > 0:
            raise ExportError(
                f"the batch axis was specialised: output {out.name} has a fixed batch of {first[0]}; {hint}"
            )
    _run_at_other_sizes(model, axes, shape, hint)


def _run_at_other_sizes(
    model: onnx.ModelProto, axes: dict[int, str], shape: tuple[int, ...], hint: str
) -> None:
    _, c, h, w = shape
    sizes = [(1, c, h, w), (3, c, h, w)]
    if 2 in axes:
        sizes.append((1, c, h + 32, w + 32))
    try:
        session = cpu_session(model, what="the exported graph")
    except OrtFailure as err:
        raise ExportError(f"the exported graph does not load in ONNX Runtime: {err}") from err
    rng = np.random.default_rng(0)
    for size in sizes:
        x = rng.standard_normal(size, dtype=np.float32)
        try:
            outputs = run_batched(session, x, INPUT_NAME, chunk=size[0], what="the exported graph")
        except OrtFailure as err:
            raise ExportError(f"the exported graph fails on input {list(size)} ({err}); {hint}") from err
        wrong = [o.shape for o in outputs if o.shape[:1] != (size[0],)]
        if wrong:
            raise ExportError(
                f"on input {list(size)} the exported graph returned shapes {wrong}: the batch was "
                f"specialised; {hint}"
            )
