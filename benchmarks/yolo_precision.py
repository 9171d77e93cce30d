"""FP16 and INT8 artefacts of Ultralytics YOLO networks with SCConv: verdict, output error, detections.

    python benchmarks/yolo_precision.py [--size 128] [--images 120] [--check 16]

Builds a user's Ultralytics project as the tests do (``tests/yolo_project.py``: YOLOv8n and YOLO11n
with the public SCConv pasted in, seed and HEAD variants, in the bottlenecks and as a yaml layer;
random weights with trained-looking statistics, not trained detectors; needs the dev-export extra)
and draws its images. Each ``best.pt`` is exported from the project folder with ``scconv-export``
as ``--precision fp16``, ``--precision int8`` (a detector's output layers FP32, the default) and
``--precision int8 --int8-outputs int8`` (everything quantized), checked on the first ``--check``
images (letterboxed as Ultralytics feeds them) and calibrated on the rest. Reported per artefact:
the check's verdict, the largest output error over its channel scale and the mean absolute error
(decisions forced), and the detections as deployed (recall and precision against PyTorch's).
Table to stdout, JSON to ``benchmarks/results/yolo_precision.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
from pathlib import Path

from yolo_export import SPECS, run_export, user_project  # puts tests/ (yolo_project) on the path

from scconv_deploy._cpu import cpu_description

ARTEFACTS = {  # label -> scconv-export options
    "fp16": ("--precision", "fp16"),
    "int8": ("--precision", "int8"),
    "int8, outputs quantized": ("--precision", "int8", "--int8-outputs", "int8"),
}


def measure(report: dict) -> dict:
    """Verdict, output error and detections of one export report's precision check."""
    check = report["precision"]
    output = check["artefact"]["forced"]["outputs"][0]
    detection = check["detection"]
    return {
        "passed": check["passed"],
        "max_error_over_scale": output["max_scaled"],
        "mean_abs_error": output["mean_abs"],
        "recall": detection["recall"],
        "precision": detection["precision"],
        "float_layers": len(report["calibration"]["float_layers"]) if report["calibration"] else None,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--images", type=int, default=120, help="drawn images: the check's, then calibration's")
    ap.add_argument("--check", type=int, default=16, help="check samples (the first images)")
    ap.add_argument("--json", type=Path, default=Path(__file__).parent / "results" / "yolo_precision.json")
    args = ap.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        project, images = user_project(Path(tmp), args.images)
        for spec in SPECS:
            for label, options in ARTEFACTS.items():
                tag = label.replace(", ", "-").replace(" ", "-")
                run = run_export(
                    project,
                    spec,
                    args.size,
                    tag,
                    ("--calib-data", str(images), "--check-samples", str(args.check), *options),
                )
                row = {"network": spec.stem, "artefact": label, "exit": run["exit"]}
                row |= measure(run["report"]) if run["report"] else {"error": run["error"]}
                rows.append(row)
                print(json.dumps(row), flush=True)
    calibration = args.images - args.check
    size = f"{args.size}²"
    print(f"\n{cpu_description()}; {args.check} check images at {size}, calibration on {calibration} others")
    print("| network | artefact | check | err / scale | mean abs error | recall / precision |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        if "error" in r:
            print(f"| {r['network']} | {r['artefact']} | exit {r['exit']}: {r['error']} | | | |")
            continue
        verdict = "passed" if r["passed"] else "**failed**"
        detections = f"{r['recall']:.1%} / {r['precision']:.1%}"
        print(
            f"| {r['network']} | {r['artefact']} | {verdict} | {r['max_error_over_scale']:.2f} | "
            f"{r['mean_abs_error']:.3f} | {detections} |"
        )
    args.json.parent.mkdir(parents=True, exist_ok=True)
    result = {
        "cpu": cpu_description(),
        "load_average": list(os.getloadavg()),
        "args": vars(args) | {"json": str(args.json)},
    }
    args.json.write_text(json.dumps({**result, "rows": rows}, indent=2) + "\n")
    print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
