"""Checkpoint → verified ONNX, as named stages: load → convert → export → check → precision → write.

``export_onnx("model.pt")`` writes, atomically (nothing is left behind on failure):

* ``model.onnx`` — the network with every SCConv in export form (in the requested precision),
  metadata in ``metadata_props``;
* ``model.golden.npz`` — check inputs, PyTorch FP32 outputs and every gate decision (see golden);
* ``model.report.json`` — errors, gate decisions, graph statistics, stage times and lint findings.

Each stage is a function of its own module in ``scconv_deploy.pipeline``; this one only runs them
in order (``Stages`` times them, reports progress and names the stage an unexpected error came
from). A failed check does not raise: the files are written for inspection and
``ExportResult.ok`` is false.
"""

from __future__ import annotations

import logging
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import onnx

from ._cpu import cpu_description
from ._files import Staging, cache_root, check_writable_dir
from ._version import __version__
from .checkpoint import Checkpoint, load_checkpoint
from .errors import ExportError
from .gates import GATE_METADATA_KEY, MASK_METADATA_KEY
from .golden import golden_beside
from .pipeline.check import Fp32Check, check_fp32
from .pipeline.data import Inputs, select_inputs
from .pipeline.graph import (
    INPUT_NAME,
    check_dynamic_axes,
    set_metadata,
    shipped_graph,
    simplify_and_annotate,
    torch_export,
)
from .pipeline.network import Network, default_dynamic, default_int8_outputs, prepare_network
from .pipeline.options import DEFAULT_OPSET, ExportOptions, parse_input_shape
from .pipeline.result import ExportResult, build_report
from .precision import PrecisionCheck, check_precision, output_layers, to_fp16, to_int8
from .precision.check import block_input_names
from .stages import StageListener, Stages
from .verify.tolerance import tolerance_for

logger = logging.getLogger(__name__)

__all__ = ["DEFAULT_OPSET", "ExportOptions", "ExportResult", "export_onnx", "parse_input_shape"]


def default_cache_dir() -> Path:
    """Where INT8 calibration results are cached: ``$XDG_CACHE_HOME/scconv-deploy`` (or ~/.cache)."""
    return cache_root()


def _targets(out_path: Path, options: ExportOptions) -> dict[str, Path]:
    """Every file the export writes, checked writable before any work starts."""
    targets = {
        "onnx": out_path,
        "golden": golden_beside(out_path),
        "report": out_path.with_suffix(".report.json"),
    }
    if options.plots_dir is not None:
        from .plots import require_matplotlib

        require_matplotlib()  # fail early, before the export, if matplotlib is missing
        Path(options.plots_dir).mkdir(parents=True, exist_ok=True)
        for kind in ("gate_margins", "errors"):
            targets[kind] = Path(options.plots_dir) / f"{out_path.stem}.{kind}.png"
    for path in targets.values():
        check_writable_dir(path, ExportError)
    return targets


def _metadata(network: Network, ckpt: Checkpoint, options: ExportOptions, mean, std) -> dict[str, Any]:
    return {
        "scconv_deploy.version": __version__,
        "source.file": ckpt.path.name,
        "source.sha256": ckpt.sha256,
        "source.layout": ckpt.layout,
        "arch": ckpt.arch,
        "arch_kwargs": ckpt.arch_kwargs if ckpt.arch else None,
        "scconv.blocks": str(network.summary.count),
        "scconv.variants": network.summary.variants,
        "input.name": INPUT_NAME,
        "input.shape": list(network.shape),
        "input.dynamic": options.dynamic,
        "outputs": network.output_names,
        "mean": mean,
        "std": std,
        "class_names": ckpt.meta.get("class_names"),
        "opset": str(options.opset),
        "precision": options.precision,
        "exporter": options.exporter,
        "scconv.gates": options.gates,
        GATE_METADATA_KEY: network.gate_names,
        MASK_METADATA_KEY: network.mask_names,
        **network.metadata,
    }


def _export_graph(network: Network, options: ExportOptions, stages: Stages) -> onnx.ModelProto:
    """torch → the shipped FP32 graph, its dynamic axes proven (metadata is set by the caller)."""
    names = network.output_names + network.gate_names + network.mask_names
    with stages.stage(f"export ({options.exporter})"):
        debug = torch_export(
            network.tap, network.example, names, options.exporter, options.dynamic, options.opset
        )
    if options.simplify:
        with stages.stage("simplify"):
            debug = simplify_and_annotate(debug)
    shipped = shipped_graph(debug, len(network.output_names))
    with stages.stage("dynamic axes"):
        check_dynamic_axes(shipped, options.dynamic, network.shape, options.exporter)
    return shipped


def _reduce_precision(
    fp32: onnx.ModelProto, network: Network, options: ExportOptions, inputs: Inputs, stages: Stages
) -> tuple[onnx.ModelProto, list[str]]:
    """The artefact in the requested precision (the FP32 graph itself for "fp32"), and the quantizable
    nodes an INT8 artefact keeps FP32 besides its gate path (its output layers, where asked)."""
    if options.precision == "fp32":
        return fp32, []
    if options.precision == "fp16":
        with stages.stage("fp16 conversion"):
            return to_fp16(fp32), []
    cache = Path(options.calib_cache) if options.calib_cache is not None else default_cache_dir()
    target = "ort-cpu" if options.precision == "int8-cpu" else "trt"
    outputs = options.int8_outputs or default_int8_outputs(network)
    float_layers = output_layers(fp32) if outputs == "float" else []
    with stages.stage("int8 calibration", total=len(inputs.calibration)) as advance:
        artefact = to_int8(
            fp32,
            inputs.calibration,
            method=options.calib_method,
            target=target,
            cache_dir=cache,
            progress=advance,
            float_layers=float_layers,
        )
    return artefact, float_layers


def _check_precision(
    fp32: onnx.ModelProto, artefact: onnx.ModelProto, check: Fp32Check, options: ExportOptions, stages: Stages
) -> PrecisionCheck:
    tolerance = tolerance_for(options.precision).with_overrides(options.rtol, options.atol, options.gate_atol)
    fp32_run = check.verification.runs["forced"]  # exposes the gate path's FP32 inputs
    return check_precision(
        fp32, artefact, check.golden, options.precision, tolerance=tolerance, fp32_run=fp32_run, stages=stages
    )


def _write(
    targets: dict[str, Path], artefact: onnx.ModelProto, check: Fp32Check | None, report_text: str
) -> None:
    with Staging(ExportError) as staging:
        staging.temp_for(targets["onnx"]).write_bytes(artefact.SerializeToString())
        if check is not None:
            check.golden.save(staging.temp_for(targets["golden"]))
        if "errors" in targets and check is not None:
            from .plots import plot_gate_margins, plot_output_errors

            plot_gate_margins(check.golden, staging.temp_for(targets["gate_margins"]))
            diverged = check.verification.deployed.diverged if check.verification.deployed else []
            plot_output_errors(
                check.golden, check.verification.runs, diverged, staging.temp_for(targets["errors"])
            )
        staging.temp_for(targets["report"]).write_text(report_text)


def export_onnx(
    source: str | Path | Checkpoint,
    output: str | Path | None = None,
    *,
    trust: bool = False,
    arch: str | None = None,
    import_paths: list[str | Path] | None = None,
    listener: StageListener | None = None,
    **options: Any,
) -> ExportResult:
    """Export ``source`` (a checkpoint path or a loaded ``Checkpoint``) to a verified ONNX file.

    ``options`` are ``ExportOptions`` fields (``input_shape``, ``dynamic``, ``precision``,
    ``calib_data``, ``check_data``, …; see that class). ``listener`` receives stage progress.
    Raises ``ScconvDeployError`` subclasses on bad input (``InternalError`` for failures no input
    explains); a failed check does not raise: see ``ExportResult.ok``.
    """
    start = time.perf_counter()
    opts = ExportOptions.from_kwargs(**options)
    stages = Stages(listener)
    with stages.stage("load"):
        if isinstance(source, Checkpoint):
            ckpt = source
        else:
            ckpt = load_checkpoint(source, arch=arch, trust=trust, import_paths=import_paths or ())
    if opts.dynamic is None:
        opts = replace(opts, dynamic=default_dynamic(ckpt))
    out_path = Path(output) if output is not None else ckpt.path.with_suffix(".onnx")
    targets = _targets(out_path, opts)
    with stages.stage("convert"):
        network = prepare_network(ckpt, opts)
    mean = list(opts.mean) if opts.mean is not None else ckpt.meta.get("mean")
    std = list(opts.std) if opts.std is not None else ckpt.meta.get("std")
    with stages.stage("data"):
        inputs = select_inputs(
            opts,
            network.shape,
            mean,
            std,
            need_check=opts.check,
            need_calibration=opts.precision.startswith("int8"),
            resize=ckpt.meta.get("resize", "stretch"),
        )
    fp32 = _export_graph(network, opts, stages)
    set_metadata(fp32, {**_metadata(network, ckpt, opts, mean, std), "precision": "fp32"})
    onnx.checker.check_model(fp32)
    check = None
    if opts.check:
        tolerance = tolerance_for("fp32").with_overrides(opts.rtol, opts.atol, opts.gate_atol)
        check = check_fp32(
            fp32,
            network,
            inputs.check,
            tolerance,
            opts.tie_guard,
            stages,
            other_size=opts.dynamic == "batch+hw",
            # the gate path's FP32 inputs for the precision check, read in the same run
            expose=block_input_names(fp32) if opts.precision != "fp32" else None,
        )
        check.golden.meta = {"source.sha256": ckpt.sha256, "data": inputs.check_source, "onnx": out_path.name}
    artefact, float_layers = _reduce_precision(fp32, network, opts, inputs, stages)
    set_metadata(
        artefact,
        {**_metadata(network, ckpt, opts, mean, std), "golden": targets["golden"].name if check else None},
    )
    precision_check = None
    if check is not None and opts.precision != "fp32":
        precision_check = _check_precision(fp32, artefact, check, opts, stages)
    with stages.stage("lint"):
        from .lint import lint_onnx

        lint = lint_onnx(artefact, trt_major=opts.trt_major)
    result = ExportResult(
        targets, ckpt, network, opts, artefact, inputs, check, precision_check, lint, float_layers
    )
    with stages.stage("write"):
        report = build_report(result, stages.times, cpu_description(), time.perf_counter() - start)
        _write(targets, artefact, check, report)
    logger.info("wrote %s (%.1f s)", out_path, time.perf_counter() - start)
    return result
