"""Recognise Ultralytics YOLO networks and training checkpoints by their structure.

Ultralytics is AGPL-3.0 and never imported here: a network is an Ultralytics model when it has
what its yaml builder gives every model — a ``yaml`` dict and a ``model`` ``nn.Sequential`` whose
layers carry the routing attributes ``f`` (from) and ``i`` (index) — and a training checkpoint
is a dict holding such a network under ``ema`` or ``model`` beside its ``train_args``. The task
follows from the head's own attributes (``kpt_shape`` pose, ``proto`` segment, ``ne`` oriented
boxes, ``reg_max`` detection, ``linear`` classification).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from torch import nn

from ..errors import CheckpointError, ExportError

logger = logging.getLogger(__name__)

TASKS = ("detect", "segment", "pose", "obb", "classify")
DEFAULT_IMGSZ = 640  # Ultralytics' default training and export size


@dataclass(frozen=True)
class YoloInfo:
    """What an Ultralytics network (and its checkpoint) says about itself."""

    task: str  # one of TASKS
    names: dict[int, str]  # class index -> name
    stride: int  # the largest stride of the head
    imgsz: tuple[int, int]  # (H, W) it was trained at; DEFAULT_IMGSZ when nothing records it
    channels: int  # input channels
    head: str  # the head's class name, e.g. "Detect"
    kpt_shape: tuple[int, int] | None = None  # pose: (keypoints, values per keypoint)
    end2end: bool = False  # the head selects its detections itself (no NMS after it)
    train_args: dict[str, Any] = field(default_factory=dict, repr=False)  # the run's settings, plain values

    @property
    def input_shape(self) -> tuple[int, int, int, int]:
        return (1, self.channels, *self.imgsz)

    def checkpoint_meta(self) -> dict[str, Any]:
        """``Checkpoint.meta`` values: input shape, class names, pre-processing, the Ultralytics facts."""
        ultralytics = {
            "task": self.task,
            "names": {str(k): v for k, v in self.names.items()},
            "stride": self.stride,
            "imgsz": list(self.imgsz),
            "channels": self.channels,
            "head": self.head,
            "end2end": self.end2end,
        }
        if self.kpt_shape is not None:
            ultralytics["kpt_shape"] = list(self.kpt_shape)
        return {
            "input_shape": list(self.input_shape),
            "class_names": [self.names[i] for i in sorted(self.names)],
            # Ultralytics feeds RGB letterboxed to the input size, scaled to [0, 1] and nothing more:
            # mean 0, std 1
            "mean": [0.0] * self.channels,
            "std": [1.0] * self.channels,
            "resize": "letterbox",
            "ultralytics": ultralytics,
        }


def is_yolo_model(obj: object) -> bool:
    """A network built by Ultralytics from a yaml (``yaml`` dict, ``model`` of routed layers)."""
    layers = getattr(obj, "model", None)
    return (
        isinstance(obj, nn.Module)
        and isinstance(getattr(obj, "yaml", None), Mapping)
        and isinstance(layers, nn.Sequential)
        and len(layers) > 0
        and all(hasattr(layer, "f") and hasattr(layer, "i") for layer in layers)
    )


def is_training_checkpoint(obj: object) -> bool:
    """An Ultralytics training checkpoint: ``train_args`` beside a network under ``ema`` or ``model``."""
    return (
        isinstance(obj, Mapping)
        and isinstance(obj.get("train_args"), Mapping)
        and any(is_yolo_model(obj.get(key)) for key in ("ema", "model"))
    )


def network_of(checkpoint: Mapping[str, Any]) -> nn.Module:
    """The network a training checkpoint holds: ``ema`` while training runs (last.pt), else ``model``."""
    if not is_training_checkpoint(checkpoint):
        raise CheckpointError(
            "not an Ultralytics training checkpoint (it needs 'train_args' and a network under 'ema' or "
            "'model'): load other files with load_checkpoint"
        )
    ema = checkpoint.get("ema")
    return ema if is_yolo_model(ema) else checkpoint["model"]


def head_of(model: nn.Module) -> nn.Module:
    """The last layer of an Ultralytics network: its head."""
    if not is_yolo_model(model):
        raise ExportError(
            f"{type(model).__name__} is not an Ultralytics model (it has no 'yaml' dict and no 'model' "
            f"layers with routing attributes 'f' and 'i'): pass the network Ultralytics built, e.g. "
            f"checkpoint['model']"
        )
    return model.model[-1]


def task_of(head: nn.Module) -> str:
    """The task a head serves, from its attributes; raises for heads without a known export form."""
    if hasattr(head, "kpt_shape"):
        return "pose"
    if isinstance(getattr(head, "proto", None), nn.Module):
        return "segment"
    if hasattr(head, "ne") and hasattr(head, "reg_max"):
        return "obb"
    if hasattr(head, "reg_max") and hasattr(head, "nc"):
        return "detect"
    if isinstance(getattr(head, "linear", None), nn.Linear):
        return "classify"
    raise ExportError(
        f"the head {type(head).__name__} serves none of {', '.join(TASKS)}: its deployment form is unknown; "
        f"export the network as it is, without deployment_form"
    )


def describe(model: nn.Module, train_args: Mapping[str, Any] | None = None) -> YoloInfo:
    """What ``model`` (an Ultralytics network) and the ``train_args`` saved beside it say about it."""
    head = head_of(model)
    task = task_of(head)
    args = _plain_args(train_args if train_args is not None else getattr(model, "args", None))
    recorded = args.get("task") or getattr(model, "task", None)
    if recorded and recorded != task:
        logger.warning(
            "the network records task %r but its head %s serves %r", recorded, type(head).__name__, task
        )
    kpt = getattr(head, "kpt_shape", None)
    return YoloInfo(
        task=task,
        names=_names(model, head, task),
        stride=_stride(model),
        imgsz=_imgsz(args.get("imgsz")),
        channels=int(model.yaml.get("channels", 3)),
        head=type(head).__name__,
        kpt_shape=(int(kpt[0]), int(kpt[1])) if kpt is not None else None,
        end2end=bool(getattr(head, "end2end", False)),
        train_args=args,
    )


def describe_checkpoint(checkpoint: Mapping[str, Any]) -> YoloInfo:
    """``describe`` for a training checkpoint dict (its network and its ``train_args``)."""
    return describe(network_of(checkpoint), checkpoint.get("train_args"))


def _plain_args(args: object) -> dict[str, Any]:
    """Settings as a dict of plain values (a namespace's attributes; anything else as its string)."""
    if isinstance(args, Mapping):
        items = args.items()
    elif hasattr(args, "__dict__"):  # a namespace
        items = vars(args).items()
    else:
        return {}
    return {str(k): _plain(v) for k, v in items}


def _plain(value: object) -> Any:
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, (list, tuple)) and all(isinstance(v, (bool, int, float, str)) for v in value):
        return list(value)
    return str(value)


def _names(model: nn.Module, head: nn.Module, task: str) -> dict[int, str]:
    names = getattr(model, "names", None)
    if isinstance(names, (list, tuple)):
        names = dict(enumerate(names))
    if isinstance(names, Mapping) and names:
        return {int(k): str(v) for k, v in names.items()}
    count = head.linear.out_features if task == "classify" else int(head.nc)
    return {i: f"class{i}" for i in range(count)}


def _stride(model: nn.Module) -> int:
    stride = getattr(model, "stride", None)
    try:
        return int(max(stride)) if stride is not None else 32
    except TypeError:  # a plain number
        return int(stride)


def _imgsz(value: object) -> tuple[int, int]:
    """Ultralytics' ``imgsz`` setting (an int, or [H, W]) as (H, W)."""
    if isinstance(value, int) and not isinstance(value, bool) and value > 0:
        return (value, value)
    if isinstance(value, list) and len(value) in (1, 2) and all(isinstance(v, int) and v > 0 for v in value):
        return (value[0], value[-1])
    return (DEFAULT_IMGSZ, DEFAULT_IMGSZ)
