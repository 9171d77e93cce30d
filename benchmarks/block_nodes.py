"""ONNX node count and export time of one SCConv block, per variant, exporter and form.

Forms: ``public`` (a re-statement of the public SCConv code, as users paste it), ``reference``
(scconv_deploy.ScConv exported as is), ``export-form`` (after scconv_deploy.to_deploy: fast gates)
and ``exact-gates`` (``to_deploy(gates="exact")``).
``shipped`` counts the nodes (without ``Constant``) after onnxslim, as ``scconv-export`` writes the
graph. Prints a table and writes JSON.

    python benchmarks/block_nodes.py [--channels 64] [--json benchmarks/results/block_nodes.json]
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import platform
import sys
import time
import warnings
from collections import Counter
from pathlib import Path

import onnx
import torch
from torch.export import Dim

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from scconv_deploy import VARIANTS, ScConv, to_deploy
from scconv_deploy.pipeline.graph import simplify

from public_scconv import HeadScConv, SeedScConv

COMPARISONS = {"Where", "Greater", "GreaterOrEqual", "Less", "LessOrEqual", "Equal", "Not"}


def export(module: torch.nn.Module, x: torch.Tensor, exporter: str) -> tuple[onnx.ModelProto, float]:
    start = time.perf_counter()
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        if exporter == "dynamo":
            dims = {0: Dim("N"), 2: Dim("H", min=2), 3: Dim("W", min=2)}
            prog = torch.onnx.export(
                module, (x,), dynamo=True, dynamic_shapes={"x": dims}, external_data=False
            )
            model = prog.model_proto
        else:
            buf = io.BytesIO()
            axes = {"x": {0: "N", 2: "H", 3: "W"}}
            torch.onnx.export(module, (x,), buf, dynamo=False, input_names=["x"], dynamic_axes=axes)
            model = onnx.load_from_string(buf.getvalue())
    return model, time.perf_counter() - start


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--channels", type=int, default=64)
    ap.add_argument("--json", type=Path, default=Path("benchmarks/results/block_nodes.json"))
    args = ap.parse_args()
    c = args.channels
    x = torch.randn(1, c, 56, 56)
    public = {"seed": SeedScConv(c), "head": HeadScConv(c)}
    rows = []
    for variant in ("seed", "head"):
        reference = ScConv(c, **VARIANTS[variant]).eval()
        reference.load_state_dict(public[variant].state_dict())
        forms = {
            "public": public[variant].eval(),
            "reference": reference,
            "export-form": to_deploy(reference, gates="fast"),
            "exact-gates": to_deploy(reference, gates="exact"),
        }
        for exporter in ("legacy", "dynamo"):
            for form, module in forms.items():
                model, seconds = export(module, x, exporter)
                ops = Counter(n.op_type for n in model.graph.node)
                shipped = Counter(n.op_type for n in simplify(model).graph.node)
                rows.append(
                    {
                        "variant": variant,
                        "exporter": exporter,
                        "form": form,
                        "nodes": sum(ops.values()),
                        "nodes_without_constant": sum(v for k, v in ops.items() if k != "Constant"),
                        "shipped_nodes": sum(v for k, v in shipped.items() if k != "Constant"),
                        "comparison_ops": sum(v for k, v in ops.items() if k in COMPARISONS),
                        "casts": ops.get("Cast", 0),
                        "export_s": round(seconds, 3),
                        "ops": dict(sorted(ops.items())),
                    }
                )
    header = (
        f"{'variant':8}{'exporter':9}{'form':13}{'nodes':>7}{'non-Constant':>14}{'shipped':>9}"
        f"{'compare ops':>13}{'Cast':>6}{'export s':>10}"
    )
    print(f"One SCConv block, C={c} (torch {torch.__version__}, onnx {onnx.__version__})")
    print(header)
    for r in rows:
        print(
            f"{r['variant']:8}{r['exporter']:9}{r['form']:13}{r['nodes']:>7}{r['nodes_without_constant']:>14}"
            f"{r['shipped_nodes']:>9}{r['comparison_ops']:>13}{r['casts']:>6}{r['export_s']:>10.2f}"
        )
    args.json.parent.mkdir(parents=True, exist_ok=True)
    meta = {
        "channels": c,
        "torch": torch.__version__,
        "onnx": onnx.__version__,
        "machine": platform.platform(),
    }
    args.json.write_text(json.dumps({"meta": meta, "rows": rows}, indent=2))
    print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
