"""Reading a ``torch.save`` file: weights-only unless trusted, with its refusals explained.

A weights-only load runs no code from the file. Training checkpoints often hold harmless extras
beside their weights — numpy scalars and arrays (fitness, metrics), an ``argparse.Namespace`` of
the run's arguments, paths — which PyTorch's weights-only loader refuses by default; they are
allowed here (``harmless_globals``): they rebuild plain values and call nothing else. Anything
else the pickle asks for (a class of the user's network, a function) is refused, and the error
names the first such global. With ``trust=True`` the file is unpickled in full, with
``import_paths`` put in front of ``sys.path`` so that the classes it names can be imported.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import logging
import os
import pathlib
import pickle
import re
import sys
import warnings
from collections.abc import Iterable, Iterator
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .errors import CheckpointError, first_line

logger = logging.getLogger(__name__)

_TRUST_HINT = (
    "unpickling it runs code from the file; if you trust its source, pass trust=True (CLI: --trust), "
    "or re-save it as a state dict"
)
_REFUSED_GLOBAL = re.compile(r"GLOBAL ([\w.]+)")
_NUMERIC_DTYPES = (np.bool_, np.int8, np.int16, np.int32, np.int64, np.uint8, np.uint16, np.uint32, np.uint64)
_NUMERIC_DTYPES += (np.float16, np.float32, np.float64, np.complex64, np.complex128)


@cache
def harmless_globals() -> tuple[Any, ...]:
    """What a weights-only load may also rebuild: numpy scalars/arrays/dtypes, Namespace, paths.

    Taken from numpy's own pickling (``__reduce__``), so the names fit the installed numpy
    (``numpy.core`` in 1.x, ``numpy._core`` in 2.x).
    """
    scalar = np.float64(0).__reduce__()[0]
    reconstruct = np.zeros(1).__reduce__()[0]
    dtype_classes = {type(np.dtype(t)) for t in _NUMERIC_DTYPES}
    paths = (pathlib.PurePath, pathlib.PurePosixPath, pathlib.PureWindowsPath, pathlib.PosixPath)
    return (scalar, reconstruct, np.ndarray, np.dtype, *dtype_classes, argparse.Namespace, *paths)


@contextlib.contextmanager
def importable(paths: Iterable[str | os.PathLike]) -> Iterator[None]:
    """Put ``paths`` (folders) in front of ``sys.path`` while the block runs; remove them afterwards."""
    added = []
    for entry in paths:
        folder = Path(entry).expanduser().resolve()
        if not folder.is_dir():
            raise CheckpointError(
                f"import path {entry} is not a folder: pass the folder that holds your code"
            )
        if str(folder) not in sys.path:
            added.append(str(folder))
    sys.path[:0] = added
    importlib.invalidate_caches()
    try:
        yield
    finally:
        for folder in added:
            with contextlib.suppress(ValueError):
                sys.path.remove(folder)


def read_torch_file(
    path: Path,
    *,
    trust: bool,
    map_location: str | torch.device,
    import_paths: Iterable[str | os.PathLike] = (),
) -> tuple[Any, bool]:
    """The file's top-level object and whether it needed full (code-running) unpickling."""
    _check_is_torch_file(path)
    try:
        return _load_weights_only(path, map_location), False
    except pickle.UnpicklingError as err:
        refusal = _refusal(err)
        if refusal is None:
            raise CheckpointError(f"{path} is corrupt or truncated: {first_line(err)}") from err
        if not trust:
            raise CheckpointError(f"{path} holds {refusal}: {_TRUST_HINT}") from err
    except Exception as err:  # zip/pickle readers raise RuntimeError, EOFError, KeyError, ...
        raise CheckpointError(f"{path} is corrupt or truncated: {first_line(err)}") from err
    logger.warning("%s: unpickling with trust=True (runs code from the file)", path)
    with importable(import_paths):
        return _load_trusted(path, map_location), True


def _check_is_torch_file(path: Path) -> None:
    if not path.exists():
        raise CheckpointError(f"{path}: no such file")
    if path.is_dir():
        raise CheckpointError(f"{path} is a directory, not a checkpoint file")
    with path.open("rb") as f:
        head = f.read(4)
    if not head:
        raise CheckpointError(f"{path} is empty")
    if head != b"PK\x03\x04" and head[:1] != b"\x80":
        raise CheckpointError(
            f"{path} is not a PyTorch checkpoint (neither a torch zip archive nor a pickle)"
        )


def _load_weights_only(path: Path, map_location: str | torch.device) -> Any:
    with warnings.catch_warnings(), torch.serialization.safe_globals(list(harmless_globals())):
        warnings.filterwarnings("ignore", message="Detected pickle protocol")
        return torch.load(path, map_location=map_location, weights_only=True)


def _refusal(err: pickle.UnpicklingError) -> str | None:
    """What the weights-only loader refused, in words; None when the file is simply broken."""
    text = str(err)
    if "Weights only load failed" not in text:
        return None
    found = _REFUSED_GLOBAL.search(text)
    if found:
        return f"pickled Python objects (the first it needs is {found.group(1)})"
    if "Unsupported operand" in text:
        return "a plain pickle"
    detail = text.rpartition("WeightsUnpickler error:")[2].strip().splitlines()
    return f"pickled Python objects ({detail[0] if detail else 'refused by the weights-only loader'})"


def _load_trusted(path: Path, map_location: str | torch.device) -> Any:
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="Detected pickle protocol")
            return torch.load(path, map_location=map_location, weights_only=False)
    except ModuleNotFoundError as err:
        raise CheckpointError(
            f"{path} refers to Python code that is not importable here ({first_line(err)}): run from the "
            f"folder that holds module {err.name!r}, add that folder with import_paths=[...] (CLI: "
            f"--import-path DIR), or install the package that provides it"
        ) from err
    except AttributeError as err:
        raise CheckpointError(
            f"{path} refers to Python code that is not importable here ({first_line(err)}): the module "
            f"found no longer defines that class; use the code the checkpoint was saved with"
        ) from err
    except Exception as err:
        raise CheckpointError(f"{path} could not be unpickled: {first_line(err)}") from err
