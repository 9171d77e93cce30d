"""Wall time of ``scconv-export best.pt --onnx --trust`` on Ultralytics YOLO checkpoints with SCConv.

    python benchmarks/yolo_export.py [--size 640] [--precision fp32 fp16]

Builds a user's Ultralytics project as the tests do (``tests/yolo_project.py``: the public SCConv
code pasted into YOLOv8n and YOLO11n, seed and HEAD variants, in the bottlenecks and as its own
yaml layer; ``best.pt`` saved by Ultralytics' trainer code; needs the dev-export extra), then runs
the console script from the project folder, in a fresh process with default settings, as a user
does: ``scconv-export runs/<name>/weights/best.pt --onnx --trust --input-shape 1,3,S,S``
(``--precision fp16`` adds the FP16 artefact and its checks, on the project's drawn images).
Reports the wall time of each command, the report's stage times, the check's sample count and the
verdict, with the CPU's instruction-set flags and the load average before and after. Table to
stdout, JSON to ``benchmarks/results/yolo_export.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from scconv_deploy._cpu import cpu_description  # noqa: E402

from yolo_project import Spec, YoloProject, ultralytics_env, write_images  # noqa: E402

SPECS = (
    Spec("v8", "seed", "bottleneck"),
    Spec("v8", "head", "layer"),
    Spec("11", "head", "bottleneck"),
    Spec("11", "seed", "layer"),
)
TARGET_S = 60.0  # the budget for export plus check with default settings, 2 cores


def user_project(folder: Path, images: int) -> tuple[YoloProject, Path]:
    """A user's Ultralytics project in ``folder`` (networks built on request) and a folder of ``images``
    drawn images, with Ultralytics' settings kept inside ``folder``."""
    ultralytics_env(folder / "ultralytics_config")
    (folder / "project").mkdir()
    return YoloProject(folder / "project"), write_images(folder / "images", images)


def run_export(project: YoloProject, spec: Spec, size: int, tag: str, options: tuple[str, ...] = ()) -> dict:
    """``scconv-export best.pt --onnx --trust --input-shape 1,3,S,S OPTIONS`` in a fresh process from the
    project folder (output ``exports/<network>-<size>-<tag>.onnx``): its wall time and report."""
    weights = project.trained(spec).best.relative_to(project.root)
    out = project.root / "exports" / f"{spec.stem}-{size}-{tag}.onnx"
    out.parent.mkdir(exist_ok=True)
    args = [
        str(weights),
        "--onnx",
        "--trust",
        "--input-shape",
        f"1,3,{size},{size}",
        "-o",
        str(out),
        *options,
    ]
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}  # the project folder alone imports
    script = Path(sys.executable).with_name("scconv-export")
    start = time.perf_counter()
    done = subprocess.run([str(script), *args], cwd=project.root, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - start
    written = out.with_suffix(".report.json")  # exit 0 or 1 (a failed check) leave one; a crash does not
    report = json.loads(written.read_text()) if written.is_file() else {}
    return {
        "network": spec.stem,
        "size": size,
        "precision": tag,
        "exit": done.returncode,
        "wall_s": round(wall, 1),
        "check_samples": (report.get("check") or {}).get("samples"),
        "verified": report.get("verified"),
        "stages_s": report.get("stages"),
        "report": report,
        "error": done.stderr.strip().splitlines()[-1] if not report and done.stderr else None,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=640)
    ap.add_argument("--precision", nargs="+", default=["fp32", "fp16"], choices=["fp32", "fp16", "int8"])
    ap.add_argument("--json", type=Path, default=Path(__file__).parent / "results" / "yolo_export.json")
    args = ap.parse_args()

    load_before = os.getloadavg()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        project, images = user_project(Path(tmp), 32)
        for spec in SPECS:
            for precision in args.precision:
                options = (
                    () if precision == "fp32" else ("--precision", precision, "--calib-data", str(images))
                )
                rows.append(run_export(project, spec, args.size, precision, options))
                r = rows[-1]
                print(
                    f"{r['network']:<24} {r['precision']:<5} exit {r['exit']}  {r['wall_s']:6.1f} s  "
                    f"samples {r['check_samples']}  verified {r['verified']}"
                    + (f"  {r['error']}" if r["error"] else ""),
                    flush=True,
                )
    result = {
        "cpu": cpu_description(),
        "cpu_count": os.cpu_count(),
        "load_average": {"before": load_before, "after": os.getloadavg()},
        "target_s": TARGET_S,
        "runs": [{k: v for k, v in r.items() if k != "report"} for r in rows],
    }
    print(f"\n{cpu_description()}; load average before {load_before[0]:.2f}, after {os.getloadavg()[0]:.2f}")
    columns = ["network", "precision", f"{args.size}² wall (s)", f"within {TARGET_S:.0f} s"]
    print("| " + " | ".join([*columns, "check samples", "verified", "slowest stages"]) + " |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        stages = sorted((r["stages_s"] or {}).items(), key=lambda kv: -kv[1])[:3]
        slow = ", ".join(f"{k} {v:.1f}" for k, v in stages)
        within = "yes" if r["exit"] == 0 and r["wall_s"] <= TARGET_S else "no"
        cells = [
            r["network"],
            r["precision"],
            f"{r['wall_s']:.1f}",
            within,
            r["check_samples"],
            r["verified"],
            slow,
        ]
        print("| " + " | ".join(map(str, cells)) + " |")
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
