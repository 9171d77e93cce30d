"""One optimisation profile from ``--batch``, ``--hw`` and ``--shapes``, checked against the ONNX's inputs.

Static dimensions stay as the ONNX has them (asking for another value is an error); a dynamic
batch defaults to 1:1:8, other dynamic axes to the export shape ``scconv-export`` recorded.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..errors import EngineError
from .onnx_file import OnnxInput

DEFAULT_BATCH = (1, 1, 8)

Triple = tuple[int, int, int]
HW = tuple[tuple[int, int], tuple[int, int], tuple[int, int]]


def _ints(text: str, sep: str, what: str) -> list[int]:
    try:
        values = [int(p) for p in text.split(sep)]
    except ValueError:
        values = []
    if not values or min(values) < 1:
        raise EngineError(f"{what} {text!r}: expected positive integers separated by {sep!r}")
    return values


def _ordered(triple: tuple[Any, Any, Any], what: str, text: str) -> None:
    lo, opt, hi = triple
    if not (lo <= opt <= hi):
        raise EngineError(f"{what} {text}: need MIN <= OPT <= MAX")


def parse_range(text: str, what: str = "--batch") -> Triple:
    """``"1:4:8"`` → (1, 4, 8); ``"4"`` → (4, 4, 4)."""
    values = _ints(text, ":", what)
    if len(values) == 1:
        values *= 3
    if len(values) != 3:
        raise EngineError(f"{what} {text!r}: expected MIN:OPT:MAX (or one size)")
    triple = (values[0], values[1], values[2])
    _ordered(triple, what, text)
    return triple


def parse_hw(text: str) -> HW:
    """``--hw``: ``"32:64:128"`` (square), ``"32x48:64x64:128x96"`` (H x W), or one size."""
    parts = text.split(":")
    if len(parts) == 1:
        parts *= 3
    if len(parts) != 3:
        raise EngineError(f"--hw {text!r}: expected MIN:OPT:MAX, each a size or HxW")
    sizes = []
    for part in parts:
        hw = _ints(part.lower(), "x", "--hw")
        if len(hw) > 2:
            raise EngineError(f"--hw {text!r}: {part!r} is not a size or HxW")
        sizes.append((hw[0], hw[-1]))
    for axis in (0, 1):
        _ordered((sizes[0][axis], sizes[1][axis], sizes[2][axis]), "--hw", text)
    return sizes[0], sizes[1], sizes[2]


def _shape(text: str, what: str) -> tuple[int, ...]:
    return tuple(_ints(text.lower(), "x", what))


def dims_text(shape: tuple[int, ...]) -> str:
    """``(1, 3, 224, 224)`` → ``"1x3x224x224"``."""
    return "x".join(map(str, shape))


@dataclass(frozen=True)
class ShapeRange:
    """The min / opt / max shape of one input in an optimisation profile."""

    min: tuple[int, ...]
    opt: tuple[int, ...]
    max: tuple[int, ...]

    def __str__(self) -> str:
        return f"min {dims_text(self.min)}, opt {dims_text(self.opt)}, max {dims_text(self.max)}"

    def to_dict(self) -> dict[str, list[int]]:
        return {"min": list(self.min), "opt": list(self.opt), "max": list(self.max)}


def parse_shapes(items: list[str]) -> dict[str, ShapeRange]:
    """``--shapes NAME:MIN:OPT:MAX`` (shapes like 1x3x224x224), repeatable; a name may hold ':'."""
    shapes: dict[str, ShapeRange] = {}
    for item in items:
        parts = item.rsplit(":", 3)
        if len(parts) != 4 or not parts[0]:
            raise EngineError(
                f"--shapes {item!r}: expected NAME:MIN:OPT:MAX, e.g. input:1x1x32x32:4x1x32x32:8x1x32x32"
            )
        name, *texts = parts
        lo, opt, hi = (_shape(t, "--shapes") for t in texts)
        if not len(lo) == len(opt) == len(hi):
            raise EngineError(f"--shapes {item!r}: MIN, OPT and MAX have different ranks")
        for axis in range(len(lo)):
            _ordered((lo[axis], opt[axis], hi[axis]), "--shapes", item)
        if name in shapes:
            raise EngineError(f"--shapes names input {name!r} twice")
        shapes[name] = ShapeRange(lo, opt, hi)
    return shapes


_AXIS_NAMES = {0: "batch", 2: "height", 3: "width"}
_HW_HINT = "re-export with --dynamic batch+hw (scconv-export), or drop the option"
_STATIC_HINTS = {
    0: "re-export with --dynamic batch (scconv-export), or drop the option",
    2: _HW_HINT,
    3: _HW_HINT,
}


def _axis(i: int) -> str:
    return _AXIS_NAMES.get(i, f"dim {i}")


def _fixed(value: int) -> Triple:
    return (value, value, value)


def _axis_range(
    inp: OnnxInput, axis: int, wanted: Triple | None, option: str, exported: tuple | None
) -> Triple:
    static = inp.dims[axis]
    if isinstance(static, int):
        if wanted is not None and wanted != _fixed(static):
            hint = _STATIC_HINTS.get(axis, "it is fixed by the network")
            raise EngineError(
                f"{option} asks {':'.join(map(str, wanted))} for the {_axis(axis)} of input '{inp.name}', "
                f"which is static ({static}) in the ONNX: {hint}"
            )
        return _fixed(static)
    if wanted is not None:
        return wanted
    if axis == 0:
        return DEFAULT_BATCH
    if exported is not None:
        return _fixed(exported[axis])
    raise EngineError(
        f"the {_axis(axis)} of input '{inp.name}' is dynamic and the ONNX records no export shape: "
        f"pass {'--hw' if axis in (2, 3) else '--shapes'}"
    )


def make_profile(
    inputs: list[OnnxInput],
    *,
    batch: Triple | None = None,
    hw: HW | None = None,
    shapes: dict[str, ShapeRange] | None = None,
    exported: dict[str, tuple[int, ...]] | None = None,
) -> tuple[dict[str, ShapeRange], list[str]]:
    """One optimisation profile for ``inputs``, and notes on every default taken.

    ``batch`` sets axis 0 of every input, ``hw`` axes 2 and 3 of every 4-D input, ``shapes`` whole
    inputs; static dimensions stay as they are (asking for another value is an error); a dynamic
    batch defaults to 1:1:8, other dynamic axes to the export shape recorded in the metadata.
    """
    shapes = dict(shapes or {})
    exported = exported or {}
    names = [i.name for i in inputs]
    unknown = [n for n in shapes if n not in names]
    if unknown:
        raise EngineError(
            f"--shapes names {unknown[0]!r}, not an input of the model (inputs: {', '.join(names)})"
        )
    if hw is not None and not any(len(i.dims) == 4 and i.name not in shapes for i in inputs):
        raise EngineError("--hw applies to 4-D (N, C, H, W) inputs: the model has none left to apply it to")
    profile: dict[str, ShapeRange] = {}
    notes: list[str] = []
    for inp in inputs:
        if inp.name in shapes:
            given = shapes[inp.name]
            if len(given.min) != len(inp.dims):
                raise EngineError(
                    f"--shapes {inp.name}: {len(given.min)} dimensions given, the input has {len(inp.dims)}"
                )
            for axis in range(len(inp.dims)):
                _axis_range(inp, axis, (given.min[axis], given.opt[axis], given.max[axis]), "--shapes", None)
            profile[inp.name] = given
            continue
        ranges, defaulted = [], []
        for axis in range(len(inp.dims)):
            wanted, option = None, ""
            if axis == 0 and batch is not None:
                wanted, option = batch, "--batch"
            elif axis in (2, 3) and hw is not None and len(inp.dims) == 4:
                wanted, option = (hw[0][axis - 2], hw[1][axis - 2], hw[2][axis - 2]), "--hw"
            ranges.append(_axis_range(inp, axis, wanted, option, exported.get(inp.name)))
            if wanted is None and isinstance(inp.dims[axis], str):
                defaulted.append(axis)
        if 0 in defaulted:
            default = ":".join(map(str, DEFAULT_BATCH))
            notes.append(
                f"{inp.name}: batch {default} is the default for a dynamic batch; set --batch MIN:OPT:MAX"
            )
        fixed = [axis for axis in defaulted if axis]
        if fixed:
            flag = "--hw" if set(fixed) <= {2, 3} else "--shapes"
            notes.append(
                f"{inp.name}: {' and '.join(map(_axis, fixed))} fixed at the export shape "
                f"({'x'.join(str(ranges[a][0]) for a in fixed)}); set {flag} for a range"
            )
        profile[inp.name] = ShapeRange(*(tuple(r[k] for r in ranges) for k in range(3)))
    return profile, notes
