"""Console entry points of the export side, checked for PyTorch before their modules import it.

A deployment host installs scconv-deploy without PyTorch; there ``scconv-export`` must say in
one line what to install (exit 2) instead of failing with an ImportError traceback.
"""

from __future__ import annotations

from ..deps import require_torch
from ._common import EXIT_OK, run


def export() -> int:
    """``scconv-export``."""
    code = run(lambda: require_torch("scconv-export") or EXIT_OK, "scconv-export")
    if code != EXIT_OK:
        return code
    from .export import main

    return main()
