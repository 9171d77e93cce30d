"""SCConv modules: the reference (both public variants) and the export form."""

from .config import VARIANTS, ScConvConfig
from .export_form import ExportCRU, ExportScConv, ExportSRU
from .reference import CRU, SRU, GroupBatchnorm2d, ScConv

__all__ = [
    "CRU",
    "SRU",
    "VARIANTS",
    "ExportCRU",
    "ExportSRU",
    "ExportScConv",
    "GroupBatchnorm2d",
    "ScConv",
    "ScConvConfig",
]
