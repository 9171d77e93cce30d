"""The TensorRT release a lint targets: a major version, and the minor when the user knows it."""

from __future__ import annotations

import re
from dataclasses import dataclass

from .support import MAJORS

_VERSION = re.compile(r"(\d+)\.(\d+)(?:\.\d+)*")


@dataclass(frozen=True)
class Target:
    """TensorRT ``major`` (10 or 11) and, when known, ``minor``."""

    major: int
    minor: int | None = None

    @classmethod
    def parse(cls, trt_major: int, trt_version: str | None = None) -> Target:
        """Validate ``trt_major`` and an optional ``"X.Y"`` version of the same major."""
        if trt_major not in MAJORS:
            raise ValueError(
                f"trt_major={trt_major!r}: the lint knows TensorRT {' and '.join(map(str, MAJORS))}"
            )
        if trt_version is None:
            return cls(trt_major)
        match = _VERSION.fullmatch(trt_version.strip())
        if match is None:
            raise ValueError(f"trt_version={trt_version!r}: expected MAJOR.MINOR, e.g. '10.8'")
        major, minor = int(match[1]), int(match[2])
        if major != trt_major:
            raise ValueError(f"trt_version={trt_version!r} is not a TensorRT {trt_major} release")
        return cls(major, minor)

    def at_least(self, major: int, minor: int) -> bool | None:
        """Whether the target is ``major.minor`` or newer; None when the minor is unknown and it matters."""
        if self.major != major:
            return self.major > major
        return None if self.minor is None else self.minor >= minor

    def __str__(self) -> str:
        return f"TensorRT {self.major}" + ("" if self.minor is None else f".{self.minor}")
