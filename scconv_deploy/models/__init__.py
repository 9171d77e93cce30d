"""Model registry: ResNets, WideResNet-28-10 and a small CNN, each with an SCConv twin.

``create("scconv_resnet50", variant="head")`` builds a model; ``list_models("scconv_*")`` lists
them; ``count_macs(model, (1, 3, 224, 224))`` counts parameters and multiply-accumulates.
"""

from . import cnn, resnet, wrn  # noqa: F401  (importing a family registers its models)
from .macs import count_macs
from .registry import create, list_models, register_model

__all__ = ["count_macs", "create", "list_models", "register_model"]
