"""Make PyPI's torchvision importable beside a CPU-only torch (test environment only).

PyPI's ``torchvision==0.28.0`` wheel is built against CUDA torch: its compiled operators
(``torchvision/_C.so``) link ``libtorch_cuda.so``, which torch's CPU build does not ship, so they
do not load — and then ``import torchvision`` itself fails ("operator torchvision::nms does not
exist": it registers fake kernels for ``nms``/``qnms`` whether or not its library loaded). Building,
running and exporting an Ultralytics model never import torchvision; ``YOLO(...).predict`` does
(for NMS). ``ensure_importable`` defines the two operators' schemas so that the import succeeds,
and gives ``torchvision.ops.nms`` a plain PyTorch implementation. Where torchvision's library
loads (a CPU build from download.pytorch.org, or CUDA torch) it changes nothing.
"""

from __future__ import annotations

import sys

import torch

_SCHEMAS = {
    "nms": "nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor",
    "qnms": "qnms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor",
}
_library = None  # keeps the operator definitions alive


def ensure_importable() -> None:
    try:
        import torchvision
    except RuntimeError as err:
        if "torchvision::" not in str(err):
            raise
        _define_operators()
        for name in [n for n in sys.modules if n == "torchvision" or n.startswith("torchvision.")]:
            del sys.modules[name]
        import torchvision.ops

        torchvision.ops.nms = torchvision.ops.boxes.nms = _nms


def _define_operators() -> None:
    global _library
    _library = torch.library.Library("torchvision", "DEF")
    for schema in _SCHEMAS.values():
        _library.define(schema)


def _nms(boxes: torch.Tensor, scores: torch.Tensor, iou_threshold: float) -> torch.Tensor:
    """Greedy non-maximum suppression, as torchvision's: indices of kept boxes, by falling score."""
    from torchvision.ops import box_iou

    order = scores.argsort(descending=True)
    keep = []
    while order.numel():
        best, order = order[0], order[1:]
        keep.append(best)
        order = order[box_iou(boxes[best].unsqueeze(0), boxes[order])[0] <= iou_threshold]
    return torch.stack(keep) if keep else torch.empty(0, dtype=torch.long)
