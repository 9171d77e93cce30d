"""The network an export works on: the checkpoint's module, its export form, and the tap that names
every gate tensor — with the input shape and output names settled before anything is exported."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from typing import Any

import torch
from torch import nn

from .. import yolo
from ..checkpoint import Checkpoint
from ..convert import DeploySummary, deploy_summary, to_deploy
from ..errors import ExportError, first_line
from ..gates import GATE_PREFIX, MASK_PREFIX
from ..tap import GateTap, flat_outputs
from .graph import dynamic_axes
from .options import ExportOptions, parse_input_shape

logger = logging.getLogger(__name__)


@dataclass
class Network:
    original: nn.Module
    deployed: nn.Module  # every SCConv in export form
    tap: GateTap  # deployed, returning outputs + gate values + masks
    shape: tuple[int, ...]  # N, C, H, W of the export
    example: torch.Tensor  # what the exporter traces with
    output_names: list[str]
    summary: DeploySummary
    metadata: dict[str, Any] = field(default_factory=dict)  # what the checkpoint tells about itself

    @property
    def gate_names(self) -> list[str]:
        return [f"{GATE_PREFIX}{spec.name}" for spec in self.tap.specs]

    @property
    def mask_names(self) -> list[str]:
        return [f"{MASK_PREFIX}{spec.name}" for spec in self.tap.specs]


def input_shape(options: ExportOptions, ckpt: Checkpoint) -> tuple[int, ...]:
    """The export's input shape: ``--input-shape``, else the checkpoint's metadata."""
    if options.input_shape is not None:
        return options.input_shape
    if "input_shape" in ckpt.meta:
        return parse_input_shape(ckpt.meta["input_shape"])
    raise ExportError(f"{ckpt.path} records no input shape: pass --input-shape N,C,H,W")


def example_input(shape: tuple[int, ...], dynamic: str) -> torch.Tensor:
    """What the exporter traces with: torch.export specialises a dynamic dimension of size 1."""
    dims = list(shape)
    if 0 in dynamic_axes(dynamic) and dims[0] == 1:
        dims[0] = 2
    return torch.zeros(dims)


def run_once(model: nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """The network's outputs on ``x`` as a tuple of tensors; a clear error where it does not fit."""
    shape = ",".join(map(str, x.shape))
    try:
        with torch.no_grad():
            out = model(x)
    except Exception as err:  # user networks raise anything; the input shape is the usual cause
        raise ExportError(f"input shape {shape} does not fit the network: {first_line(err)}") from err
    outs = flat_outputs(out)
    kinds = sorted({type(o).__name__ for o in outs if not isinstance(o, torch.Tensor)})
    if kinds:
        raise ExportError(
            f"the network returns {', '.join(kinds)} besides tensors: export needs a tensor or a tuple of "
            f"tensors (wrap the network so that it returns what the deployment uses)"
        )
    return outs


@contextlib.contextmanager
def torch_threads(n: int) -> Iterator[None]:
    """PyTorch's intra-op threads set to ``n`` for a while.

    Conversion probes every SCConv block on a few pixels; on a busy machine each multi-threaded
    operator on so little data waits for a descheduled worker (16 ms per 1×1 convolution on two
    shared cores, 0.02 ms on one thread), which made converting a YOLOv8n take 5 s instead of 0.3 s.
    """
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def default_dynamic(ckpt: Checkpoint) -> str:
    """The dynamic axes of an export that does not name them: a dynamic batch, except for an
    Ultralytics network, which gets its own exporter's default, none (see ``deployment_form``)."""
    return "none" if yolo.is_yolo_model(ckpt.model) else "batch"


#: Ultralytics tasks whose heads end in logits read through a sigmoid or a softmax (scores, box
#: distributions, masks, keypoints): INT8 keeps their output layers FP32 unless told otherwise.
DETECTOR_TASKS = frozenset({"detect", "segment", "pose", "obb"})


def default_int8_outputs(network: Network) -> str:
    """What INT8 does with a network's output layers unless ``--int8-outputs`` says: "float" for a
    detector (its deployment metadata names a detector task), "int8" otherwise."""
    return "float" if network.metadata.get("task") in DETECTOR_TASKS else "int8"


def deployment_form(
    ckpt: Checkpoint, options: ExportOptions, shape: tuple[int, ...]
) -> tuple[nn.Module, dict]:
    """The network as it is deployed, and what the ONNX must tell its runtime about it.

    An Ultralytics YOLO network (recognised by structure) gets its head in export mode — the tensor
    Ultralytics' own exporter writes — and the metadata its ``AutoBackend`` reads; any other network
    is deployed as it is. Ultralytics' ONNX backend takes a graph with a dynamic batch for one
    whose height and width are dynamic too, and letterboxes a single image to the nearest stride
    multiple: with ``--dynamic batch`` alone, ``YOLO("model.onnx")`` fails on it (a warning says so).
    """
    model = ckpt.model.eval()
    if not yolo.is_yolo_model(model):
        return model, {}
    if options.dynamic == "batch":
        logger.warning(
            "--dynamic batch: Ultralytics' predictor takes a dynamic batch for dynamic height and width "
            "too and feeds single images at other sizes; for YOLO('model.onnx') export with --dynamic "
            "none (its exporter's default) or batch+hw"
        )
    info = yolo.describe(model)
    recorded = ckpt.meta.get("ultralytics") or {}
    if recorded.get("names"):  # what the checkpoint recorded wins over the network's defaults
        info = replace(info, names={int(k): v for k, v in recorded["names"].items()})
    deployed = yolo.deployment_form(model, dynamic=options.dynamic != "none")
    return deployed, yolo.onnx_metadata(info, input_shape=shape, dynamic=options.dynamic)


def prepare_network(ckpt: Checkpoint, options: ExportOptions) -> Network:
    """The checkpoint's network in deployment and export form, run once on the example input."""
    shape = input_shape(options, ckpt)
    model, metadata = deployment_form(ckpt, options, shape)
    example = example_input(shape, options.dynamic)
    n_out = len(run_once(model, example[:1]))  # one sample tells the outputs
    with torch_threads(1):
        deployed = to_deploy(model, gates=options.gates)
    names = ["output"] if n_out == 1 else [f"output_{i}" for i in range(n_out)]
    tap = GateTap(deployed, masks=True).eval()
    return Network(model, deployed, tap, shape, example, names, deploy_summary(deployed), metadata)
