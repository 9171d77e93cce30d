"""Per-op-type time breakdown of one SCConv block (or a whole network) in ONNX Runtime, from its profiler.

Exports the candidates, runs them round-robin under ``SessionOptions.enable_profiling`` (2 threads,
optimisation level ALL, so the op types are those after ORT's fusions: NCHWc convs, Reorder*,
FusedConv, ...) and sums, per op type, each node's median kernel time over the timed runs.
Profiling adds a little overhead per node; compare op types within one profile, and latencies
with ``block_latency.py``.

Forms: ``export`` (``to_deploy``, fast gates), ``exact`` (``to_deploy(gates="exact")``), ``naive``
(the reference exported as is), and ``conv3x3`` (one block) or ``plain`` (``--model``: the plain twin).

    python benchmarks/profile_block.py                               # SCConv block, C=64 at 56x56
    python benchmarks/profile_block.py --channels 256 --size 14 --forms export exact naive conv3x3
    python benchmarks/profile_block.py --model scconv_resnet50 --forms export naive
    python benchmarks/profile_block.py --model resnet50 --forms plain
    python benchmarks/profile_block.py --model scconv_resnet50 --forms exact plain --as-written

``--as-written`` profiles each graph as ``scconv-export`` writes it (onnxslim, then ORT's symbolic
shape annotation, which lets ORT fuse a residual ``Add`` + ``Relu`` into the convolution before it).
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
from collections import defaultdict
from pathlib import Path

import numpy as np
import onnx
import torch
from _ort import THREADS, export_onnx, make_session, op_counts, session_options, table

from scconv_deploy import VARIANTS, ScConv, to_deploy
from scconv_deploy._cpu import cpu_description
from scconv_deploy.models import create
from scconv_deploy.pipeline.graph import simplify_and_annotate

BLOCK_FORMS = ("export", "exact", "naive", "conv3x3")
MODEL_FORMS = ("export", "exact", "naive", "plain")
#: export-form candidates and the gate form ``to_deploy`` builds them with
DEPLOYED = {"export": "fast", "exact": "exact"}


def candidate(form: str, args: argparse.Namespace) -> torch.nn.Module:
    """The module to profile: an SCConv block / network in export form or as is, or its plain twin."""
    torch.manual_seed(0)
    if args.model:
        name = args.model.removeprefix("scconv_")
        if form == "plain":
            return create(name).eval()
        model = create(f"scconv_{name}", variant=args.variant).eval()
    else:
        if form == "conv3x3":
            return torch.nn.Conv2d(args.channels, args.channels, 3, padding=1, bias=False).eval()
        model = ScConv(args.channels, **VARIANTS[args.variant]).eval()
    return to_deploy(model, gates=DEPLOYED[form]) if form in DEPLOYED else model


def breakdown(events: list[dict], runs: int) -> dict[str, dict[str, float]]:
    """Kernel time (us, sum of per-node medians) and kernel count per run, per op type, from a trace."""
    # Only the node events inside the last `runs` model runs count (not the warm-up).
    spans = sorted((e["ts"], e["ts"] + e["dur"]) for e in events if e.get("name") == "model_run")[-runs:]
    start = spans[0][0]
    per_node: dict[tuple[str, str], list[float]] = defaultdict(list)
    for e in events:
        if e.get("cat") == "Node" and e["name"].endswith("_kernel_time") and e["ts"] >= start:
            per_node[(e["args"]["op_name"], e["name"])].append(e["dur"])
    # Median per node over the runs (robust to the odd pre-empted run), summed per op type.
    time_us: dict[str, float] = defaultdict(float)
    nodes: dict[str, int] = defaultdict(int)
    for (op, _), durations in per_node.items():
        time_us[op] += float(np.median(durations))
        nodes[op] += 1
    return {op: {"us": time_us[op], "nodes": nodes[op]} for op in time_us}


def profile(models: dict[str, bytes], x: np.ndarray, runs: int, warmup: int) -> dict[str, dict]:
    """Per-op-type breakdown of each model, the models run round-robin so that load hits all alike."""
    with tempfile.TemporaryDirectory(prefix="scconv_profile_") as tmp:
        sessions = {
            name: make_session(data, session_options(THREADS, profile_prefix=str(Path(tmp) / f"ort{i}")))
            for i, (name, data) in enumerate(models.items())
        }
        feeds = {name: {s.get_inputs()[0].name: x} for name, s in sessions.items()}
        names = list(sessions)
        for rep in range(warmup + runs):
            k = rep % len(names)
            for name in names[k:] + names[:k]:
                sessions[name].run(None, feeds[name])
        traces = {name: json.loads(Path(s.end_profiling()).read_text()) for name, s in sessions.items()}
    return {name: breakdown(events, runs) for name, events in traces.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--channels", type=int, default=64)
    ap.add_argument("--size", type=int, default=56, help="H = W of the block input")
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--model", help="profile a whole registry network (e.g. scconv_resnet50) instead")
    ap.add_argument("--variant", default="seed", choices=sorted(VARIANTS))
    ap.add_argument("--forms", nargs="+", default=None)
    ap.add_argument("--runs", type=int, default=50)
    ap.add_argument("--warmup", type=int, default=10)
    ap.add_argument("--exporter", default="legacy", choices=("legacy", "dynamo"))
    ap.add_argument("--json", type=Path, help="also write the breakdown as JSON")
    ap.add_argument(
        "--as-written", action="store_true", help="profile the graphs as scconv-export writes them"
    )
    args = ap.parse_args()
    forms = args.forms or (["export", "naive"] if args.model else list(BLOCK_FORMS))
    allowed = MODEL_FORMS if args.model else BLOCK_FORMS
    if bad := sorted(set(forms) - set(allowed)):
        ap.error(f"unknown form(s) {bad}; choose from {allowed}")
    shape = (args.batch, 3, 224, 224) if args.model else (args.batch, args.channels, args.size, args.size)
    x = torch.randn(shape, generator=torch.Generator().manual_seed(1))
    what = args.model or f"one SCConv block ({args.variant}), C={args.channels} at {args.size}x{args.size}"
    print(f"{what}, batch {args.batch}; ORT profiler, {THREADS} threads, level ALL, {args.runs} runs each")
    print(f"CPU: {cpu_description()}; load average {os.getloadavg()[0]:.2f}")
    models = {form: export_onnx(candidate(form, args), x, args.exporter)[0] for form in forms}
    if args.as_written:
        models = {
            k: simplify_and_annotate(onnx.load_from_string(v)).SerializeToString() for k, v in models.items()
        }
    results = {}
    for form, prof in profile(models, x.numpy(), args.runs, args.warmup).items():
        total = sum(p["us"] for p in prof.values())
        rows = [
            (op, f"{p['us']:.1f}", f"{100 * p['us'] / total:.1f}", f"{p['nodes']:g}")
            for op, p in sorted(prof.items(), key=lambda kv: -kv[1]["us"])
        ]
        onnx_nodes = sum(op_counts(models[form]).values())
        print(f"\n[{form}] kernel time {total / 1e3:.3f} ms per run; ONNX nodes {onnx_nodes}")
        print(table(rows, ("op type (after ORT fusions)", "us/run", "%", "kernels/run")))
        results[form] = {"total_us": total, "onnx_nodes": onnx_nodes, "ops": prof}
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        header = {"args": vars(args) | {"json": str(args.json)}, "cpu": cpu_description()}
        header["load_average"] = list(os.getloadavg())
        args.json.write_text(json.dumps({**header, **results}, indent=2))
        print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
