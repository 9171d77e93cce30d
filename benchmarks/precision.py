"""FP32 / FP16 (gate path FP32) / naive FP16 / INT8 of a demo model on its held-out data.

    python benchmarks/precision.py [--variant seed|head]

Gate flips (ONNX Runtime and FP16 emulation), block-local flips with margin > 1e-3, top-1
agreement with FP32, held-out accuracy, file size. Table to stdout, JSON to benchmarks/results/.
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

from scconv_deploy.datasets import load_digits
from scconv_deploy.golden import Golden
from scconv_deploy.onnx_export import export_onnx
from scconv_deploy.precision import check_precision, to_fp16, to_int8, to_naive_fp16

ROOT = Path(__file__).resolve().parents[1]


def accuracy(model: onnx.ModelProto, x: np.ndarray, y: np.ndarray) -> float:
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return float((session.run(None, {"input": x})[0].argmax(1) == y).mean())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--variant", choices=["seed", "head"], default="seed")
    args = ap.parse_args()
    ckpt = ROOT / "models" / f"scconv_cnn_digits_{args.variant}.pt"
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "demo.onnx"
        export_onnx(ckpt, out, exporter="legacy", check=False)
        props = {p.key: p.value for p in onnx.load(out).metadata_props}
        mean, std = json.loads(props["mean"])[0], json.loads(props["std"])[0]
        xt, yt = load_digits("test")
        xv, _ = load_digits("val")
        xt, xv = ((xt - mean) / std).astype(np.float32), ((xv - mean) / std).astype(np.float32)
        np.save(Path(tmp) / "test.npy", xt)
        export_onnx(ckpt, out, exporter="legacy", calib_data=Path(tmp) / "test.npy", check_samples=len(xt))
        fp32, golden = onnx.load(out), Golden.load(out.with_suffix(".golden.npz"))
        fp16 = check_precision(fp32, to_fp16(fp32), golden, "fp16")
        int8_model = to_int8(fp32, xv, cache_dir=tmp)
        int8 = check_precision(fp32, int8_model, golden, "int8")
    rows = [
        ("fp32", None, fp32),
        ("fp16 (gate path fp32)", fp16.artefact, to_fp16(fp32)),
        ("  emulated", fp16.emulation, None),
        ("naive fp16", fp16.naive[0], to_naive_fp16(fp32)),
        ("  emulated", fp16.naive[1], None),
        ("int8 (calibrated on val)", int8.artefact, int8_model),
    ]
    table = []
    print(f"scconv_cnn_digits_{args.variant}, held-out test split ({len(yt)} images)")
    header = ("artefact", "gate flips", "flip %", "local>1e-3", "top-1 agr", "accuracy", "MB")
    widths = (26, 12, 9, 11, 10, 10, 7)
    print(
        header[0].ljust(widths[0]) + "".join(h.rjust(w) for h, w in zip(header[1:], widths[1:], strict=True))
    )
    for label, view, model in rows:
        acc = accuracy(model, xt, yt) if model is not None else None
        row = {
            "artefact": label.strip(),
            "gate_flips": view.flipped if view else 0,
            "flip_fraction": view.flip_fraction if view else 0.0,
            "block_local_flips_above_1e-3": view.flipped_above_margin if view else 0,
            "top1_agreement": view.top1_agreement if view else 1.0,
            "accuracy": acc,
            "megabytes": len(model.SerializeToString()) / 1e6 if model is not None else None,
        }
        table.append(row)
        acc_s = f"{acc:.2%}" if acc is not None else "-"
        mb = f"{row['megabytes']:.2f}" if row["megabytes"] else "-"
        print(
            f"{label:26s}{row['gate_flips']:12d}{row['flip_fraction']:9.3%}{row['block_local_flips_above_1e-3']:11d}"
            f"{row['top1_agreement']:10.2%}{acc_s:>10s}{mb:>7s}"
        )
    out = ROOT / "benchmarks" / "results" / f"precision_{args.variant}.json"
    out.write_text(
        json.dumps(
            {
                "rows": table,
                "gates_per_run": fp16.artefact.gates,
                "machine": platform.platform(),
                "onnxruntime": ort.__version__,
            },
            indent=2,
        )
    )
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
