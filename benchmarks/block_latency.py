"""One SCConv block (export form, and naive) vs the 3x3 conv it replaces, at ResNet-50's stage shapes.

For each stage shape (C=64 at 56², 128 at 28², 256 at 14², 512 at 7², batch 1) three candidates
are exported with dynamic N/H/W and timed round-robin in ONNX Runtime (CPU, 2 threads, level ALL):

* ``conv3x3`` — ``nn.Conv2d(C, C, 3, padding=1, bias=False)``, what a plain ResNet-50 runs there;
* ``naive``   — the reference ``ScConv(C)`` exported as is;
* ``export``  — ``to_deploy(ScConv(C))``.

Table to stdout (median, p90, ratio to the conv, and the MAC ratio for comparison), JSON to
``benchmarks/results/block_latency.json``.

    python benchmarks/block_latency.py [--variant seed|head] [--repeats 200] [--quick]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch
from _ort import (
    describe_options,
    environment,
    export_onnx,
    interleaved,
    make_session,
    op_counts,
    runner,
    session_options,
    table,
    write_json,
)

from scconv_deploy import VARIANTS, ScConv, to_deploy
from scconv_deploy.models.macs import count_macs

STAGES = ((64, 56), (128, 28), (256, 14), (512, 7))


def candidates(channels: int, variant: str, seed: int) -> dict[str, torch.nn.Module]:
    torch.manual_seed(seed)
    block = ScConv(channels, **VARIANTS[variant]).eval()
    conv = torch.nn.Conv2d(channels, channels, 3, padding=1, bias=False).eval()
    return {"conv3x3": conv, "naive": block, "export": to_deploy(block)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--variant", default="seed", choices=sorted(VARIANTS))
    ap.add_argument("--exporter", default="legacy", choices=("legacy", "dynamo"))
    ap.add_argument("--repeats", type=int, default=200, help="timed runs per candidate and shape")
    ap.add_argument("--warmup", type=int, default=20)
    ap.add_argument("--quick", action="store_true", help="smoke run: 20 repetitions, 3 warm-up")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", type=Path, default=Path(__file__).parent / "results" / "block_latency.json")
    args = ap.parse_args()
    if args.quick:
        args.repeats, args.warmup = 20, 3

    so = session_options()
    rows, results = [], []
    start = time.perf_counter()
    for channels, size in STAGES:
        shape = (1, channels, size, size)
        modules = candidates(channels, args.variant, args.seed)
        x = torch.randn(shape, generator=torch.Generator().manual_seed(args.seed))
        exported = {name: export_onnx(m, x, args.exporter)[0] for name, m in modules.items()}
        runs = {name: runner(make_session(data, so), x.numpy()) for name, data in exported.items()}
        timings = interleaved(runs, args.repeats, args.warmup)
        conv_ms, conv_min = timings["conv3x3"].median, timings["conv3x3"].min
        macs = {name: count_macs(modules[name], shape)["macs"] for name in ("conv3x3", "naive")}
        for name, t in timings.items():
            nodes = sum(op_counts(exported[name]).values())
            ratio, ratio_min = t.median / conv_ms, t.min / conv_min
            mac_ratio = macs["naive"] / macs["conv3x3"] if name != "conv3x3" else 1.0
            rows.append(
                (
                    f"C={channels}@{size}²",
                    name,
                    f"{t.median * 1e3:.0f}",
                    f"{t.p90 * 1e3:.0f}",
                    f"{t.min * 1e3:.0f}",
                    f"{ratio:.3f}",
                    f"{ratio_min:.3f}",
                    f"{mac_ratio:.3f}",
                    nodes,
                )
            )
            results.append(
                {
                    "channels": channels,
                    "size": size,
                    "candidate": name,
                    **t.summary(),
                    "ratio_to_conv3x3": round(ratio, 3),
                    "min_ratio_to_conv3x3": round(ratio_min, 3),
                    "mac_ratio_to_conv3x3": round(mac_ratio, 3),
                    "onnx_nodes": nodes,
                }
            )
    bench_s = time.perf_counter() - start
    print(
        f"One block ({args.variant}) vs a 3x3 conv, batch 1, {args.repeats} interleaved runs, {bench_s:.0f} s"
    )
    print(f"session options: {describe_options(so)}")
    print(
        table(
            rows,
            (
                "shape",
                "candidate",
                "median us",
                "p90 us",
                "min us",
                "/conv3x3",
                "min/conv3x3",
                "MACs/conv3x3",
                "ONNX nodes",
            ),
        )
    )
    write_json(
        args.json,
        {
            "variant": args.variant,
            "exporter": args.exporter,
            "repeats": args.repeats,
            "warmup": args.warmup,
            "session_options": describe_options(so),
            "environment": environment(),
            "rows": results,
        },
    )


if __name__ == "__main__":
    main()
