"""Console entry points of the export side, checked for PyTorch before their modules import it.

A deployment host installs scconv-deploy without PyTorch; there ``scconv-export`` must say in
one line what to install (exit 2) instead of failing with an ImportError traceback.
"""

from __future__ import annotations

import sys

from ..deps import require_torch
from ..errors import DependencyError
from ._common import EXIT_BAD_INPUT


def export() -> int:
    """``scconv-export``."""
    try:
        require_torch("scconv-export")
    except DependencyError as err:
        print(f"scconv-export: error: {err}", file=sys.stderr)
        return EXIT_BAD_INPUT
    from .export import main

    return main()
