"""ONNX metadata in the keys and encoding Ultralytics' ``AutoBackend`` reads.

``YOLO("model.onnx")`` learns what it runs from the file's ``metadata_props``: ``task`` (which
predictor and post-processing), ``names`` (class names), ``stride``, ``imgsz``, ``batch``,
``channels``, ``kpt_shape`` (pose), ``end2end`` and ``args`` (its ``dynamic`` and ``nms``).
``AutoBackend`` converts ``stride``, ``batch`` and ``channels`` with ``int()`` and reads
``imgsz``, ``names``, ``kpt_shape``, ``args`` and ``end2end`` with ``ast.literal_eval``: the values
here are those Python literals, already strings, to be written as they are (not JSON-encoded:
JSON's ``false`` is no Python literal). Without them it falls back to 999 dummy class names,
stride 32 and a task guessed from the file name.

How ``args.dynamic`` is set follows what the predictor does with it: with ``dynamic`` true it
letterboxes images to any stride multiple and feeds whole batches, which needs a graph whose
batch, height and width are all dynamic; otherwise it letterboxes to ``imgsz`` and feeds the
graph ``batch`` images at a time (padding the last call), which a batch-only dynamic graph takes.
"""

from __future__ import annotations

from collections.abc import Sequence

from ..errors import ExportError
from .recognise import YoloInfo

DYNAMIC_MODES = ("none", "batch", "batch+hw")


def onnx_metadata(info: YoloInfo, *, input_shape: Sequence[int], dynamic: str) -> dict[str, str]:
    """``metadata_props`` entries (key -> final string) for an ONNX export of the network ``info`` describes.

    ``input_shape`` is the export's (N, C, H, W) and ``dynamic`` its dynamic axes, as in
    ``export_onnx`` ("none", "batch" or "batch+hw").
    """
    if dynamic not in DYNAMIC_MODES:
        raise ExportError(f"dynamic={dynamic!r} is unknown: use one of {', '.join(DYNAMIC_MODES)}")
    if len(input_shape) != 4:
        raise ExportError(f"input shape {list(input_shape)} is not N,C,H,W: pass the export's input shape")
    n, c, h, w = (int(d) for d in input_shape)
    whole_batches = dynamic == "batch+hw"
    batch = n if dynamic == "none" else 1
    entries = {
        "description": f"{info.head} {info.task} network with SCConv, exported by scconv-deploy",
        "task": info.task,
        "stride": str(info.stride),
        "batch": str(batch),
        "imgsz": repr([h, w]),
        "channels": str(c),
        "names": repr(dict(sorted(info.names.items()))),
        "end2end": repr(info.end2end),
        "head": info.head,
        "args": repr({"batch": batch, "imgsz": [h, w], "dynamic": whole_batches, "nms": False}),
    }
    if info.kpt_shape is not None:
        entries["kpt_shape"] = repr(list(info.kpt_shape))
    return entries
