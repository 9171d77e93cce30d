"""The lint rules: each a pure function ``(model, target) -> list[Finding]``, run on a shape-inferred model.

=======  ========  ================================================================================
rule     severity  finds
=======  ========  ================================================================================
TRT001   error     operators the parser has no importer for (or not yet in the target release)
TRT002   warning   operators of a custom domain: they need a TensorRT plugin of that name
TRT003   error     an opset outside the target's range (warning where the target's minor is undocumented)
TRT010   error     BOOL tensors into operators that take no BOOL (TensorRT rejects bool arithmetic)
TRT011   warning   comparison masks cast to a number for arithmetic (``(r >= t) * x``)
TRT012   warning   comparison + Where chains (``torch.where(r > t, 1, r)``)
TRT020   warning   shape inputs computed at run time from ``Shape`` in INT64
TRT030   warning   Split sizes or Slice bounds that are not constants
TRT040   err/warn  opset-21 GroupNormalization before TensorRT 10.9
TRT041   err/warn  GroupNormalization with num_groups=1 (wrong in TensorRT 10.16)
TRT042   warning   the deprecated GroupNorm plugin
TRT050   warning   tensors stored as external data (TRT051, files missing, is checked by ``lint_onnx``)
TRT060   warning   nodes computing only from constants, left unfolded
TRT061   warning   the unrolled Python ``sum()`` over a parameter (many Add nodes on constants)
TRT062   warning   Cast nodes to or from BOOL
TRT070   warning   SCConv fast gates, for TensorRT 10, whose weakly typed FP16 builds cannot hold their margin
=======  ========  ================================================================================
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from pathlib import Path

import onnx
from onnx import TensorProto

from .findings import Finding, Severity
from .graph import (
    all_nodes,
    attribute,
    constant_names,
    consumers,
    default_opset,
    external_location,
    foldable_nodes,
    producers,
    stored_tensors,
    value_types,
)
from .support import (
    ARITHMETIC_OPS,
    BOOL_CONTROL_INPUTS,
    COMPARISON_OPS,
    GROUPNORM_G1_WRONG,
    GROUPNORM_OPSET21,
    GROUPNORM_OPSET21_SINCE,
    GROUPNORM_PLUGIN_OPS,
    LOGICAL_OPS,
    MAX_OPSET,
    MIN_OPSET,
    ONNX_DOMAINS,
    SHAPE_INPUTS,
    SUPPORTED,
    UNSUPPORTED,
)
from .target import Target

Rule = Callable[[onnx.ModelProto, Target], list[Finding]]

UNROLLED_SUM_MIN_ADDS = 8
_ONNX_NON_CORE_DOMAINS = frozenset({"ai.onnx.ml", "ai.onnx.preview.training"})
_MASK_FIX = "build the mask as float arithmetic, e.g. Ceil(r - t) for r > t (scconv_deploy.to_deploy does)"
_FOLD_FIX = (
    "run constant folding (polygraphy surgeon sanitize --fold-constants, or onnxslim) or fold at export"
)


def _dtype(elem: int) -> str:
    return TensorProto.DataType.Name(elem)


def _version(v: tuple[int, int]) -> str:
    return f"{v[0]}.{v[1]}"


def _finding(
    rule: str, severity: Severity, message: str, node: onnx.NodeProto | None = None, fix: str = ""
) -> Finding:
    return Finding(
        rule,
        severity,
        message,
        node=(node.name or None) if node is not None else None,
        op_type=node.op_type if node is not None else None,
        fix=fix,
    )


# ---- (a) operators and (b) opsets --------------------------------------------------------------


def unsupported_ops(model: onnx.ModelProto, target: Target) -> list[Finding]:
    """TRT001/TRT002: one finding per operator type the target's parser cannot import."""
    table = SUPPORTED[target.major]
    local = {(f.domain, f.name) for f in model.functions}
    nodes = [*all_nodes(model.graph), *(n for f in model.functions for n in f.node)]
    seen: dict[tuple[str, str], list[onnx.NodeProto]] = {}
    for node in nodes:
        key = (node.domain, node.op_type)
        if key not in local and node.op_type not in GROUPNORM_PLUGIN_OPS:
            seen.setdefault(key, []).append(node)
    findings = []
    for (domain, op), group in seen.items():
        count = f" ({len(group)} nodes)" if len(group) > 1 else ""
        if domain in ONNX_DOMAINS:
            spec = table.get(op)
            if spec is None:
                why = (
                    "documented as unsupported" if op in UNSUPPORTED else "not in the parser's operator list"
                )
                msg = f"{op}{count} is {why} for {target}"
                fix = "rewrite it with supported operators or register a TensorRT plugin named " + op
                findings.append(_finding("TRT001", "error", msg, group[0], fix))
            elif spec.since is not None and target.at_least(*spec.since) is False:
                msg = f"{op}{count} is parsed from TensorRT {_version(spec.since)} on; the target is {target}"
                fix = f"target TensorRT >= {_version(spec.since)} or rewrite it with older operators"
                findings.append(_finding("TRT001", "error", msg, group[0], fix))
        elif domain in _ONNX_NON_CORE_DOMAINS:
            msg = f"{op}{count} of domain {domain!r} has no TensorRT importer"
            findings.append(_finding("TRT001", "error", msg, group[0], "remove it from the inference graph"))
        else:
            msg = f"{op}{count} of custom domain {domain!r} imports only through a TensorRT plugin"
            fix = f"register a plugin named {op!r} (IPluginV3) with TensorRT before parsing"
            findings.append(_finding("TRT002", "warning", msg, group[0], fix))
    return findings


def opset_range(model: onnx.ModelProto, target: Target) -> list[Finding]:
    """TRT003: the ai.onnx opset against the documented range of the target release."""
    opset = default_opset(model)
    fix = "re-export with opset_version in the supported range (18 is what our export tests use)"
    if opset is None:
        return [_finding("TRT003", "error", "the model declares no ai.onnx opset", fix=fix)]
    if opset < MIN_OPSET:
        return [
            _finding(
                "TRT003", "error", f"opset {opset} is below {MIN_OPSET}, the oldest TensorRT parses", fix=fix
            )
        ]
    points = MAX_OPSET[target.major]
    if target.minor is None:
        (newest, ceiling), upper = points[-1], points[-1][1]
    else:
        release = (target.major, target.minor)
        known = [p for p in points if p[0] <= release]  # every release is >= its major's first point
        later = [p for p in points if p[0] > release]
        newest, ceiling = known[-1]
        upper = later[0][1] if later else ceiling
    if opset <= ceiling:
        return []
    if opset <= upper:
        msg = (
            f"opset {opset}: TensorRT {_version(newest)} documents opsets up to {ceiling}, "
            f"a later release up to {upper}; {target} is in between"
        )
        return [_finding("TRT003", "warning", msg, fix="check operators.md of your release, or " + fix)]
    msg = f"opset {opset} is above {upper}, the newest opset documented for {target}"
    return [_finding("TRT003", "error", msg, fix=fix)]


# ---- (c) BOOL tensors ---------------------------------------------------------------------------


def bool_inputs(model: onnx.ModelProto, target: Target) -> list[Finding]:
    """TRT010: BOOL into an operator whose TensorRT types exclude BOOL (Mul, Add, ...): rejected."""
    graph, table = model.graph, SUPPORTED[target.major]
    types = value_types(graph)
    findings = []
    for node in graph.node:
        spec = table.get(node.op_type) if node.domain in ONNX_DOMAINS else None
        if spec is None or "BOOL" in spec.types:
            continue
        control = BOOL_CONTROL_INPUTS.get(node.op_type, ())
        flagged = [
            name
            for i, name in enumerate(node.input)
            if name and i not in control and types.get(name) == TensorProto.BOOL
        ]
        if flagged:
            msg = (
                f"{node.op_type} takes BOOL input {flagged[0]!r}; TensorRT's {node.op_type} accepts "
                + ", ".join(spec.types)
            )
            findings.append(_finding("TRT010", "error", msg + " (NVIDIA/TensorRT#1872)", node, _MASK_FIX))
    return findings


def bool_masks(model: onnx.ModelProto, target: Target) -> list[Finding]:
    """TRT011: a BOOL result cast to a number for arithmetic (``(r >= t) * x``) — legal, but a cast pass."""
    graph = model.graph
    types, made_by, used_by = value_types(graph), producers(graph), consumers(graph)
    findings = []
    for cast in graph.node:
        if cast.op_type != "Cast" or not cast.input or types.get(cast.input[0]) != TensorProto.BOOL:
            continue
        users = sorted({u.op_type for u in used_by.get(cast.output[0], []) if u.op_type in ARITHMETIC_OPS})
        if not users:
            continue
        source = made_by.get(cast.input[0])
        what = (
            f"the BOOL result of {source.op_type}" if source is not None else f"BOOL input {cast.input[0]!r}"
        )
        msg = (
            f"{what} is cast to {_dtype(attribute(cast, 'to'))} for {'/'.join(users)}: legal, but a BOOL "
            "tensor and a cast pass (keep this gate in FP32 in FP16 builds)"
        )
        findings.append(_finding("TRT011", "warning", msg, source if source is not None else cast, _MASK_FIX))
    return findings


def comparison_where(model: onnx.ModelProto, target: Target) -> list[Finding]:
    """TRT012: Where selecting on a comparison (``torch.where(r > t, 1, r)``) — legal, but a BOOL tensor."""
    graph = model.graph
    made_by = producers(graph)
    findings = []
    for node in graph.node:
        if node.op_type != "Where" or not node.input:
            continue
        comparison = _comparison_behind(node.input[0], made_by)
        if comparison is not None:
            msg = (
                f"Where selects on {comparison.op_type}: legal, but a BOOL tensor "
                "(keep this gate in FP32 in FP16 builds)"
            )
            findings.append(_finding("TRT012", "warning", msg, node, _MASK_FIX))
    return findings


def _comparison_behind(name: str, made_by: dict[str, onnx.NodeProto]) -> onnx.NodeProto | None:
    """The comparison a BOOL value comes from, through logical ops, Identity and Cast."""
    stack, seen = [name], set()
    while stack:
        node = made_by.get(stack.pop())
        if node is None or id(node) in seen:
            continue
        seen.add(id(node))
        if node.op_type in COMPARISON_OPS:
            return node
        if node.op_type in LOGICAL_OPS | {"Identity", "Cast"}:
            stack.extend(n for n in node.input if n)
    return None


# ---- (d) INT64 shape computations, (e) computed split/slice bounds -------------------------------


def computed_shape_inputs(model: onnx.ModelProto, target: Target) -> list[Finding]:
    """TRT020: shape inputs computed at run time from ``Shape``/``Size`` (Gather, Concat, arithmetic).

    A ``Shape`` output passed on unchanged is not flagged (nothing is computed), nor is a shape value
    that leaves the shape domain (cast to float as data): TensorRT treats that as an ordinary tensor.
    """
    graph = model.graph
    fixed = constant_names(graph) | {o for n in foldable_nodes(graph) for o in n.output}
    runtime: set[str] = set()  # values derived from run-time shapes
    computed: set[str] = set()  # ... through at least one operator
    findings = []
    for node in graph.node:
        shape_positions = SHAPE_INPUTS.get(node.op_type, ())
        bad = [node.input[i] for i in shape_positions if i < len(node.input) and node.input[i] in computed]
        if bad:
            msg = f"{node.op_type} reads shape {bad[0]!r}, computed at run time from Shape (INT64 shape ops)"
            fix = (
                "TensorRT >= 10 takes INT64, but each run-time shape op is work at every shape change, and "
                "TensorRT 8-era parsers needed INT32: use constant targets "
                "(Reshape: 0 copies a dim, -1 infers one)"
            )
            findings.append(_finding("TRT020", "warning", msg, node, fix))
        if node.op_type in ("Shape", "Size"):
            if node.input and node.input[0] not in fixed:
                runtime.update(node.output)
            continue
        data_positions = {i for i, name in enumerate(node.input) if name in runtime} - set(shape_positions)
        if node.op_type in ("Split", "Slice"):
            data_positions &= {0}
        if data_positions:
            runtime.update(node.output)
            if node.op_type != "Identity" or node.input[0] in computed:
                computed.update(node.output)
    return findings


def computed_split_slice(model: onnx.ModelProto, target: Target) -> list[Finding]:
    """TRT030: Split sizes / Slice starts, ends, axes, steps that are not initializers or Constant outputs."""
    graph = model.graph
    constants = constant_names(graph)
    findings = []
    for node in graph.node:
        if node.op_type == "Split":
            bounds = list(node.input[1:2])
        elif node.op_type == "Slice":
            bounds = list(node.input[1:])
        else:
            continue
        computed = [name for name in bounds if name and name not in constants]
        if computed:
            what = "sizes" if node.op_type == "Split" else "bounds"
            msg = f"{node.op_type} {what} are computed in the graph ({', '.join(computed)})"
            fix = "computed sizes: fix the channel counts at export (Python ints), so they become constants"
            findings.append(_finding("TRT030", "warning", msg, node, fix))
    return findings


# ---- (f) GroupNormalization ---------------------------------------------------------------------


def group_norm(model: onnx.ModelProto, target: Target) -> list[Finding]:
    """TRT040/TRT041/TRT042: the native GroupNormalization's version limits and the deprecated plugin."""
    opset = default_opset(model) or 0
    since = _version(GROUPNORM_OPSET21_SINCE)
    findings = []
    for node in model.graph.node:
        if node.op_type in GROUPNORM_PLUGIN_OPS:
            msg = f"{node.op_type} is TensorRT's deprecated GroupNorm plugin"
            fix = (
                f"export nn.GroupNorm natively: opset >= 21 with TensorRT >= {since}, or the opset-20 pattern"
            )
            findings.append(_finding("TRT042", "warning", msg, node, fix))
            continue
        if node.op_type != "GroupNormalization" or node.domain not in ONNX_DOMAINS:
            continue
        if opset >= GROUPNORM_OPSET21:
            new_enough = target.at_least(*GROUPNORM_OPSET21_SINCE)
            fix = f"target TensorRT >= {since}, or export at opset 20 (Reshape-InstanceNormalization-Reshape)"
            if new_enough is False:
                msg = f"opset-{opset} GroupNormalization needs TensorRT >= {since}, not {target} (#4336)"
                findings.append(_finding("TRT040", "error", msg, node, fix))
            elif new_enough is None:
                msg = f"opset-{opset} GroupNormalization needs TensorRT >= {since} (NVIDIA/TensorRT#4336)"
                findings.append(_finding("TRT040", "warning", msg, node, fix))
        if attribute(node, "num_groups") == 1:
            wrong = target.minor is not None and (target.major, target.minor) in GROUPNORM_G1_WRONG
            where = f"in {target}" if wrong else "by TensorRT 10.16, and maybe other releases"
            msg = (
                f"GroupNormalization with num_groups=1 is computed per channel {where} (NVIDIA/TensorRT#4756)"
            )
            fix = "export it as Reshape(N,1,-1)-InstanceNormalization-Reshape; check the engine against ORT"
            findings.append(_finding("TRT041", "error" if wrong else "warning", msg, node, fix))
    return findings


# ---- (g) external data --------------------------------------------------------------------------


def external_data(model: onnx.ModelProto, target: Target) -> list[Finding]:
    """TRT050: tensors stored outside the .onnx file."""
    files = Counter(loc for t in stored_tensors(model.graph) if (loc := external_location(t)) is not None)
    if not files:
        return []
    msg = f"{sum(files.values())} tensors are stored as external data in {', '.join(sorted(files))}"
    fix = "ship the data file beside the .onnx and parse from its path, or re-export with external_data=False"
    return [_finding("TRT050", "warning", msg, fix=fix)]


def missing_external_files(model: onnx.ModelProto, base_dir: Path) -> list[Finding]:
    """TRT051: external data files that are not where the model says (relative to its directory)."""
    files = {loc for t in stored_tensors(model.graph) if (loc := external_location(t)) is not None}
    missing = sorted(f for f in files if not f or not (base_dir / f).is_file())
    return [
        _finding(
            "TRT051",
            "error",
            f"external data file {f!r} is missing beside the model (looked in {base_dir})",
            fix="copy the data file next to the .onnx, or re-export with external_data=False",
        )
        for f in missing
    ]


# ---- (h) legal but wasteful ---------------------------------------------------------------------


def unfolded_constants(model: onnx.ModelProto, target: Target) -> list[Finding]:
    """TRT060: nodes whose inputs are all constants, computed at every run (or every build)."""
    nodes = foldable_nodes(model.graph)
    if not nodes:
        return []
    ops = Counter(n.op_type for n in nodes).most_common(3)
    msg = f"{len(nodes)} nodes compute only from constants ({', '.join(f'{k} x{v}' for k, v in ops)})"
    return [_finding("TRT060", "warning", msg, fix=_FOLD_FIX)]


def unrolled_sum(model: onnx.ModelProto, target: Target) -> list[Finding]:
    """TRT061: >= 8 Add nodes on constants only: the Python ``sum()`` over a parameter, unrolled."""
    adds = [n for n in foldable_nodes(model.graph) if n.op_type == "Add"]
    if len(adds) < UNROLLED_SUM_MIN_ADDS:
        return []
    msg = f"{len(adds)} Add nodes on constants only: the unrolled Python sum() over a parameter"
    fix = (
        "compute parameter-only values at conversion (scconv_deploy.to_deploy folds w = γ/sum(γ)), or "
        + _FOLD_FIX
    )
    return [_finding("TRT061", "warning", msg, adds[0], fix)]


def bool_casts(model: onnx.ModelProto, target: Target) -> list[Finding]:
    """TRT062: Cast nodes to or from BOOL, counted."""
    types = value_types(model.graph)
    casts = [
        n
        for n in model.graph.node
        if n.op_type == "Cast"
        and (
            attribute(n, "to") == TensorProto.BOOL or (n.input and types.get(n.input[0]) == TensorProto.BOOL)
        )
    ]
    if not casts:
        return []
    msg = f"{len(casts)} Cast nodes to or from BOOL, each a full pass over its tensor"
    return [_finding("TRT062", "warning", msg, casts[0], _MASK_FIX)]


# ---- (i) SCConv's gates -------------------------------------------------------------------------

#: The metadata key scconv-export records the hard gates' form in ("exact" or "fast").
GATE_FORM_KEY = "scconv.gates"


def fast_gates_fp16(model: onnx.ModelProto, target: Target) -> list[Finding]:
    """TRT070: fast hard gates (metadata ``scconv.gates``) and TensorRT 10, which builds weakly typed
    networks in FP16 on request: the gates' decision margin is scaled by ``k = 2^-m`` (about 2^-18),
    below FP16's normal range, so an FP16 layer decides them wrongly (TensorRT 11 builds strongly typed
    only, as the file's own types say)."""
    form = next((p.value for p in model.metadata_props if p.key == GATE_FORM_KEY), None)
    if form != "fast" or target.major != 10:
        return []
    msg = (
        "the hard gates are in fast form: their decision margin is scaled below FP16's normal range, so "
        "a weakly typed FP16 build (trtexec --fp16) decides them wrongly"
    )
    fix = (
        "build strongly typed from the file's own precision (scconv-trt build does; trtexec "
        "--stronglyTyped), for FP16 from scconv-export --precision fp16; or export with --gates exact"
    )
    return [_finding("TRT070", "warning", msg, fix=fix)]


RULES: tuple[Rule, ...] = (
    unsupported_ops,
    opset_range,
    bool_inputs,
    bool_masks,
    comparison_where,
    computed_shape_inputs,
    computed_split_slice,
    group_norm,
    external_data,
    unfolded_constants,
    unrolled_sum,
    bool_casts,
    fast_gates_fp16,
)
