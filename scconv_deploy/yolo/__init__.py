"""Ultralytics YOLO networks (v8, 11), recognised by structure: ``ultralytics`` is never imported.

- ``recognise``: training checkpoints and networks, and what they say (task, names, shapes);
- ``deploy``: the deployment form, whose head returns what Ultralytics' ONNX exporter writes;
- ``metadata``: ONNX metadata that ``YOLO("model.onnx")`` reads.
"""

from .deploy import deployment_form
from .metadata import onnx_metadata
from .recognise import (
    TASKS,
    YoloInfo,
    describe,
    describe_checkpoint,
    head_of,
    is_training_checkpoint,
    is_yolo_model,
    network_of,
    task_of,
)

__all__ = [
    "TASKS",
    "YoloInfo",
    "deployment_form",
    "describe",
    "describe_checkpoint",
    "head_of",
    "is_training_checkpoint",
    "is_yolo_model",
    "network_of",
    "onnx_metadata",
    "task_of",
]
