"""The PyTorch side of golden data: tapping every SRU of a deployed network, and recording it.

``GateTap(model)`` wraps a network converted by ``to_deploy`` so that its forward returns the
network's outputs followed by the gate tensor of every SRU (its gate values ``r``, or a fast gate's
decision margin) and (``masks=True``) each SRU's decision mask, in module order — for the
feed-forward networks SCConv lives in, the execution order. Exported to ONNX it gives the *debug
graph*: the deployed graph plus those tensors as outputs, which names them (``gate:<module>``,
``mask:<module>``) so that any runtime's decisions can be read and the reference's decisions fed
back in.

``make_golden`` runs the export form in PyTorch FP32 and records inputs, outputs, decisions and
margins (``scconv_deploy.golden``); ``conversion_error`` measures the original network against it.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from .gates import GateSpec
from .golden import DEFAULT_TIE_GUARD, Golden, margin_classes, margin_edges, sample_gate_values
from .modules.export_form import ExportSRU


def gate_specs(model: nn.Module) -> list[GateSpec]:
    """Every export-form SRU of ``model``, in module order."""
    return [
        GateSpec(name, m.gate, float(np.float32(m.gate_treshold)), m.margin_scale)
        for name, m in model.named_modules()
        if isinstance(m, ExportSRU)
    ]


def flat_outputs(out: object) -> tuple[torch.Tensor, ...]:
    """A network's output as a flat tuple of tensors (a tensor, or a tuple/list of them)."""
    return tuple(out) if isinstance(out, (tuple, list)) else (out,)


class GateTap(nn.Module):
    """``model``'s outputs (flattened to a tuple), then each SRU's gate tensor, then (``masks``) its masks.

    A gate tensor holds the gate values ``r`` of an exact gate, the decision margin of a fast one
    (``GateSpec.values`` turns both into ``r``).
    """

    def __init__(self, model: nn.Module, masks: bool = False) -> None:
        super().__init__()
        self.model = model
        self.masks = masks
        self.specs = gate_specs(model)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        gates: dict[int, torch.Tensor] = {}
        masks: dict[int, torch.Tensor] = {}
        hooks = []
        # Hooks live only for this call: the wrapped model stays free of side effects.
        for i, spec in enumerate(self.specs):
            sru = self.model.get_submodule(spec.name)
            hooks.append(
                sru.gate_probe.register_forward_hook(lambda m, a, out, i=i: gates.__setitem__(i, out))
            )
            if self.masks:
                hooks.append(
                    sru.mask_probe.register_forward_hook(lambda m, a, out, i=i: masks.__setitem__(i, out))
                )
        try:
            out = self.model(x)
        finally:
            for hook in hooks:
                hook.remove()
        taps = [gates[i] for i in range(len(self.specs))]
        if self.masks:
            taps += [masks[i] for i in range(len(self.specs))]
        return (*flat_outputs(out), *taps)


def make_golden(
    deployed: nn.Module,
    inputs: np.ndarray,
    output_names: list[str],
    tie_guard: float = DEFAULT_TIE_GUARD,
    batch_size: int = 16,
    progress=None,
) -> Golden:
    """Outputs and every gate decision of ``deployed`` (a ``to_deploy`` network) in PyTorch FP32.

    Outputs and decisions come from the same forward pass, so they are consistent with each
    other: the export form decides exactly as the original network except at ties, where no
    two implementations can be held to one decision (see ``conversion_error``). ``progress``
    (a callable taking the number of samples done) is called after each batch.
    """
    tap = GateTap(deployed).eval()
    n_out = len(output_names)
    chunks: list[list[np.ndarray]] = []
    with torch.no_grad():
        for start in range(0, len(inputs), batch_size):
            batch = torch.from_numpy(inputs[start : start + batch_size])
            chunks.append([t.float().numpy() for t in tap(batch)])
            if progress is not None:
                progress(len(batch))
    columns = [np.concatenate(parts) for parts in zip(*chunks, strict=True)]
    outputs, values = columns[:n_out], columns[n_out:]
    edges = margin_edges(tie_guard)
    decisions, classes, margins, gate_values = [], [], [], []
    for spec, tensor in zip(tap.specs, values, strict=True):
        r = spec.values(tensor)
        m = np.abs(r - np.float32(spec.threshold))
        decisions.append(spec.decide(tensor))
        classes.append(margin_classes(m, edges))
        margins.append(m.reshape(len(m), -1).min(axis=1))
        gate_values.append(sample_gate_values(r))
    margin_table = np.stack(margins, axis=1) if margins else np.zeros((len(inputs), 0), np.float32)
    return Golden(
        inputs,
        outputs,
        output_names,
        tap.specs,
        decisions,
        classes,
        margin_table,
        tie_guard,
        gate_values=gate_values,
    )


def conversion_error(original: nn.Module, golden: Golden, batch_size: int = 16) -> dict[str, float | int]:
    """How far the original network is from the golden (export form) outputs, per sample.

    Informational: where they differ beyond rounding, a gate tie was decided differently by the
    original's arithmetic (the golden margins say how close each sample's gates are).
    """
    worst = np.zeros(golden.samples)
    with torch.no_grad():
        for start in range(0, golden.samples, batch_size):
            y = flat_outputs(original(torch.from_numpy(golden.inputs[start : start + batch_size])))
            for out, ref in zip(y, golden.outputs, strict=True):
                diff = np.abs(out.float().numpy() - ref[start : start + batch_size])
                diff = diff.reshape(len(diff), -1).max(axis=1)
                worst[start : start + batch_size] = np.maximum(worst[start : start + batch_size], diff)
    scale = max(float(np.abs(o).max()) for o in golden.outputs) or 1.0
    return {
        "max_abs": float(worst.max()),
        "samples_above_1e-5_relative": int((worst > 1e-5 * scale).sum()),
        "samples": golden.samples,
    }
