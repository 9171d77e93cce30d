"""INT8 artefacts on CPUs with and without int8 dot-product instructions: verdict and accuracy.

    python benchmarks/int8_cpus.py [--variant seed|head] [--no-emulation]

Exports the demo model as FP32, as INT8 for TensorRT (full 8-bit weights) and as INT8 for ONNX
Runtime on CPUs (``int8-cpu``, 7-bit weights), calibrated on the validation split and checked on
the test split. Then, on this CPU and — where ``qemu-x86_64`` is installed (Debian: qemu-user) —
on an emulated Haswell (AVX2, no AVX-512, no VNNI), it runs ``scconv-verify`` on each artefact and
measures held-out accuracy with ONNX Runtime at graph optimisation "basic" (Q/DQ semantics: what
TensorRT computes) and "all" (ONNX Runtime's own fused integer kernels). Emulation is slow
(minutes) but runs the real kernel dispatch: MLAS picks its kernels by CPUID, which QEMU emulates.
Table to stdout, JSON to benchmarks/results/int8_cpus_<variant>.json.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
ARTEFACTS = ("fp32", "int8", "int8-cpu")
EMULATED_CPU = "Haswell"  # AVX2 and FMA, no AVX-512, no VNNI


def prepare(folder: Path, variant: str) -> None:
    """The three artefacts with golden data, and the held-out test split with labels."""
    import onnx

    from scconv_deploy.datasets import load_digits
    from scconv_deploy.onnx_export import export_onnx

    ckpt = ROOT / "models" / f"scconv_cnn_digits_{variant}.pt"
    export_onnx(ckpt, folder / "probe.onnx", check=False)
    props = {p.key: p.value for p in onnx.load(folder / "probe.onnx").metadata_props}
    mean, std = json.loads(props["mean"])[0], json.loads(props["std"])[0]
    for split in ("val", "test"):
        x, y = load_digits(split)
        np.save(folder / f"{split}.npy", ((x - mean) / std).astype(np.float32))
        np.save(folder / f"{split}_labels.npy", y)
    for precision in ARTEFACTS:
        result = export_onnx(
            ckpt,
            folder / f"{precision}.onnx",
            precision=precision,
            calib_data=folder / "val.npy",
            check_data=folder / "test.npy",
            check_samples=64,
            calib_cache=folder / "cache",
        )
        if not result.ok:
            raise SystemExit(f"{precision} export failed its check: {result.report['precision']}")


def measure(folder: Path) -> dict:
    """On the CPU this process runs on: scconv-verify's verdict and accuracy per artefact and level."""
    import onnx

    from scconv_deploy._cpu import cpu_description
    from scconv_deploy.ort_cpu import cpu_session
    from scconv_deploy.verify import verify_file

    x, y = np.load(folder / "test.npy"), np.load(folder / "test_labels.npy")
    rows = {}
    for name in ARTEFACTS:
        path = folder / f"{name}.onnx"
        result, _ = verify_file(path)
        model = onnx.load(path)
        accuracy = {
            level: float(
                (cpu_session(model, optimization=level).run(None, {"input": x})[0].argmax(1) == y).mean()
            )
            for level in ("basic", "all")
        }
        rows[name] = {"verified": result.passed, "notes": result.notes, "accuracy": accuracy}
    return {"cpu": cpu_description(), "artefacts": rows}


def _run_measure(folder: Path, emulate: bool) -> dict:
    prefix = ["qemu-x86_64", "-cpu", EMULATED_CPU] if emulate else []
    cmd = [*prefix, sys.executable, __file__, "--measure", str(folder)]
    done = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"measuring failed ({' '.join(cmd[:4])}…):\n{done.stderr[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--variant", choices=["seed", "head"], default="seed")
    ap.add_argument("--no-emulation", action="store_true", help="measure this CPU only")
    ap.add_argument("--measure", metavar="DIR", help=argparse.SUPPRESS)  # internal: one CPU's measurements
    args = ap.parse_args()
    if args.measure:
        print(json.dumps(measure(Path(args.measure))))
        return
    cpus = [False]
    if not args.no_emulation:
        if shutil.which("qemu-x86_64"):
            cpus.append(True)
        else:
            print("qemu-x86_64 not found (Debian: apt install qemu-user): measuring this CPU only")
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        prepare(folder, args.variant)
        results = [dict(_run_measure(folder, emulate), emulated=emulate) for emulate in cpus]
    print(f"scconv_cnn_digits_{args.variant}: held-out accuracy (359 test images), INT8 calibrated on val")
    for r in results:
        print(("emulated " + EMULATED_CPU if r["emulated"] else "this CPU") + f": {r['cpu']}")
        print(f"  {'artefact':10s}{'verified':>9s}{'Q/DQ (basic)':>14s}{'ORT all':>9s}")
        for name, row in r["artefacts"].items():
            acc = row["accuracy"]
            verified = "yes" if row["verified"] else "NO"
            print(f"  {name:10s}{verified:>9s}{acc['basic']:>14.2%}{acc['all']:>9.2%}")
            for note in row["notes"]:
                print(f"    note: {note}")
    out = ROOT / "benchmarks" / "results" / f"int8_cpus_{args.variant}.json"
    out.write_text(json.dumps({"variant": args.variant, "results": results}, indent=2))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
