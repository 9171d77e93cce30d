"""Gate values of exported SCConv networks against PyTorch's, with decisions forced: the numbers behind
the FP32 gate-value tolerance (``scconv_deploy.verify.tolerance.Tolerance.gate_atol``).

Each case is exported as ``scconv-export`` writes it (dynamic batch, height and width; onnxslim),
golden data is made in PyTorch on random normal inputs of the given size, and the graph runs with
PyTorch's decisions fed in; per block, the mean and the largest ``|r - r_PyTorch|`` over the kept
gate values. Cases: the seed and HEAD demos, an untrained SCConv-ResNet-50 at two sizes, and the
seed demo with the seed norm's correction written as the previous release wrote it
(``Div(1/group_size, H·W)``, which onnxslim folds to 0: the error the check must catch).
Table to stdout, JSON to ``benchmarks/results/gate_values.json``.

    python benchmarks/gate_values.py
"""

from __future__ import annotations

import argparse
import json
import tempfile
from contextlib import nullcontext
from pathlib import Path
from unittest import mock

import numpy as np
import onnx
import torch
from _ort import table

from scconv_deploy import to_deploy
from scconv_deploy._cpu import cpu_description
from scconv_deploy.checkpoint import load_checkpoint, save_checkpoint
from scconv_deploy.models import create
from scconv_deploy.modules import export_form
from scconv_deploy.onnx_export import export_onnx
from scconv_deploy.tap import make_golden
from scconv_deploy.verify import verify_onnx

MODELS = Path(__file__).resolve().parents[1] / "models"


def previous_correction(x: torch.Tensor, group_size: int) -> torch.Tensor:
    """The seed correction as the previous release wrote it (onnxslim drops it from batch+hw graphs)."""
    hw = torch.tensor(x.shape[2] * x.shape[3], dtype=x.dtype)
    return torch.sqrt(1.0 - torch.div(torch.tensor(1.0 / group_size, dtype=x.dtype), hw))


def untrained_resnet(folder: Path) -> Path:
    torch.manual_seed(0)
    net = create("scconv_resnet50", num_classes=7).eval()
    return save_checkpoint(net, folder / "r50.pt", input_shape=[1, 3, 64, 64])


def measure(checkpoint: Path, shape: tuple[int, ...], folder: Path, previous: bool = False) -> list[dict]:
    """Per block: mean and largest gate-value error of the exported graph on inputs of ``shape``."""
    patch = mock.patch.object(export_form, "unbiased_correction", previous_correction)
    with patch if previous else nullcontext():
        export_onnx(checkpoint, folder / "m.onnx", dynamic="batch+hw", check=False)
    model = onnx.load(folder / "m.onnx")
    deployed = to_deploy(load_checkpoint(checkpoint).model.eval()).eval()
    x = np.random.default_rng(1).standard_normal(shape, dtype=np.float32)
    golden = make_golden(deployed, x, [o.name for o in model.graph.output])
    result = verify_onnx(model, golden, precision="fp32")
    return [
        {"block": spec.name, "mean": e.mean_abs, "max": e.max_abs}
        for spec, e in zip(golden.gates, result.forced.gate_errors, strict=True)
    ]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--json", type=Path, default=Path(__file__).parent / "results" / "gate_values.json")
    args = ap.parse_args()
    print(f"CPU: {cpu_description()}")
    records, rows = [], []
    with tempfile.TemporaryDirectory(prefix="scconv_gates_") as tmp:
        folder = Path(tmp)
        resnet = untrained_resnet(folder)
        cases = [
            ("seed demo", MODELS / "scconv_cnn_digits_seed.pt", (16, 1, 64, 64), False),
            ("HEAD demo", MODELS / "scconv_cnn_digits_head.pt", (16, 1, 64, 64), False),
            ("untrained SCConv-ResNet-50", resnet, (4, 3, 64, 64), False),
            ("untrained SCConv-ResNet-50", resnet, (4, 3, 96, 96), False),
            ("seed demo, previous correction", MODELS / "scconv_cnn_digits_seed.pt", (16, 1, 32, 32), True),
            ("seed demo, previous correction", MODELS / "scconv_cnn_digits_seed.pt", (16, 1, 64, 64), True),
        ]
        for name, checkpoint, shape, previous in cases:
            blocks = measure(checkpoint, shape, folder, previous)
            records.append({"case": name, "input": list(shape), "blocks": blocks})
            rows.append(
                (
                    name,
                    "x".join(map(str, shape[2:])),
                    f"{max(b['mean'] for b in blocks):.2g}",
                    f"{min(b['mean'] for b in blocks):.2g}",
                    f"{max(b['max'] for b in blocks):.2g}",
                )
            )
    print("|r - r_PyTorch| with decisions forced, per block (FP32, ONNX Runtime CPU)")
    print(table(rows, ("case", "input", "largest block mean", "smallest block mean", "largest single")))
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps({"cpu": cpu_description(), "cases": records}, indent=2) + "\n")
    print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
