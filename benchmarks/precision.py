"""FP32 / FP16 (gate path FP32) / naive FP16 / INT8 / INT8 for CPUs of a demo model, on held-out data.

    python benchmarks/precision.py [--variant seed|head] [--gates exact|fast]

Every artefact is verified against PyTorch on the whole held-out test split (359 images) with
PyTorch's gate decisions fed in (largest output error over its channel scale, flips beyond ties),
and run as deployed (gate flips, top-1 agreement, accuracy). INT8 is judged with Q/DQ semantics
(ONNX Runtime at graph optimisation "basic": what TensorRT computes, the same on every CPU); the
"ORT all" column is ONNX Runtime's own fused kernels on *this* CPU, whose flags are printed. INT8 is
calibrated on the validation split. ``--gates`` picks the hard gates' form (default: the export's
default, exact). Table to stdout, JSON to benchmarks/results/precision_<variant>[_fast].json.
"""

from __future__ import annotations

import argparse
import json
import platform
import tempfile
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort

from scconv_deploy._cpu import cpu_description, cpu_flags
from scconv_deploy.datasets import load_digits
from scconv_deploy.golden import Golden
from scconv_deploy.modules.gate_forms import DEFAULT_GATE_FORM, GATE_FORMS
from scconv_deploy.onnx_export import export_onnx
from scconv_deploy.ort_cpu import cpu_session
from scconv_deploy.precision import check_precision, emulate_fp16, to_fp16, to_int8, to_naive_fp16
from scconv_deploy.verify import VerificationResult, verify_onnx

ROOT = Path(__file__).resolve().parents[1]


def accuracy(model: onnx.ModelProto, x: np.ndarray, y: np.ndarray, optimization: str) -> float:
    session = cpu_session(model, optimization=optimization)
    return float((session.run(None, {"input": x})[0].argmax(1) == y).mean())


def row(label: str, result: VerificationResult, model: onnx.ModelProto | None, xt, yt, int8: bool) -> dict:
    forced, deployed = result.forced, result.deployed
    level = "basic" if int8 else "all"
    return {
        "artefact": label,
        "verdict": "passed" if result.passed else "FAILED",
        "forced_max_error_over_scale": max(o.max_scaled for o in forced.outputs) if forced else None,
        "forced_flips_beyond_ties": sum(sum(b.by_class[1:]) for b in forced.flips) if forced else None,
        "deployed_gate_flips": deployed.flipped,
        "deployed_flip_fraction": deployed.flipped / deployed.gates,
        "top1_agreement": deployed.top1_agreement,
        "accuracy": accuracy(model, xt, yt, level) if model is not None else None,
        "accuracy_ort_all_this_cpu": accuracy(model, xt, yt, "all") if model is not None and int8 else None,
        "megabytes": model.ByteSize() / 1e6 if model is not None else None,
    }


def _pct(v: float | None, digits: int = 2) -> str:
    return "-" if v is None else f"{v:.{digits}%}"


def print_table(rows: list[dict]) -> None:
    header = (
        "artefact",
        "verdict",
        "err/scale",
        "flips>tie",
        "deployed flips",
        "top-1",
        "acc",
        "ORT all",
        "MB",
    )
    widths = (24, 8, 10, 10, 22, 8, 8, 8, 6)
    print(
        "".join(
            h.ljust(w) if i == 0 else h.rjust(w) for i, (h, w) in enumerate(zip(header, widths, strict=True))
        )
    )
    for r in rows:
        err = "-" if r["forced_max_error_over_scale"] is None else f"{r['forced_max_error_over_scale']:.1e}"
        beyond = "-" if r["forced_flips_beyond_ties"] is None else str(r["forced_flips_beyond_ties"])
        flips = f"{r['deployed_gate_flips']:,} ({r['deployed_flip_fraction']:.3%})"
        mb = "-" if r["megabytes"] is None else f"{r['megabytes']:.2f}"
        cells = (
            r["artefact"],
            r["verdict"],
            err,
            beyond,
            flips,
            _pct(r["top1_agreement"]),
            _pct(r["accuracy"]),
            _pct(r["accuracy_ort_all_this_cpu"]),
            mb,
        )
        print(
            "".join(
                c.ljust(w) if i == 0 else c.rjust(w)
                for i, (c, w) in enumerate(zip(cells, widths, strict=True))
            )
        )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--variant", choices=["seed", "head"], default="seed")
    ap.add_argument("--gates", choices=GATE_FORMS, default=DEFAULT_GATE_FORM)
    args = ap.parse_args()
    ckpt = ROOT / "models" / f"scconv_cnn_digits_{args.variant}.pt"
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "demo.onnx"
        export_onnx(ckpt, out, check=False, gates=args.gates)
        props = {p.key: p.value for p in onnx.load(out).metadata_props}
        mean, std = json.loads(props["mean"])[0], json.loads(props["std"])[0]
        xt, yt = load_digits("test")
        xv, _ = load_digits("val")
        xt, xv = ((xt - mean) / std).astype(np.float32), ((xv - mean) / std).astype(np.float32)
        np.save(Path(tmp) / "test.npy", xt)
        export_onnx(ckpt, out, calib_data=Path(tmp) / "test.npy", check_samples=len(xt), gates=args.gates)
        fp32, golden = onnx.load(out), Golden.load(out.with_suffix(".golden.npz"))
        fp16_model = to_fp16(fp32)
        fp16 = check_precision(fp32, fp16_model, golden, "fp16")
        int8_model = to_int8(fp32, xv, cache_dir=tmp)
        int8 = check_precision(fp32, int8_model, golden, "int8")
        cpu_model = to_int8(fp32, xv, target="ort-cpu", cache_dir=tmp)
        int8_cpu = check_precision(fp32, cpu_model, golden, "int8-cpu")
        rows = [
            row("fp32", verify_onnx(fp32, golden), fp32, xt, yt, False),
            row("fp16 (gate path fp32)", fp16.artefact, fp16_model, xt, yt, False),
            row("  fp16 emulation", fp16.emulation, None, xt, yt, False),
            row(
                "naive fp16 (ORT)",
                verify_onnx(to_naive_fp16(fp32), golden, precision="fp16"),
                None,
                xt,
                yt,
                False,
            ),
            row(
                "  naive fp16 emulation",
                verify_onnx(emulate_fp16(fp32, keep_gate_path=False), golden, precision="fp16"),
                None,
                xt,
                yt,
                False,
            ),
            row("int8 (for TensorRT)", int8.artefact, int8_model, xt, yt, True),
            row("int8-cpu (7-bit weights)", int8_cpu.artefact, cpu_model, xt, yt, True),
        ]
    print(
        f"scconv_cnn_digits_{args.variant}, {args.gates} gates, held-out test split ({len(yt)} images); "
        f"{golden.samples} samples x {sum(d[0].size for d in golden.decisions):,} gates"
    )
    print(f"CPU: {cpu_description()}; ONNX Runtime {ort.__version__}")
    print_table(rows)
    for label, check in (("int8", int8), ("int8-cpu", int8_cpu)):
        for note in check.artefact.notes:
            print(f"{label}: {note}")
    suffix = "" if args.gates == DEFAULT_GATE_FORM else f"_{args.gates}"
    result = ROOT / "benchmarks" / "results" / f"precision_{args.variant}{suffix}.json"
    result.write_text(
        json.dumps(
            {
                "gates": args.gates,
                "rows": rows,
                "samples": golden.samples,
                "gates_per_run": fp16.artefact.forced.gates,
                "tolerances": {
                    k: v.tolerance.to_dict() for k, v in (("fp16", fp16.artefact), ("int8", int8.artefact))
                },
                "cpu": {"machine": platform.machine(), "flags": list(cpu_flags())},
                "platform": platform.platform(),
                "onnxruntime": ort.__version__,
            },
            indent=2,
        )
    )
    print(f"wrote {result}")


if __name__ == "__main__":
    main()
