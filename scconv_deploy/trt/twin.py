"""The verification twin: the deployment engine's ONNX with every SRU's mask fed in, built beside it.

On real data every sample of an SCConv network can hold a gate tie, which TensorRT may decide
the other way; a check that sets such samples aside then compares nothing. The twin,
``MODEL.verify.plan``, is built from ``verify.forced_graph(onnx)`` with the deployment build's
precision, builder settings, timing cache and compatibility: verification runs it with PyTorch's
decisions fed in (``force:<block>`` inputs), so every golden sample is compared, and reads the
decisions it computes itself (``mask:<block>`` outputs) to count flips.

Its optimisation profile: the network input's range as the deployment engine has it, and for each
``force:<block>`` input that block's mask, (N, C, H·s, W·s), with N the network input's batch, and
C and the scale s read from the golden data (decision shape against input shape). A mask multiplies
activations of the input's batch and size, and shares the input's named dimensions (``batch``,
``height``, ``width``), which TensorRT requires to be equal at run time. TensorRT tunes for the opt
shapes of all inputs together and admits run-time shapes between min and max, so each corner of a
mask is the same corner of the input, scaled: min with min, opt with opt (any other opt would tune
for shapes that never occur together), max with max. A size the scale does not divide gives no
whole mask size and is refused.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import tempfile
from collections.abc import Iterator
from dataclasses import replace
from fractions import Fraction
from pathlib import Path
from typing import Any

import onnx

from .._files import check_writable_dir
from ..errors import EngineError, VerificationError
from ..gates import MASK_PREFIX
from ..golden import Golden
from ..lint.graph import external_location, stored_tensors
from ..verify.forced import forced_graph
from .onnx_file import OnnxInput, file_sha256, load_onnx, read_inputs
from .plan import BuildPlan, TwinOf, check_outputs
from .profile import ShapeRange, dims_text
from .sidecar import BuildInfo, read_sidecar, sidecar_path

logger = logging.getLogger(__name__)

_CORNERS = ("min", "opt", "max")
_AXES = {2: "height", 3: "width"}


def twin_path(plan_path: str | Path) -> Path:
    """Where the verification twin of ``MODEL.plan`` lives: ``MODEL.verify.plan``."""
    return Path(plan_path).with_suffix(".verify.plan")


def _axis(axis: int) -> str:
    return _AXES.get(axis, f"dim {axis}")


def block_list(masks: list[str] | tuple[str, ...]) -> str:
    """``mask:a, mask:b, mask:c`` → ``a, b, …``: the SCConv blocks, for a message."""
    names = [m[len(MASK_PREFIX) :] if m.startswith(MASK_PREFIX) else m for m in masks]
    return ", ".join(names[:2]) + (", …" if len(names) > 2 else "")


def mask_profiles(
    net: ShapeRange, input_name: str, sample: tuple[int, ...], decisions: dict[str, tuple[int, ...]]
) -> dict[str, ShapeRange]:
    """The profile of each force input: every corner of the network input's range, scaled per block.

    ``sample`` is the golden inputs' shape, ``decisions`` each force input's golden decision shape
    (N, C, H', W'): the mask's C is C, its spatial sizes are the input's times H'/H (W'/W).
    """
    rank = len(net.min)
    scales: dict[str, list[Fraction]] = {}
    for name, shape in decisions.items():
        if len(shape) != rank or len(sample) != rank or rank < 3:
            raise EngineError(
                f"the golden decisions for '{name}' have shape {dims_text(shape)}, the input "
                f"'{input_name}' {rank} dimensions: pass the golden file written with this ONNX"
            )
        scales[name] = [Fraction(shape[a], sample[a]) for a in range(2, rank)]
    steps = [math.lcm(*(s[i].denominator for s in scales.values())) for i in range(rank - 2)]
    for corner, dims in zip(_CORNERS, (net.min, net.opt, net.max), strict=True):
        for i, size in enumerate(dims[2:]):
            if size % steps[i]:
                name, scale = next((n, s[i]) for n, s in scales.items() if size % s[i].denominator)
                axis = _axis(i + 2)
                raise EngineError(
                    f"verification twin: the {corner} {axis} {size} of input '{input_name}' gives '{name}' "
                    f"no whole size (its mask is {scale} of the input's {axis} in the golden data): use "
                    f"{axis}s divisible by {steps[i]} (--hw, --shapes), or build without a twin (--no-twin)"
                )

    def corner(dims: tuple[int, ...], name: str) -> tuple[int, ...]:
        spatial = (int(size * scale) for size, scale in zip(dims[2:], scales[name], strict=True))
        return (dims[0], decisions[name][1], *spatial)

    return {
        name: ShapeRange(corner(net.min, name), corner(net.opt, name), corner(net.max, name))
        for name in decisions
    }


def _check_static(inp: OnnxInput, shapes: ShapeRange, onnx_name: str) -> None:
    """Refuse a mask profile that contradicts a static dimension of the mask in the ONNX."""
    corners = (shapes.min, shapes.opt, shapes.max)
    if len(inp.dims) == len(shapes.min) and all(
        not isinstance(dim, int) or all(c[axis] == dim for c in corners) for axis, dim in enumerate(inp.dims)
    ):
        return
    raise EngineError(
        f"'{inp.name}' is [{', '.join(map(str, inp.dims))}] in {onnx_name}, the golden data's decisions make "
        f"it {dims_text(shapes.min)} to {dims_text(shapes.max)}: pass the golden file written with this ONNX"
    )


def has_external_data(model: onnx.ModelProto) -> bool:
    return any(external_location(t) is not None for t in stored_tensors(model.graph))


def twin_plan(plan: BuildPlan, golden: Golden) -> BuildPlan:
    """The build plan of ``plan``'s verification twin, its mask profiles from ``golden``'s decision shapes.

    Refuses, in one line and before any build, golden data of other SCConv blocks or mask shapes,
    and profile sizes that give a mask no whole size.
    """
    model = load_onnx(plan.onnx_path)
    try:
        graph = forced_graph(model)
    except VerificationError as err:
        raise EngineError(
            f"no verification twin of {plan.onnx_path.name}: {err}, or build without a twin (--no-twin)"
        ) from err
    want = [MASK_PREFIX + g.name for g in golden.gates]
    if list(graph.mask_outputs) != want:
        raise EngineError(
            f"the golden data's SCConv blocks ({len(want)}: {block_list(want)}) are not those of "
            f"{plan.onnx_path.name} ({len(graph.mask_outputs)}: {block_list(graph.mask_outputs)}): "
            "pass the golden file written with this ONNX"
        )
    decisions = {name: d.shape for name, d in zip(graph.force_inputs, golden.decisions, strict=True)}
    masks = mask_profiles(plan.profile[graph.input_name], graph.input_name, golden.inputs.shape, decisions)
    inputs = read_inputs(graph.model)
    for inp in inputs:
        if inp.name in masks:
            _check_static(inp, masks[inp.name], plan.onnx_path.name)
    engine_path = twin_path(plan.engine_path)
    check_outputs(engine_path, plan.timing_cache)
    if has_external_data(model):
        try:
            check_writable_dir(plan.onnx_path.parent / f".{plan.onnx_path.stem}.verify.onnx", EngineError)
        except EngineError as err:
            raise EngineError(
                f"{err}: the verification graph of an ONNX with external data is parsed from beside it; "
                "make the folder writable, or build without a twin (--no-twin)"
            ) from err
    return replace(
        plan,
        engine_path=engine_path,
        inputs=inputs,
        outputs=[o.name for o in graph.model.graph.output],
        profile={**plan.profile, **masks},
        debug_gates=False,
        notes=list(plan.notes),
        twin_of=TwinOf(plan.engine_path, graph),
    )


def for_engine(twin: BuildPlan, engine: BuildInfo) -> BuildPlan:
    """The twin's plan, tied to the deployment engine as built (its sidecar records that plan's hash)."""
    if twin.twin_of is None:
        raise EngineError(f"{twin.engine_path}: not the plan of a verification twin")
    return replace(twin, twin_of=replace(twin.twin_of, engine_sha256=engine.plan_sha256))


@contextlib.contextmanager
def onnx_to_parse(plan: BuildPlan) -> Iterator[Path]:
    """The ONNX file TensorRT parses for ``plan``: its ONNX, or for a twin its verification graph.

    The graph is written to a temporary file for the build and removed afterwards — beside the
    ONNX where its weights are external data (their locations are relative to the model file).
    """
    if plan.twin_of is None:
        yield plan.onnx_path
        return
    model = plan.twin_of.graph.model
    folder = plan.onnx_path.parent if has_external_data(model) else None
    try:
        fd, name = tempfile.mkstemp(prefix=f".{plan.onnx_path.stem}.verify.", suffix=".onnx", dir=folder)
        with os.fdopen(fd, "wb") as f:
            f.write(model.SerializeToString())
    except (OSError, ValueError) as err:
        raise EngineError(
            f"cannot write the verification graph of {plan.onnx_path} ({err}): "
            "free the space, or build without a twin (--no-twin)"
        ) from err
    try:
        yield Path(name)
    finally:
        Path(name).unlink(missing_ok=True)


def is_twin(sidecar: dict[str, Any] | None) -> bool:
    return bool(sidecar and sidecar.get("verification_twin"))


def remove_twin(plan_path: Path) -> Path | None:
    """Remove the verification twin beside ``plan_path``, which verified an engine now replaced.

    Only a file whose sidecar marks it as a verification twin is removed; returns its path, if any.
    """
    path = twin_path(plan_path)
    try:
        sidecar = read_sidecar(path) if path.is_file() else None
    except EngineError:
        return None
    if not is_twin(sidecar):
        return None
    path.unlink(missing_ok=True)
    sidecar_path(path).unlink(missing_ok=True)
    return path


def twin_tensors(
    twin_file: Path, twin: dict[str, Any] | None, plan_path: Path, engine: dict[str, Any] | None
) -> tuple[list[str], list[str]]:
    """(force inputs, mask outputs) of the twin at ``twin_file``, refused in one line unless its sidecar
    ``twin`` says it is the verification twin of the plan at ``plan_path`` (whose sidecar is ``engine``,
    its plan hash checked against the file's bytes when the plan was loaded: not hashed again here)."""
    twin = twin or {}
    of = twin.get("verification_twin")
    if not of:
        raise VerificationError(
            f"{twin_file} is not a verification twin (its sidecar does not say so): remove it, "
            f"or rebuild {plan_path.name} with scconv-trt build"
        )
    same_onnx = engine is None or engine["onnx"]["sha256"] == twin["onnx"]["sha256"]
    plan_sha256 = engine["plan"]["sha256"] if engine is not None else file_sha256(plan_path)
    if of.get("plan_sha256") != plan_sha256 or not same_onnx:
        raise VerificationError(
            f"{twin_file} is the verification twin of another build of {plan_path.name}: rebuild both "
            "with scconv-trt build, or remove the twin"
        )
    return list(twin.get("force_inputs", [])), list(twin.get("mask_outputs", []))
