"""Export time of scconv_resnet50 (export form) vs resnet50, same exporter, interleaved.

    python benchmarks/export_time.py [--exporter dynamo|legacy] [--repeats 2]

Prints a table and the ratio; writes benchmarks/results/export_time_<exporter>.json.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from pathlib import Path

import torch

from scconv_deploy import to_deploy
from scconv_deploy.models import create
from scconv_deploy.pipeline.graph import torch_export


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--exporter", choices=["dynamo", "legacy"], default="dynamo")
    ap.add_argument("--repeats", type=int, default=2)
    args = ap.parse_args()
    torch.manual_seed(0)
    candidates = {
        "resnet50": create("resnet50").eval(),
        "scconv_resnet50 (export form)": to_deploy(create("scconv_resnet50")),
    }
    x = torch.randn(2, 3, 224, 224)
    times: dict[str, list[float]] = {k: [] for k in candidates}
    nodes: dict[str, int] = {}
    for _ in range(args.repeats):
        for name, model in candidates.items():  # interleaved
            start = time.perf_counter()
            proto = torch_export(model, x, ["output"], args.exporter, "batch", 18)
            times[name].append(time.perf_counter() - start)
            nodes[name] = len(proto.graph.node)
    med = {k: statistics.median(v) for k, v in times.items()}
    base = med["resnet50"]
    print(f"export time, exporter={args.exporter}, torch {torch.__version__}, median of {args.repeats}")
    for name in candidates:
        print(f"  {name:32s} {med[name]:7.2f} s  {nodes[name]:5d} nodes  ratio {med[name] / base:.2f}x")
    out = Path(__file__).parent / "results" / f"export_time_{args.exporter}.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(
        json.dumps(
            {
                "exporter": args.exporter,
                "seconds": times,
                "median": med,
                "nodes": nodes,
                "ratio": med["scconv_resnet50 (export form)"] / base,
                "machine": platform.platform(),
                "torch": torch.__version__,
            },
            indent=2,
        )
    )
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
