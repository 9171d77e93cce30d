"""Checkpoint → verified ONNX: export form, metadata, golden data, decision-aware check, lint.

``export_onnx("model.pt")`` writes, atomically (nothing is left behind on failure):

* ``model.onnx`` — the network with every SCConv in export form, metadata in ``metadata_props``;
* ``model.golden.npz`` — check inputs, PyTorch FP32 outputs and every gate decision (see golden);
* ``model.report.json`` — errors, gate agreement, graph statistics, timings and lint findings.

The graph is exported once with one extra output per SRU (the gate values); the shipped ONNX is
that graph without the extra outputs, and the check runs the debug graph in ONNX Runtime to
count gate decisions exactly.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import time
import warnings
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import torch
from torch import nn

from ._files import Staging, check_writable_dir
from ._version import __version__
from .calibration import load_inputs
from .checkpoint import Checkpoint, load_checkpoint
from .convert import deploy_summary, to_deploy
from .errors import ExportError
from .gates import GATE_METADATA_KEY, GATE_PREFIX, MASK_METADATA_KEY, MASK_PREFIX
from .golden import DEFAULT_TIE_GUARD, Golden
from .ort_cpu import cpu_session, run_batched
from .precision import PRECISIONS, PrecisionCheck, check_precision, to_fp16, to_int8
from .tap import GateTap, conversion_error, make_golden
from .verify import VerificationResult, compare

logger = logging.getLogger(__name__)

DYNAMIC = ("none", "batch", "batch+hw")
EXPORTERS = ("dynamo", "legacy")
INPUT_NAME = "input"
DEFAULT_OPSET = 18  # InstanceNormalization-based GroupNorm: parsed by every TensorRT 10/11


@dataclass
class ExportResult:
    onnx_path: Path
    golden_path: Path | None
    report_path: Path
    report: dict[str, Any]
    verification: VerificationResult | None = None
    lint: Any = None  # scconv_deploy.lint.LintReport
    other_shapes: list[dict[str, Any]] = field(default_factory=list)
    precision_check: PrecisionCheck | None = None

    @property
    def ok(self) -> bool:
        lint_ok = self.lint is None or self.lint.ok
        check_ok = self.verification is None or self.verification.passed
        precision_ok = self.precision_check is None or self.precision_check.passed
        return lint_ok and check_ok and precision_ok and all(c["passed"] for c in self.other_shapes)


def parse_input_shape(text: str | Any) -> tuple[int, ...]:
    """``"1,3,224,224"`` (or a sequence) → ``(1, 3, 224, 224)``; four positive ints."""
    try:
        dims = tuple(int(d) for d in (text.split(",") if isinstance(text, str) else text))
    except (TypeError, ValueError) as err:
        raise ExportError(f"input shape {text!r} is not a list of integers like 1,3,224,224") from err
    if len(dims) != 4 or min(dims) < 1:
        raise ExportError(f"input shape {text!r} must be four positive integers N,C,H,W")
    return dims


def _input_shape(given: Any, ckpt: Checkpoint) -> tuple[int, ...]:
    if given is not None:
        return parse_input_shape(given)
    if "input_shape" in ckpt.meta:
        return parse_input_shape(ckpt.meta["input_shape"])
    raise ExportError(f"{ckpt.path} records no input shape: pass --input-shape N,C,H,W")


def _run_torch(model: nn.Module, x: torch.Tensor, shape: tuple[int, ...]) -> tuple[torch.Tensor, ...]:
    try:
        with torch.no_grad():
            out = model(x)
    except Exception as err:  # user networks raise anything; the input shape is the usual cause
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise ExportError(
            f"input shape {','.join(map(str, shape))} does not fit the network: {first}"
        ) from err
    outs = tuple(out) if isinstance(out, (tuple, list)) else (out,)
    if not all(isinstance(o, torch.Tensor) for o in outs):
        raise ExportError("the network must return a tensor or a tuple of tensors")
    return outs


@contextlib.contextmanager
def _quiet():
    """torch.onnx prints progress to stdout and warns about itself: keep that out of our output."""
    noisy = logging.getLogger("torch.onnx._internal.exporter._registration")  # "torchvision is not installed"
    level = noisy.level
    noisy.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            yield
    finally:
        noisy.setLevel(level)


def _torch_export(
    module: nn.Module, example: torch.Tensor, names: list[str], exporter: str, dynamic: str, opset: int
) -> onnx.ModelProto:
    axes = {0: "batch"} if dynamic != "none" else {}
    if dynamic == "batch+hw":
        axes.update({2: "height", 3: "width"})
    try:
        with _quiet():
            if exporter == "dynamo":
                from torch.export import Dim

                dims = {i: Dim(name) for i, name in axes.items()}
                program = torch.onnx.export(
                    module,
                    (example,),
                    dynamo=True,
                    dynamic_shapes=(dims,),
                    input_names=[INPUT_NAME],
                    output_names=names,
                    opset_version=opset,
                    external_data=False,
                    verbose=False,
                )
                return program.model_proto
            buf = io.BytesIO()
            out_axes = {n: {0: "batch"} for n in names} if dynamic != "none" else {}
            torch.onnx.export(
                module,
                (example,),
                buf,
                dynamo=False,
                input_names=[INPUT_NAME],
                output_names=names,
                opset_version=opset,
                dynamic_axes={INPUT_NAME: axes, **out_axes} if axes else None,
                do_constant_folding=True,
            )
            return onnx.load_from_string(buf.getvalue())
    except Exception as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise ExportError(f"torch.onnx.export ({exporter}) failed: {first}") from err


def _simplify(model: onnx.ModelProto) -> onnx.ModelProto:
    """onnxslim: constant folding, dead-node and shape-op cleanup; keeps every graph output."""
    import onnxslim

    with _quiet():
        return onnxslim.slim(model)


def annotate_shapes(model: onnx.ModelProto) -> onnx.ModelProto:
    """Every tensor's shape, symbolically (N, H, W stay dynamic), from ONNX Runtime's shape inference.

    With the shapes known, ONNX Runtime proves that residual ``Add``s join equal shapes and fuses
    them with their ``Relu``; on SCConv-ResNet-50 this cut CPU latency by ~7 % (benchmarks/latency.py,
    "deploy+shapes"). A graph the inference cannot handle is returned unchanged.
    """
    from onnxruntime.tools.symbolic_shape_infer import SymbolicShapeInference

    try:
        with _quiet():
            return SymbolicShapeInference.infer_shapes(model, auto_merge=True)
    except Exception as err:
        logger.info("symbolic shape inference skipped: %s", str(err).splitlines()[0] if str(err) else err)
        return model


def _without_gate_outputs(debug: onnx.ModelProto, keep: int) -> onnx.ModelProto:
    """The shipped graph: the debug graph minus its gate outputs (the gates still feed the network)."""
    model = onnx.ModelProto()
    model.CopyFrom(debug)
    del model.graph.output[keep:]
    return model


def _set_metadata(model: onnx.ModelProto, entries: dict[str, Any]) -> None:
    del model.metadata_props[:]
    for key, value in entries.items():
        if value is not None:
            prop = model.metadata_props.add()
            prop.key, prop.value = key, value if isinstance(value, str) else json.dumps(value)


def _check(
    debug: Any, golden: Golden, batch: int | None, n_out: int, rtol: float, atol: float
) -> tuple[VerificationResult, list[np.ndarray]]:
    """The decision-aware comparison of the debug graph's session, and its outputs."""
    results = run_batched(debug, golden.inputs, batch, INPUT_NAME)
    return compare(golden, results[:n_out], results[n_out:], rtol=rtol, atol=atol), results[:n_out]


def _check_other_shapes(
    main: Any,
    debug: Any,
    golden: Golden,
    deployed: nn.Module,
    dynamic: str,
    n_out: int,
    rtol: float,
    atol: float,
) -> list[dict[str, Any]]:
    """The shipped file (``main``, a session) at other batch sizes — same results as the full-batch
    run — and, through the debug graph's session, at another spatial size."""
    checks = []
    full = run_batched(main, golden.inputs[:4], None, INPUT_NAME)
    for n in (1, 3):
        part = run_batched(main, golden.inputs[:n], n, INPUT_NAME)
        err = max(float(np.abs(a - b[:n]).max()) for a, b in zip(part, full, strict=True))
        checks.append(
            {"shape": [n, *golden.inputs.shape[1:]], "max_abs_vs_batch_4": err, "passed": err <= atol}
        )
    if dynamic == "batch+hw":
        c, h, w = golden.inputs.shape[1:]
        x = np.random.default_rng(1).standard_normal((4, c, h + 32, w + 32), dtype=np.float32)
        sub = make_golden(deployed, x, golden.output_names, golden.tie_guard)
        result, _ = _check(debug, sub, None, n_out, rtol, atol)
        checks.append(
            {
                "shape": list(x.shape),
                "passed": result.passed,
                "reasons": result.reasons,
                "tie_samples": len(result.tie_samples),
            }
        )
    return checks


def _reduce_precision(
    main: onnx.ModelProto,
    precision: str,
    calib_data: str | Path | None,
    shape: tuple[int, ...],
    mean: Any,
    std: Any,
    calib_samples: int,
    calib_method: str,
    calib_cache: str | Path | None,
) -> onnx.ModelProto:
    """The artefact in the requested precision (the FP32 graph itself for "fp32")."""
    if precision == "fp32":
        return main
    if precision == "fp16":
        artefact = to_fp16(main)
    else:
        calib, _ = load_inputs(calib_data, shape, mean, std, limit=calib_samples)
        cache = Path(calib_cache) if calib_cache is not None else default_cache_dir()
        artefact = to_int8(main, calib, method=calib_method, cache_dir=cache)
    _set_metadata(artefact, {**{p.key: p.value for p in main.metadata_props}, "precision": precision})
    return artefact


def default_cache_dir() -> Path:
    """Where INT8 calibration results are cached: ``$XDG_CACHE_HOME/scconv-deploy`` (or ~/.cache)."""
    import os

    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "scconv-deploy"


def export_onnx(
    source: str | Path | Checkpoint,
    output: str | Path | None = None,
    *,
    input_shape: Any = None,
    dynamic: str = "batch",
    opset: int = DEFAULT_OPSET,
    simplify: bool = True,
    check: bool = True,
    calib_data: str | Path | None = None,
    check_samples: int = 64,
    exporter: str = "dynamo",
    trt_major: int = 10,
    tie_guard: float = DEFAULT_TIE_GUARD,
    rtol: float = 1e-3,
    atol: float = 1e-4,
    trust: bool = False,
    arch: str | None = None,
    plots_dir: str | Path | None = None,
    precision: str = "fp32",
    calib_samples: int = 512,
    calib_method: str = "minmax",
    calib_cache: str | Path | None = None,
) -> ExportResult:
    """Export ``source`` (a checkpoint path or a loaded ``Checkpoint``) to a verified ONNX file.

    Returns the result with the report; raises ``ScconvDeployError`` subclasses on bad input.
    A failed check does not raise: see ``ExportResult.ok``. ``plots_dir`` (needs matplotlib and
    the check) receives ``<name>.gate_margins.png`` and ``<name>.errors.png``.

    ``precision="fp16"`` writes an FP16 graph whose gate path stays FP32; ``"int8"`` an explicit
    Q/DQ graph calibrated on ``calib_data`` (required; up to ``calib_samples`` inputs, cached in
    ``calib_cache``). Both are checked against the FP32 golden data (``precision.check_precision``).
    """
    start = time.perf_counter()
    if dynamic not in DYNAMIC:
        raise ExportError(f"dynamic={dynamic!r} is unknown: use one of {', '.join(DYNAMIC)}")
    if exporter not in EXPORTERS:
        raise ExportError(f"exporter={exporter!r} is unknown: use one of {', '.join(EXPORTERS)}")
    if not 9 <= int(opset) <= 23:
        raise ExportError(f"opset {opset} is outside 9..23")
    if precision not in PRECISIONS:
        raise ExportError(f"precision={precision!r} is unknown: use one of {', '.join(PRECISIONS)}")
    if precision == "int8" and calib_data is None:
        raise ExportError("--precision int8 needs --calib-data: INT8 ranges must come from real inputs")
    ckpt = source if isinstance(source, Checkpoint) else load_checkpoint(source, arch=arch, trust=trust)
    out_path = Path(output) if output is not None else ckpt.path.with_suffix(".onnx")
    golden_path = out_path.with_suffix(".golden.npz")
    report_path = out_path.with_suffix(".report.json")
    check_writable_dir(out_path, ExportError)
    plot_paths = []
    if plots_dir is not None:
        if not check:
            raise ExportError("--plots needs the check (drop --no-check)")
        from .plots import require_matplotlib

        require_matplotlib()  # fail early, before the export, if matplotlib is missing
        Path(plots_dir).mkdir(parents=True, exist_ok=True)
        plot_paths = [Path(plots_dir) / f"{out_path.stem}.{kind}.png" for kind in ("gate_margins", "errors")]
        check_writable_dir(plot_paths[0], ExportError)
    shape = _input_shape(input_shape, ckpt)

    model = ckpt.model.eval()
    example = torch.zeros(shape)
    if dynamic != "none" and shape[0] == 1:
        example = torch.zeros((2, *shape[1:]))  # torch.export specialises a dimension of size 1
    n_out = len(_run_torch(model, example, shape))
    deployed = to_deploy(model)
    summary = deploy_summary(deployed)
    tap = GateTap(deployed, masks=True).eval()
    names = ["output"] if n_out == 1 else [f"output_{i}" for i in range(n_out)]
    gate_names = [f"{GATE_PREFIX}{spec.name}" for spec in tap.specs]
    mask_names = [f"{MASK_PREFIX}{spec.name}" for spec in tap.specs]

    t_export = time.perf_counter()
    debug = _torch_export(tap, example, names + gate_names + mask_names, exporter, dynamic, opset)
    if simplify:
        debug = annotate_shapes(_simplify(debug))
    export_seconds = time.perf_counter() - t_export
    main = _without_gate_outputs(debug, n_out)
    mean, std = ckpt.meta.get("mean"), ckpt.meta.get("std")
    _set_metadata(
        main,
        {
            "scconv_deploy.version": __version__,
            "source.file": ckpt.path.name,
            "source.sha256": ckpt.sha256,
            "source.layout": ckpt.layout,
            "arch": ckpt.arch,
            "arch_kwargs": ckpt.arch_kwargs if ckpt.arch else None,
            "scconv.blocks": str(summary.count),
            "scconv.variants": summary.variants,
            "input.name": INPUT_NAME,
            "input.shape": list(shape),
            "input.dynamic": dynamic,
            "outputs": names,
            "mean": mean,
            "std": std,
            "class_names": ckpt.meta.get("class_names"),
            "opset": str(opset),
            "precision": "fp32",
            "exporter": exporter,
            GATE_METADATA_KEY: gate_names,
            MASK_METADATA_KEY: mask_names,
        },
    )
    onnx.checker.check_model(main)
    artefact = _reduce_precision(
        main, precision, calib_data, shape, mean, std, calib_samples, calib_method, calib_cache
    )

    from .lint import lint_onnx

    lint = lint_onnx(artefact, trt_major=trt_major)
    batch = None if dynamic != "none" else shape[0]
    verification, golden, dynamic_checks, data_desc, conversion, ort_outputs = None, None, [], None, None, []
    precision_check = None
    if check:
        inputs, data_desc = load_inputs(calib_data, shape, mean, std, limit=check_samples)
        golden = make_golden(deployed, inputs, names, tie_guard)
        conversion = conversion_error(model, golden)
        golden.meta = {"source.sha256": ckpt.sha256, "data": data_desc, "onnx": out_path.name}
        # one session per graph for every check below
        debug_session = cpu_session(_without_gate_outputs(debug, n_out + len(gate_names)))
        verification, ort_outputs = _check(debug_session, golden, batch, n_out, rtol, atol)
        if dynamic != "none":
            dynamic_checks = _check_other_shapes(
                cpu_session(main), debug_session, golden, deployed, dynamic, n_out, rtol, atol
            )
        if precision != "fp32":
            precision_check = check_precision(main, artefact, golden, precision)

    ops = Counter(n.op_type for n in artefact.graph.node)
    payload = artefact.SerializeToString()
    report: dict[str, Any] = {
        "ok": None,
        "onnx": str(out_path),
        "golden": str(golden_path) if golden is not None else None,
        "source": {"path": str(ckpt.path), "sha256": ckpt.sha256, "layout": ckpt.layout, "arch": ckpt.arch},
        "input": {"name": INPUT_NAME, "shape": list(shape), "dynamic": dynamic},
        "export": {
            "exporter": exporter,
            "opset": opset,
            "simplified": simplify,
            "precision": precision,
            "seconds": round(export_seconds, 3),
        },
        "scconv": {
            "count": summary.count,
            "variants": summary.variants,
            "blocks": [b.name for b in summary.blocks],
        },
        "graph": {"nodes": sum(ops.values()), "ops": dict(sorted(ops.items())), "bytes": len(payload)},
        "check": None,
        "lint": lint.to_dict(),
        "plots": [str(p) for p in plot_paths],
    }
    if verification is not None:
        report["check"] = {
            "data": data_desc,
            "verification": verification.to_dict(),
            "pytorch_original_vs_export_form": conversion,
            "other_shapes": dynamic_checks,
            "precision": precision_check.to_dict() if precision_check is not None else None,
        }
    result = ExportResult(
        out_path,
        golden_path if golden is not None else None,
        report_path,
        report,
        verification,
        lint,
        dynamic_checks,
        precision_check,
    )
    report["ok"] = result.ok
    report["seconds"] = round(time.perf_counter() - start, 3)
    with Staging(ExportError) as staging:
        staging.temp_for(out_path).write_bytes(payload)
        if golden is not None:
            golden.save(staging.temp_for(golden_path))
        if plot_paths:
            from .plots import plot_gate_margins, plot_output_errors

            plot_gate_margins(golden, staging.temp_for(plot_paths[0]))
            plot_output_errors(golden, ort_outputs, verification.compared, staging.temp_for(plot_paths[1]))
        staging.temp_for(report_path).write_text(json.dumps(report, indent=2, default=str))
    logger.info("wrote %s (%d nodes, %.1f s)", out_path, report["graph"]["nodes"], report["seconds"])
    return result
