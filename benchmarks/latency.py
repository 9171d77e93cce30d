"""Deployed latency of SCConv-ResNet-50 vs plain ResNet-50 in ONNX Runtime (CPU), from one interleaved run.

Candidates, exported with dynamic N/H/W and timed round-robin (one run of each per repetition, the
order rotating) so that load from other processes hits all of them alike:

* ``plain``  — ``resnet50``;
* ``naive``  — ``scconv_resnet50`` exported directly (the reference SCConv, no ``to_deploy``);
* ``deploy`` — ``scconv_resnet50`` through ``to_deploy`` (the export form, fast gates);
* ``deploy+shapes`` — the same ONNX file as ``scconv-export`` writes it: simplified by onnxslim and
  annotated with ONNX Runtime's symbolic shape inference (``onnxruntime.tools.symbolic_shape_infer``;
  dims stay dynamic). ORT's own inference cannot follow H and W through convolutions, and its
  blocked-layout (NCHWc) pass then cannot prove that the residual ``Add`` after each SCConv
  bottleneck adds equal shapes, so it leaves that ``Add`` and the ``Relu`` unfused; the annotation
  restores the fusion a plain ResNet gets;
* ``exact+shapes`` — ``to_deploy(gates="exact")`` (the default), written alike: the gates that
  decide ties as PyTorch rounds them;
* ``plain@pinned``, ``deploy@pinned`` — the dynamic files in sessions that pin N, H and W to the
  timed shape (``SessionOptions.add_free_dimension_override_by_name``): what a fixed-shape server
  gets, shape arithmetic folded away.

Reports median and p90 latency per batch size, ratios to ``plain`` (``@pinned`` rows: to
``plain@pinned``) and to ``naive``, ONNX node counts (whole graph and per SCConv block, both gate
forms) and export times, with the CPU's instruction-set flags and the load average before and after.
Table to stdout, JSON to ``benchmarks/results/latency.json``. Exports go to memory or a temporary
directory, never the repository.

    python benchmarks/latency.py                 # legacy exporter, batch 1 and 8
    python benchmarks/latency.py --quick         # smoke run: few repetitions, batch 1
    python benchmarks/latency.py --exporter dynamo
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import torch
from _ort import (
    EXPORTERS,
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

from scconv_deploy import ExportScConv, deploy_summary, to_deploy
from scconv_deploy._cpu import cpu_description
from scconv_deploy.models import create
from scconv_deploy.models.macs import count_macs
from scconv_deploy.pipeline.graph import simplify, simplify_and_annotate

#: candidate -> (exported model it runs, whether its session pins N/H/W, the plain row it is compared to)
CANDIDATES = {
    "plain": ("plain", False, "plain"),
    "naive": ("naive", False, "plain"),
    "deploy": ("deploy", False, "plain"),
    "deploy+shapes": ("deploy+shapes", False, "plain"),
    "exact+shapes": ("exact+shapes", False, "plain"),
    "plain@pinned": ("plain", True, "plain@pinned"),
    "deploy@pinned": ("deploy", True, "plain@pinned"),
}


def build(seed: int) -> dict[str, torch.nn.Module]:
    """The four models; ``naive``, ``deploy`` and ``exact`` share the same weights."""
    torch.manual_seed(seed)
    plain = create("resnet50").eval()
    torch.manual_seed(seed)
    scconv = create("scconv_resnet50").eval()
    return {
        "plain": plain,
        "naive": scconv,
        "deploy": to_deploy(scconv, gates="fast"),
        "exact": to_deploy(scconv, gates="exact"),
    }


def block_nodes(model: torch.nn.Module, exporter: str) -> list[dict[str, object]]:
    """ONNX node count of each distinct SCConv block shape of ``model``, exported on its own."""
    seen: dict[tuple[int, int], dict[str, object]] = {}
    shapes: dict[str, tuple[int, ...]] = {}
    hooks = [
        m.register_forward_pre_hook(lambda m, args, n=n: shapes.__setitem__(n, tuple(args[0].shape)))
        for n, m in model.named_modules()
        if isinstance(m, ExportScConv)
    ]
    with torch.no_grad():
        model(torch.zeros(1, 3, 224, 224))
    for h in hooks:
        h.remove()
    for name, shape in shapes.items():
        key = (shape[1], shape[2])
        if key in seen:
            seen[key]["blocks"] += 1
            continue
        block = model.get_submodule(name)
        data, _ = export_onnx(block, torch.randn(1, *shape[1:]), exporter)
        ops = op_counts(data)
        shipped = op_counts(simplify(onnx.load_from_string(data)))
        seen[key] = {
            "channels": shape[1],
            "size": shape[2],
            "blocks": 1,
            "nodes": sum(ops.values()),
            "nodes_without_constant": sum(v for k, v in ops.items() if k != "Constant"),
            "shipped_without_constant": sum(v for k, v in shipped.items() if k != "Constant"),
            "ops": dict(sorted(ops.items())),
        }
    return list(seen.values())


def as_shipped(model: bytes) -> bytes:
    """``model`` as ``scconv-export`` writes it: onnxslim, then every tensor's shape annotated by ORT's
    symbolic shape inference (dims stay dynamic)."""
    return simplify_and_annotate(onnx.load_from_string(model)).SerializeToString()


def pinned_options(shape: tuple[int, ...]) -> ort.SessionOptions:
    """The benchmark's session options with the free dims N, H, W pinned to ``shape``."""
    so = session_options()
    for dim, value in zip(("N", "H", "W"), (shape[0], shape[2], shape[3]), strict=True):
        so.add_free_dimension_override_by_name(dim, value)
    return so


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--exporter", default="legacy", choices=EXPORTERS)
    ap.add_argument("--batch", type=int, nargs="+", default=[1, 8])
    ap.add_argument("--repeats", type=int, default=25, help="timed runs per candidate and batch size")
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--quick", action="store_true", help="smoke run: 3 repetitions, 1 warm-up, batch 1")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", type=Path, default=Path(__file__).parent / "results" / "latency.json")
    args = ap.parse_args()
    if args.quick:
        args.repeats, args.warmup, args.batch = 3, 1, [1]

    load_before = list(os.getloadavg())
    print(f"CPU: {cpu_description()}; load average {load_before[0]:.2f}")
    models = build(args.seed)
    example = torch.randn(1, 3, 224, 224)
    exported, export_s, nodes = {}, {}, {}
    for name, module in models.items():
        data, seconds = export_onnx(module, example, args.exporter)
        exported[name], export_s[name] = data, seconds
        nodes[name] = sum(op_counts(data).values())
        print(f"exported {name:6} with {args.exporter}: {seconds:6.1f} s, {nodes[name]} nodes")
    exported["deploy+shapes"] = as_shipped(exported["deploy"])
    exported["exact+shapes"] = as_shipped(exported.pop("exact"))
    del nodes["exact"]
    for name in ("deploy+shapes", "exact+shapes"):
        nodes[name] = sum(op_counts(exported[name]).values())
    per_block = {form: block_nodes(models[form], args.exporter) for form in ("deploy", "exact")}
    so = session_options()
    dynamic = {name: make_session(data, so) for name, data in exported.items()}

    rows, results = [], {}
    start = time.perf_counter()
    for batch in args.batch:
        shape = (batch, 3, 224, 224)
        x = np.random.default_rng(args.seed).standard_normal(shape, dtype=np.float32)
        pinned = {name: make_session(exported[name], pinned_options(shape)) for name in ("plain", "deploy")}
        runs = {
            cand: runner((pinned if pin else dynamic)[model], x)
            for cand, (model, pin, _) in CANDIDATES.items()
        }
        timings = interleaved(runs, args.repeats, args.warmup)
        for cand, (model, _, baseline) in CANDIDATES.items():
            t = timings[cand]
            ratio = t.median / timings[baseline].median
            vs_naive = t.median / timings["naive"].median
            ratio_min = t.min / timings[baseline].min
            results.setdefault(cand, {})[f"batch{batch}"] = t.summary() | {
                "ratio_to_plain": round(ratio, 3),
                "ratio_to_naive": round(vs_naive, 3),
                "min_ratio_to_plain": round(ratio_min, 3),
            }
            rows.append(
                (
                    cand,
                    batch,
                    f"{t.median:.1f}",
                    f"{t.p90:.1f}",
                    f"{t.min:.1f}",
                    f"{ratio:.3f}",
                    f"{vs_naive:.3f}",
                    f"{ratio_min:.3f}",
                    nodes[model],
                )
            )
    bench_s = time.perf_counter() - start

    macs = {name: count_macs(m, (1, 3, 224, 224))["macs"] for name, m in models.items()}
    print(f"\nONNX Runtime CPU latency, 224x224, {args.repeats} interleaved runs per cell ({bench_s:.0f} s)")
    print(f"session options: {describe_options(so)} (@pinned: plus free dims N, H, W pinned)")
    print(
        f"GMACs: plain {macs['plain'] / 1e9:.2f}, scconv {macs['naive'] / 1e9:.2f} "
        f"(ratio {macs['naive'] / macs['plain']:.3f}); deployed convs {macs['deploy'] / 1e9:.2f} "
        f"(fused convs carry the zeros of the merged weights)"
    )
    print(
        table(
            rows,
            (
                "candidate",
                "batch",
                "median ms",
                "p90 ms",
                "min ms",
                "/plain",
                "/naive",
                "min/plain",
                "ONNX nodes",
            ),
        )
    )
    print("\nSCConv blocks of the deployed models, each exported on its own (fast gates | exact gates):")
    print(
        table(
            [
                (
                    f"C={fast['channels']}@{fast['size']}²",
                    fast["blocks"],
                    f"{fast['nodes']} | {exact['nodes']}",
                    f"{fast['nodes_without_constant']} | {exact['nodes_without_constant']}",
                    f"{fast['shipped_without_constant']} | {exact['shipped_without_constant']}",
                )
                for fast, exact in zip(per_block["deploy"], per_block["exact"], strict=True)
            ],
            ("block", "count", "ONNX nodes", "without Constant", "as written (onnxslim)"),
        )
    )
    print(f"{deploy_summary(models['deploy']).headline()}")
    load_after = list(os.getloadavg())
    print(f"CPU: {cpu_description()}; load average {load_before[0]:.2f} before, {load_after[0]:.2f} after")
    write_json(
        args.json,
        {
            "exporter": args.exporter,
            "input": [None, 3, 224, 224],
            "repeats": args.repeats,
            "warmup": args.warmup,
            "session_options": describe_options(so),
            "pinned_dims": ["N", "H", "W"],
            "environment": environment(),
            "cpu": cpu_description(),
            "load_average": {"before": load_before, "after": load_after},
            "gmacs": {k: round(v / 1e9, 3) for k, v in macs.items()},
            "export_s": {k: round(v, 2) for k, v in export_s.items()},
            "onnx_nodes": nodes,
            "scconv_block_nodes": per_block,
            "latency": results,
        },
    )


if __name__ == "__main__":
    main()
