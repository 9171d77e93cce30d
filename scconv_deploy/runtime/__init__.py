"""One inference API over ONNX Runtime (``.onnx``) and TensorRT (``.plan``): ``load(path)(x)``.

One backend per module (``onnxrt``, ``tensorrt``); ``base`` holds the shared contract:
validation, normalisation with the checkpoint's mean/std, batching, closing; ``providers`` the
ONNX Runtime execution providers, their options and the check that ORT activated them.
"""

from ..errors import InputError, ModelError
from .base import Model, TensorSpec, normalize_images
from .loader import DEVICES, load
from .providers import FallbackError

__all__ = [
    "DEVICES",
    "FallbackError",
    "InputError",
    "Model",
    "ModelError",
    "TensorSpec",
    "load",
    "normalize_images",
]
