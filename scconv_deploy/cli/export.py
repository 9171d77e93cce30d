"""``scconv-export``: a checkpoint to a verified ONNX file (argument parsing only)."""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
from dataclasses import fields

from ..golden import DEFAULT_TIE_GUARD
from ..onnx_export import ExportResult, export_onnx
from ..pipeline.graph import DYNAMIC, EXPORTERS
from ..pipeline.options import (
    CALIBRATION_METHODS,
    DEFAULT_OPSET,
    GATE_FORMS,
    INT8_OUTPUTS,
    PRECISIONS,
    ExportOptions,
)
from ..presets import load_preset
from ..triton import write_triton_repository
from ._common import EXIT_CHECK_FAILED, EXIT_OK, add_verbosity, run, setup_logging

EXAMPLES = """examples:
  scconv-export models/scconv_cnn_digits_seed.pt --onnx
  scconv-export model.pt --onnx -o build/model.onnx --input-shape 1,3,224,224 --dynamic batch+hw
  scconv-export model.pt --onnx --preset export/onnx-static.toml --calib-data val_images/
  scconv-export model.pt --onnx --precision fp16 --calib-data val.npy   # gates stay FP32
  scconv-export model.pt --onnx --precision int8 --calib-data val_images/ --check-data test.npy
  scconv-export runs/train/weights/best.pt --onnx --trust   # a pickled network, from its project folder
  scconv-export weights.pt --onnx --arch scconv_resnet50 --input-shape 1,3,224,224

exit codes: 0 exported and verified (or exported, not verified, with --no-check); 1 verification
or lint failed (files are written for inspection); 2 bad input (nothing is written); 3 internal
error (one line naming the step; -v for the traceback)."""


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="scconv-export",
        description="Export an SCConv network checkpoint to ONNX (export form), with golden data, a "
        "decision-aware check against PyTorch and a TensorRT lint.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "checkpoint", help="model.pt: scconv-deploy format, a state dict (with --arch) or a pickle"
    )
    p.add_argument(
        "--onnx", action="store_true", required=True, help="export to ONNX (the only format so far)"
    )
    p.add_argument("-o", "--output", help="output .onnx path (default: beside the checkpoint)")
    p.add_argument("--preset", help="TOML file of options (see export/); flags override it")
    p.add_argument("--input-shape", help="N,C,H,W (default: the checkpoint's metadata)")
    p.add_argument(
        "--dynamic",
        choices=DYNAMIC,
        help="dynamic axes (default: batch; none for Ultralytics YOLO checkpoints, as their exporter does)",
    )
    p.add_argument("--opset", type=int, help=f"ONNX opset (default: {DEFAULT_OPSET})")
    p.add_argument("--exporter", choices=EXPORTERS, help="torch.onnx exporter (default: dynamo)")
    p.add_argument(
        "--gates",
        choices=GATE_FORMS,
        help="how hard gates decide: exact, rounding ties as PyTorch does (default); fast, without the "
        "sigmoid (never convert a fast-gate file to FP16 with another tool: use --precision fp16)",
    )
    p.add_argument(
        "--precision",
        choices=PRECISIONS,
        help="fp16: FP16 with the gate path kept FP32; int8: explicit Q/DQ for TensorRT, calibrated on "
        "--calib-data; int8-cpu: the same with 7-bit weights, for ONNX Runtime on CPUs without VNNI "
        "(default: fp32)",
    )
    p.add_argument("--calib-method", choices=CALIBRATION_METHODS, help="INT8 calibration method")
    p.add_argument(
        "--int8-outputs",
        choices=INT8_OUTPUTS,
        help="INT8: keep the network's output layers FP32 or quantize them (default: float for "
        "detectors, int8 otherwise)",
    )
    p.add_argument(
        "--calib-samples", type=int, help="INT8: at most this many calibration inputs (default: 512)"
    )
    p.add_argument(
        "--calib-cache", metavar="DIR", help="INT8 calibration cache (default: ~/.cache/scconv-deploy)"
    )
    p.add_argument(
        "--simplify",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="simplify with onnxslim (default: on)",
    )
    p.add_argument(
        "--check",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="verify ONNX Runtime against PyTorch and write golden data (default: on)",
    )
    p.add_argument(
        "--calib-data",
        help="real inputs: .npy/.npz (model inputs or uint8 images) or a folder; checks the export, "
        "and calibrates INT8 on the inputs after the check samples",
    )
    p.add_argument("--check-data", help="real check inputs apart from --calib-data (same formats)")
    p.add_argument(
        "--check-samples",
        type=int,
        help="check inputs (default: follows the input size, 64 at 32x32 down to 8 at 640x640)",
    )
    p.add_argument(
        "--mean",
        help="per-channel mean of the network's input, e.g. 0.485,0.456,0.406 "
        "(for image data; default: the checkpoint's)",
    )
    p.add_argument("--std", help="per-channel std, e.g. 0.229,0.224,0.225 (default: the checkpoint's)")
    p.add_argument(
        "--tie-guard", type=float, help=f"gate margin counted as a tie (default: {DEFAULT_TIE_GUARD:g})"
    )
    p.add_argument("--rtol", type=float, help="relative tolerance (default: the precision's, see README)")
    p.add_argument("--atol", type=float, help="absolute tolerance (default: the precision's, see README)")
    p.add_argument(
        "--gate-atol",
        type=float,
        help="FP32: largest mean gate-value error of a block (default 1e-6, see README)",
    )
    p.add_argument("--trt", dest="trt_major", type=int, choices=(10, 11), help="TensorRT major to lint for")
    p.add_argument(
        "--trust", action="store_true", help="allow unpickling a whole network (runs code from the file)"
    )
    p.add_argument(
        "--import-path",
        dest="import_paths",
        action="append",
        default=[],
        metavar="DIR",
        help="also import the checkpoint's classes from DIR (repeatable; the current folder always is)",
    )
    p.add_argument(
        "--arch", help="architecture of a bare state dict: registry name or package.module:factory"
    )
    p.add_argument(
        "--plots", dest="plots_dir", metavar="DIR", help="write PNG histograms of gate margins and errors"
    )
    p.add_argument(
        "--triton-repo", metavar="DIR", help="also write a Triton model repository for the verified ONNX"
    )
    p.add_argument("--json", action="store_true", help="print the report as JSON instead of a summary")
    add_verbosity(p)
    return p


def _options(args: argparse.Namespace) -> dict:
    """The preset's options, overridden by every option given on the command line (flags are named
    as ``ExportOptions``' fields)."""
    options = load_preset(args.preset) if args.preset else {}
    for name in (f.name for f in fields(ExportOptions)):
        value = getattr(args, name, None)
        if value is not None:
            options[name] = value
    return options


def _summary(result: ExportResult) -> str:
    r = result.report
    lines = [
        f"{r['onnx']}: {r['graph']['nodes']} nodes, {r['graph']['bytes'] / 1e6:.2f} MB, "
        f"{r['scconv']['count']} SCConv block(s) {r['scconv']['variants']}, input {r['input']['shape']} "
        f"(dynamic: {r['input']['dynamic']}, {r['export']['precision']})",
    ]
    if result.check is not None:
        lines.append(f"check on {r['check']['data']}:")
        lines.append(str(result.verification))
        for other in result.check.other_sizes:
            lines.append(f"  at input {other['shape']}: {'ok' if other['passed'] else 'FAILED'}")
    if result.precision_check is not None:
        lines.append(str(result.precision_check))
    if result.inputs.calibration is not None:
        kept = r["calibration"]["float_layers"]
        outputs = f"; {len(kept)} output layer(s) kept FP32" if kept else ""
        lines.append(f"calibrated on {result.inputs.calibration_source}{outputs}")
    lines.append(f"lint (TensorRT {result.lint.trt_major}): {result.lint.summary()}")
    times = ", ".join(f"{name} {seconds:.1f} s" for name, seconds in r["stages"].items())
    lines.append(f"stages: {times} (total {r['seconds']:.1f} s)")
    files = [r["onnx"], r["golden"], str(result.report_path)]
    lines.append("wrote " + ", ".join(f for f in files if f))
    if not result.ok:
        lines.append("FAILED")
    else:
        lines.append(
            "OK: verified against PyTorch" if result.verified else "exported, not verified (--no-check)"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    setup_logging(args)

    def command() -> int:
        from ._progress import StageProgress

        progress = StageProgress.for_terminal(args.quiet, args.json)
        with progress if progress is not None else contextlib.nullcontext():
            result = export_onnx(
                args.checkpoint,
                args.output,
                trust=args.trust,
                arch=args.arch,
                import_paths=[os.getcwd(), *args.import_paths],  # as with `python -m`: the user's project
                listener=progress,
                **_options(args),
            )
        print(json.dumps(result.report, indent=2, default=str) if args.json else _summary(result))
        if args.triton_repo and result.verified:  # only a verified model goes into a serving repository
            repo = write_triton_repository(result.onnx_path, args.triton_repo, overwrite=True)
            print(
                f"wrote Triton model {repo.config_path.parent}", file=sys.stderr if args.json else sys.stdout
            )
        return EXIT_OK if result.ok else EXIT_CHECK_FAILED

    return run(command, "scconv-export", args.verbose)


if __name__ == "__main__":
    sys.exit(main())
