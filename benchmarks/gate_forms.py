"""What the fast gates decide differently from the exact ones, on the demo models' real test digits.

For each demo model (``models/scconv_cnn_digits_{seed,head}.pt``) and its held-out test split:

* **block-local, fast vs exact** — every SRU fed the exact form's input for that block, its
  decisions in both forms compared: how many differ, and the largest ``|r - t|`` and ``|z|`` among
  them (ties: ``r == t`` in float32);
* **network, fast vs the original** — outputs of ``to_deploy(gates="fast")`` against the network
  as trained (which decides ties as PyTorch's sigmoid rounds them): largest difference, top-1
  agreement;
* **ONNX Runtime vs PyTorch, per form** — the export form with its masks as outputs (legacy
  exporter), run in ONNX Runtime on the same digits: gate decisions that differ from PyTorch's and
  samples that took another decision.

Table to stdout, JSON to ``benchmarks/results/gate_forms.json``. No timing: any load will do.

    python benchmarks/gate_forms.py
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

import numpy as np
import torch
from _ort import export_onnx, make_session, table

from scconv_deploy._cpu import cpu_description
from scconv_deploy.checkpoint import load_checkpoint
from scconv_deploy.convert import to_deploy
from scconv_deploy.datasets import load_digits
from scconv_deploy.modules.export_form import ExportSRU
from scconv_deploy.modules.gate_forms import GATE_FORMS, float32
from scconv_deploy.tap import GateTap

ROOT = Path(__file__).resolve().parents[1]


def digits(ckpt) -> torch.Tensor:
    images, _ = load_digits("test")
    mean, std = np.float32(ckpt.meta["mean"][0]), np.float32(ckpt.meta["std"][0])
    return torch.from_numpy(((images - mean) / std).astype(np.float32))


def block_local(exact: torch.nn.Module, x: torch.Tensor) -> list[dict[str, object]]:
    """Each SRU on the exact form's input for it: decisions of both forms compared."""
    inputs: dict[str, torch.Tensor] = {}
    hooks = [
        m.register_forward_pre_hook(lambda m, a, name=name: inputs.__setitem__(name, a[0]))
        for name, m in exact.named_modules()
        if isinstance(m, ExportSRU)
    ]
    with torch.no_grad():
        exact(x)
    for h in hooks:
        h.remove()
    rows = []
    for name, xin in inputs.items():
        sru, t = exact.get_submodule(name), float32(exact.get_submodule(name).gate_treshold)
        with torch.no_grad():
            r, z = sru.gate_values(xin), sru.gate_input(xin)
            takes_exact = r >= t if sru.gate == "hard" else r > t
            fast = sru.with_gates("fast")
            takes_fast = fast.decision_margin(xin) <= 0 if fast.gates == "fast" else takes_exact
        differ = takes_exact != takes_fast
        rows.append(
            {
                "block": name,
                "gates": differ.numel(),
                "differ": int(differ.sum()),
                "largest_margin": float((r[differ] - t).abs().max()) if differ.any() else 0.0,
                "largest_abs_z": float(z[differ].abs().max()) if differ.any() else 0.0,
            }
        )
    return rows


def ort_vs_pytorch(deployed: torch.nn.Module, x: torch.Tensor) -> dict[str, int]:
    """Mask decisions of the export form in ONNX Runtime against PyTorch's, as deployed."""
    tap = GateTap(deployed, masks=True).eval()
    n = len(tap.specs)
    data, _ = export_onnx(tap, x[:2])
    session = make_session(data)
    got = session.run(None, {session.get_inputs()[0].name: x.numpy()})[1 + n :]
    with torch.no_grad():
        want = [m.numpy() for m in tap(x)[1 + n :]]
    differ = [(g > 0.5) != (w > 0.5) for g, w in zip(got, want, strict=True)]
    per_sample = np.stack([d.reshape(len(x), -1).any(axis=1) for d in differ], axis=1).any(axis=1)
    return {"gates": sum(d.size for d in differ), "differ": int(sum(d.sum() for d in differ))} | {
        "samples_diverged": int(per_sample.sum())
    }


def measure(variant: str) -> dict[str, object]:
    ckpt = load_checkpoint(ROOT / "models" / f"scconv_cnn_digits_{variant}.pt")
    model, x = ckpt.model.eval(), digits(ckpt)
    forms = {gates: to_deploy(model, gates=gates) for gates in GATE_FORMS}
    with torch.no_grad():
        original, fast = model(x), forms["fast"](x)
    return {
        "samples": len(x),
        "block_local_fast_vs_exact": block_local(forms["exact"], x),
        "fast_vs_original": {
            "max_abs": float((fast - original).abs().max()),
            "top1_agreement": float((fast.argmax(1) == original.argmax(1)).float().mean()),
        },
        "ort_vs_pytorch": {gates: ort_vs_pytorch(m, x) for gates, m in forms.items()},
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--json", type=Path, default=Path(__file__).parent / "results" / "gate_forms.json")
    args = ap.parse_args()
    results = {variant: measure(variant) for variant in ("seed", "head")}
    rows = []
    for variant, r in results.items():
        local = r["block_local_fast_vs_exact"]
        differ, gates = sum(b["differ"] for b in local), sum(b["gates"] for b in local)
        largest = max(b["largest_margin"] for b in local)
        ort = r["ort_vs_pytorch"]
        rows.append(
            (
                variant,
                f"{differ}/{gates}",
                f"{largest:.3g}",
                f"{r['fast_vs_original']['max_abs']:.3g}",
                f"{r['fast_vs_original']['top1_agreement']:.2%}",
                *(f"{ort[g]['differ']} ({ort[g]['samples_diverged']} samples)" for g in GATE_FORMS),
            )
        )
    header = ("model", "fast≠exact, block-local", "largest |r-t| of those", "fast vs original: max abs")
    header += ("top-1", *(f"ORT≠PyTorch, {g}" for g in GATE_FORMS))
    print(f"demo models, {results['seed']['samples']} test digits; CPU: {cpu_description()}")
    print(table(rows, header))
    args.json.parent.mkdir(parents=True, exist_ok=True)
    record = {"cpu": cpu_description(), "load_average": list(os.getloadavg()), "models": results}
    args.json.write_text(json.dumps(record, indent=2) + "\n")
    print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
