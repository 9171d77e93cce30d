"""Files: atomic outputs, ONNX reading, the cache folder.

Everything is written to a temp file beside its target and renamed at the end.

A command that fails half-way leaves no partial output behind: ``Staging`` collects the temp
files of one operation and either renames them all (``commit``) or deletes them all (``abort``).
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from types import TracebackType

import onnx

from .errors import ScconvDeployError


def cache_root() -> Path:
    """``$XDG_CACHE_HOME/scconv-deploy`` (or ``~/.cache/scconv-deploy``): where caches live by default."""
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "scconv-deploy"


def check_writable_dir(target: Path, error: type[ScconvDeployError]) -> None:
    """Refuse early, with one line, a target whose directory is missing or not writable."""
    parent = target.parent
    if not parent.is_dir():
        raise error(f"cannot write {target}: directory {parent} does not exist")
    if not os.access(parent, os.W_OK):
        raise error(f"cannot write {target}: directory {parent} is not writable")
    if target.is_dir():
        raise error(f"cannot write {target}: it is a directory")


class Staging:
    """Temp files for several targets, renamed together on success, removed on failure."""

    def __init__(self, error: type[ScconvDeployError]) -> None:
        self._error = error
        self._pending: list[tuple[Path, Path]] = []

    def temp_for(self, target: Path) -> Path:
        """A fresh temp path in ``target``'s directory; write the file there."""
        target = Path(target)
        check_writable_dir(target, self._error)
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
        os.close(fd)
        self._pending.append((Path(tmp), target))
        return Path(tmp)

    def commit(self) -> None:
        for tmp, target in self._pending:
            os.replace(tmp, target)
        self._pending.clear()

    def abort(self) -> None:
        for tmp, _ in self._pending:
            tmp.unlink(missing_ok=True)
        self._pending.clear()

    def __enter__(self) -> Staging:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if exc_type is None:
            self.commit()
        else:
            self.abort()


def read_onnx(path: Path, error: type[ScconvDeployError]) -> onnx.ModelProto:
    """An ONNX file's graph without its external data; unreadable or empty files raise ``error``."""
    from google.protobuf.message import DecodeError

    try:
        model = onnx.load(str(path), load_external_data=False)
    except OSError as err:
        raise error(f"{path}: cannot read it ({err.strerror or err})") from err
    except (DecodeError, ValueError) as err:
        raise error(f"{path}: not an ONNX model ({err})") from err
    if not model.HasField("graph") or not model.graph.node:
        raise error(f"{path}: not an ONNX model (no graph nodes)")
    return model
