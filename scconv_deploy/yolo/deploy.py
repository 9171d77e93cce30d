"""The deployment form of an Ultralytics network: what Ultralytics' own ONNX exporter traces.

In eval mode a detection head returns ``(predictions, raw outputs dict)``; the exporter puts it in
export mode first (``export = True``, ``format = "onnx"``, ``dynamic``), and the head then returns
the decoded predictions alone — ``(N, 4 + classes, anchors)`` for detection, ``(N, 4 + classes +
32, anchors)`` with the mask prototypes for segmentation, ``(N, 4 + classes + keypoints,
anchors)`` for pose, ``(N, 4 + classes + 1, anchors)`` for oriented boxes, ``(N, classes)``
probabilities for classification. ``deployment_form`` returns a copy of the network set up the
same way, found by structure: the flags are set on the last layer (the head), Conv + BatchNorm
are fused by the network's own ``fuse`` method, and C2f-style blocks use their ``forward_split``.

``dynamic``: a head with ``dynamic = False`` caches its anchors under the full input shape,
batch included, and compares that shape on every call; traced by ``torch.export`` after a run at
batch 2, that comparison specialises the batch to 2, and the legacy exporter bakes the anchors
of the traced H×W into the graph. A graph with any dynamic dimension needs ``dynamic=True``.
"""

from __future__ import annotations

import copy
import logging

from torch import nn

from .recognise import head_of, task_of

logger = logging.getLogger(__name__)


def deployment_form(model: nn.Module, *, dynamic: bool = True, fuse: bool = True) -> nn.Module:
    """A copy of ``model`` (an Ultralytics network) in eval mode whose head returns its export output.

    ``model`` is left untouched. ``dynamic`` keeps the head's anchors shape-generic (needed for
    a dynamic batch, height or width); ``fuse`` folds BatchNorm into the convolutions as
    Ultralytics' exporter does.
    """
    head = head_of(model)
    task = task_of(head)
    deployed = copy.deepcopy(model).eval()
    for p in deployed.parameters():
        p.requires_grad_(False)
    if fuse:
        deployed = _fused(deployed)
    _use_forward_split(deployed)
    _set_export_mode(head_of(deployed), dynamic)
    logger.info("deployment form of a %s %s network (dynamic=%s)", task, type(head).__name__, dynamic)
    return deployed


def _fused(model: nn.Module) -> nn.Module:
    """The network's own ``fuse`` (Conv + BatchNorm folding), when it has one."""
    fuse = getattr(model, "fuse", None)
    if not callable(fuse):
        return model
    fused = fuse(verbose=False)
    return fused if isinstance(fused, nn.Module) else model


def _use_forward_split(model: nn.Module) -> None:
    """C2f-style blocks: the ``split`` form of their forward, as the ONNX exporter traces them."""
    for module in model.modules():
        if callable(getattr(module, "forward_split", None)):
            module.forward = module.forward_split


def _set_export_mode(head: nn.Module, dynamic: bool) -> None:
    """The flags Ultralytics' exporter sets on a head for format='onnx'."""
    head.export = True
    head.format = "onnx"
    if hasattr(head, "dynamic"):  # detection family: anchors and grid
        head.dynamic = dynamic
        head.shape = None  # forget anchors cached for another input shape
