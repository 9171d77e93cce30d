"""Formulations of the SCConv export form tried against each other, per op type, at ResNet-50's stage shapes.

Each trial is one SCConv block (seed variant, batch 1) in a candidate form, checked against the
reference on a tie-free input first, then profiled round-robin with ``profile_block.profile`` (ORT
profiler, 2 threads, level ALL) at C=64@56², 128@28², 256@14², 512@7². The record — kernel time per
form and shape, relative to the exact form, node counts and each form's per-op breakdown — goes to
``benchmarks/results/export_form_trials.json``; what was kept is in ``scconv_deploy.modules.gate_forms``
and ``export_form``.

Forms:

* ``exact`` — ``to_deploy(gates="exact")``: sigmoid, then ``Ceil(t - r)``;
* ``fast`` — ``to_deploy(gates="fast")``: ``Ceil`` of the norm's affine output ``k·(logit(t) - z)``;
* ``exact-muladd``, ``fast-muladd`` — both forms with the group norm's affine as a ``Mul`` and an
  ``Add`` (as before ``export_form.channel_affine`` made it one ``BatchNormalization``);
* ``fast-stats`` — the fast decision from group statistics without the normalised map: mean and
  variance per group (``ReduceMean`` of ``x`` and of the squared deviations), then the per-sample,
  per-channel ``a·x + b``;
* ``fast-stats-1pass`` — the same with the variance as ``E[x²] - E[x]²`` (one pass fewer, but it
  cancels catastrophically for groups whose mean is large against their spread);
* ``fast-threshold`` — the fast decision as ``Ceil(k·(tau - xhat))``: the normalised map ``xhat``
  (scaled by ``k`` inside ``InstanceNormalization``, on a 5-D view ``(N, G, C/G, H, W)``) against a
  per-channel threshold ``tau = (logit(t) - shift) / scale``, one ``Sub`` instead of the affine's
  ``Mul`` and ``Add``;
* ``fast-unsplit`` — the fast form, and the CRU's two squeeze convolutions reading the whole SRU
  output (zero weights on the other half) instead of a ``Split`` into two copies;
* ``fast-grouped`` — the fast form, and both squeeze convolutions as one grouped convolution
  (``groups=2``) followed by a ``Split`` of its narrower output;
* ``fast-halves`` — the fast form, and the SRU handing the CRU its two halves directly (``alpha``
  = 1/2): ``up = x_a + d``, ``low = x_b - d`` with ``d = x2_b - x2_a``, from a ``Split`` of ``x`` and
  of the gated part ``x2``, instead of the half swap (``Gather``), its ``Add`` and the CRU's ``Split``.

    python benchmarks/export_form_trials.py [--runs 60] [--forms exact fast ...]
"""

from __future__ import annotations

import argparse
import copy
import json
import os
from pathlib import Path

import torch
import torch.nn.functional as F
from _ort import THREADS, export_onnx, op_counts, table
from profile_block import profile

from scconv_deploy import VARIANTS, ExportScConv, ScConv
from scconv_deploy._cpu import cpu_description
from scconv_deploy.modules.export_form import ExportCRU, ExportSRU, softmax_fuse, unbiased_correction
from scconv_deploy.modules.gate_forms import step
from scconv_deploy.ties import untie

STAGES = ((64, 56), (128, 28), (256, 14), (512, 7))


class StatsSRU(ExportSRU):
    """The fast hard gate's margin as ``a·x + b`` per sample and channel, from group statistics."""

    one_pass = False

    def decision_margin(self, x: torch.Tensor) -> torch.Tensor:
        g = self.group_num
        xv = x.reshape(x.shape[0], g, self.channels // g, -1)
        mean = xv.mean((2, 3), keepdim=True)
        if self.one_pass:
            var = (xv * xv).mean((2, 3), keepdim=True) - mean * mean
        else:
            dev = xv - mean
            var = (dev * dev).mean((2, 3), keepdim=True)
        weight = self.decision_weight.reshape(1, g, -1, 1)
        if not self.torch_gn:
            weight = weight * unbiased_correction(x, self.channels // g)
        a = weight / torch.sqrt(var + self.norm_eps)
        b = self.decision_bias.reshape(1, g, -1, 1) - a * mean
        return (xv * a + b).reshape(x.shape)


class OnePassStatsSRU(StatsSRU):
    one_pass = True


class ThresholdSRU(ExportSRU):
    """The fast hard gate as the scaled normalised map against a per-channel threshold."""

    SCALE = 2.0**-20  # |k·xhat| <= 1/8 for |xhat| <= 2^17; thresholds clamped to 2^18 (decisions kept)

    def decision_margin(self, x: torch.Tensor) -> torch.Tensor:
        g, k = self.group_num, self.SCALE
        view = x.unflatten(1, (g, -1))
        y = F.instance_norm(view, weight=torch.full((g,), k), eps=self.norm_eps).flatten(1, 2)
        sign = 1.0 if float(self.scale.sum()) > 0 else -1.0  # scale = weight²/sum(weight): one sign
        room = self.logit_margin()  # logit(t) - shift
        constant = torch.where(room > 0, sign, -sign) * 2.0**18  # a zero-scale gate decides [shift < logit t]
        tau = torch.where(self.scale != 0, room / self.scale, constant).clamp(-(2.0**18), 2.0**18)
        tau = (k * tau).reshape(1, -1, 1, 1)
        if not self.torch_gn:
            tau = tau / unbiased_correction(x, self.channels // g)
        return sign * (tau - y)

    def logit_margin(self) -> torch.Tensor:
        return self.decision_bias / self.margin_scale


class MulAddSRU(ExportSRU):
    """The group norm's affine as its own ``Mul`` and ``Add`` (the form before ``channel_affine``)."""

    def _normalised(self, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
        if not self.torch_gn:
            weight = weight * unbiased_correction(x, self.channels // self.group_num)
        return F.group_norm(x, self.group_num, weight, bias, self.norm_eps)


class TrialCRU(ExportCRU):
    """An export-form CRU taking over another's convolutions and channel counts, to be changed."""

    def __init__(self, cru: ExportCRU) -> None:
        torch.nn.Module.__init__(self)
        self.__dict__.update({k: v for k, v in vars(cru).items() if not k.startswith("_")})
        self._modules = dict(cru._modules)


class UnsplitCRU(TrialCRU):
    """The squeeze convolutions over all channels, zero weights outside their half: no ``Split``."""

    def __init__(self, cru: ExportCRU) -> None:
        super().__init__(cru)
        self.squeeze1 = _padded(cru.squeeze1, 0, cru.low_channel)
        self.squeeze2 = _padded(cru.squeeze2, cru.up_channel, 0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        up, low = self.squeeze1(x), self.squeeze2(x)
        y1 = self.GWC(up) if self.PWC1 is None else self.GWC(up) + self.PWC1(up)
        y2 = self.Y2(low)
        pooled = torch.cat([F.adaptive_avg_pool2d(y1, 1), F.adaptive_avg_pool2d(y2, 1)], dim=1)
        s1, s2 = torch.split(torch.softmax(pooled, dim=1), [self.channels, self.channels], dim=1)
        return y1 * s1 + y2 * s2


class GroupedCRU(TrialCRU):
    """Both squeeze convolutions as one grouped convolution (``groups=2``), then a ``Split`` of its
    narrower output: the full-width ``Split`` of the SRU output goes (needs ``alpha`` = 1/2)."""

    def __init__(self, cru: ExportCRU) -> None:
        super().__init__(cru)
        weight = torch.cat([cru.squeeze1.weight, cru.squeeze2.weight]).detach()
        self.squeeze = torch.nn.Conv2d(cru.up_channel + cru.low_channel, len(weight), 1, groups=2, bias=False)
        with torch.no_grad():
            self.squeeze.weight.copy_(weight)
        self.squeezed = (cru.squeeze1.out_channels, cru.squeeze2.out_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        up, low = torch.split(self.squeeze(x), list(self.squeezed), dim=1)
        y1 = self.GWC(up) if self.PWC1 is None else self.GWC(up) + self.PWC1(up)
        return softmax_fuse(y1, self.Y2(low), self.channels)


class HalvesScConv(ExportScConv):
    """The SRU's output as the CRU's two halves: no half swap, no ``Split`` of the SRU output."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        sru, cru = self.SRU, self.CRU
        below = sru.mask_probe(step(sru.gate_probe(sru.decision_margin(x))))
        half = sru.channels // 2
        x2_a, x2_b = torch.split(below * x, [half, half], dim=1)
        x_a, x_b = torch.split(x, [half, half], dim=1)
        d = x2_b - x2_a
        up, low = cru.squeeze1(x_a + d), cru.squeeze2(x_b - d)
        y1 = cru.GWC(up) if cru.PWC1 is None else cru.GWC(up) + cru.PWC1(up)
        return softmax_fuse(y1, cru.Y2(low), cru.channels)


def _padded(conv: torch.nn.Conv2d, before: int, after: int) -> torch.nn.Conv2d:
    """``conv`` reading ``before`` + its own + ``after`` input channels, the others with zero weight."""
    w = F.pad(conv.weight.detach(), (0, 0, 0, 0, before, after))
    new = torch.nn.Conv2d(w.shape[1], w.shape[0], 1, bias=False)
    with torch.no_grad():
        new.weight.copy_(w)
    return new.eval()


def exact(ref: ScConv) -> ExportScConv:
    return ExportScConv.from_reference(ref, gates="exact")


def fast(ref: ScConv) -> ExportScConv:
    return ExportScConv.from_reference(ref, gates="fast")


def exact_mul_add(ref: ScConv) -> ExportScConv:
    return fast_stats(ref, MulAddSRU, exact)


def fast_mul_add(ref: ScConv) -> ExportScConv:
    return fast_stats(ref, MulAddSRU)


def fast_stats(ref: ScConv, cls: type[ExportSRU] = StatsSRU, form=fast) -> ExportScConv:
    block = form(ref)
    sru = copy.copy(block.SRU)
    sru.__class__ = cls
    return ExportScConv(sru, block.CRU, block.origin)


def fast_stats_one_pass(ref: ScConv) -> ExportScConv:
    return fast_stats(ref, OnePassStatsSRU)


def fast_threshold(ref: ScConv) -> ExportScConv:
    return fast_stats(ref, ThresholdSRU)


def fast_unsplit(ref: ScConv) -> ExportScConv:
    block = fast(ref)
    return ExportScConv(block.SRU, UnsplitCRU(block.CRU), block.origin)


def fast_grouped(ref: ScConv) -> ExportScConv:
    block = fast(ref)
    return ExportScConv(block.SRU, GroupedCRU(block.CRU), block.origin)


def fast_halves(ref: ScConv) -> ExportScConv:
    block = fast(ref)
    return HalvesScConv(block.SRU, block.CRU, block.origin)


TRIALS = {
    "exact": exact,
    "fast": fast,
    "exact-muladd": exact_mul_add,
    "fast-muladd": fast_mul_add,
    "fast-stats": fast_stats,
    "fast-stats-1pass": fast_stats_one_pass,
    "fast-threshold": fast_threshold,
    "fast-unsplit": fast_unsplit,
    "fast-grouped": fast_grouped,
    "fast-halves": fast_halves,
}
DEFAULT_JSON = Path(__file__).parent / "results" / "export_form_trials.json"


def reference(channels: int, seed: int) -> ScConv:
    """A seed-variant block with trained-looking norm parameters (scales near 1, shifts near 0)."""
    torch.manual_seed(seed)
    block = ScConv(channels, **VARIANTS["seed"]).eval()
    with torch.no_grad():
        block.SRU.gn.weight.copy_(1 + 0.25 * torch.randn_like(block.SRU.gn.weight))
        block.SRU.gn.bias.copy_(0.3 * torch.randn_like(block.SRU.gn.bias))
    return block


def agreement(form: str, channels: int, seed: int) -> float:
    """Largest |form - reference| / max|reference| on a tie-free input."""
    ref = reference(channels, seed)
    x = untie(ref, torch.randn(2, channels, 9, 8, generator=torch.Generator().manual_seed(seed)))
    with torch.no_grad():
        want = ref(x)
        return ((TRIALS[form](ref).eval()(x) - want).abs().max() / want.abs().max()).item()


def summary(ops: dict[str, dict[str, float]], model: bytes) -> dict[str, object]:
    """Kernel time in all and in convolutions, node count, and the per-op breakdown of one form."""
    by_time = sorted(ops.items(), key=lambda kv: -kv[1]["us"])
    return {
        "total_us": round(sum(p["us"] for p in ops.values()), 1),
        "conv_us": round(sum(p["us"] for op, p in ops.items() if "Conv" in op), 1),
        "onnx_nodes_without_constant": sum(n for op, n in op_counts(model).items() if op != "Constant"),
        "ops_us": {op: round(p["us"], 1) for op, p in by_time},
    }


def measure(forms: list[str], channels: int, size: int, args: argparse.Namespace) -> dict[str, dict]:
    """Every form of one stage's block, profiled round-robin; ratios to the first form."""
    ref = reference(channels, args.seed)
    x = torch.randn(1, channels, size, size, generator=torch.Generator().manual_seed(1))
    models = {form: export_onnx(TRIALS[form](ref).eval(), x)[0] for form in forms}
    profiles = profile(models, x.numpy(), args.runs, 10)
    result = {form: summary(ops, models[form]) for form, ops in profiles.items()}
    for r in result.values():
        r["ratio_to_" + forms[0]] = round(r["total_us"] / result[forms[0]]["total_us"], 3)
    return result


def row(block: str, form: str, r: dict, base: str) -> tuple:
    """One line of the table: kernel time, its non-convolution part, ratio to the base form, nodes."""
    total, non_conv, ratio = r["total_us"], r["total_us"] - r["conv_us"], r["ratio_to_" + base]
    return (block, form, f"{total:.0f}", f"{non_conv:.0f}", f"{ratio:.3f}", r["onnx_nodes_without_constant"])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--forms", nargs="+", default=list(TRIALS), choices=list(TRIALS))
    ap.add_argument("--runs", type=int, default=60)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", type=Path, default=DEFAULT_JSON)
    args = ap.parse_args()
    load_before = list(os.getloadavg())
    print(f"CPU: {cpu_description()}; load average {load_before[0]:.2f}; ORT {THREADS} threads, level ALL")
    checks = {form: max(agreement(form, c, args.seed) for c, _ in STAGES[:2]) for form in args.forms}
    for form, err in checks.items():
        print(f"{form}: largest error against the reference on tie-free inputs {err:.2e} of its scale")
    base, rows, stages = args.forms[0], [], {}
    for channels, size in STAGES:
        stages[f"{channels}@{size}"] = result = measure(args.forms, channels, size, args)
        rows += [row(f"C={channels}@{size}²", form, r, base) for form, r in result.items()]
    print(f"\nkernel time per run (ORT profiler, per node the median of {args.runs} runs)")
    print(table(rows, ("block", "form", "kernel us", "non-conv us", f"/{base}", "nodes (no Constant)")))
    load_after = list(os.getloadavg())
    print(f"load average {load_before[0]:.2f} before, {load_after[0]:.2f} after")
    record = {"cpu": cpu_description(), "load_average": {"before": load_before, "after": load_after}}
    record |= {"runs": args.runs, "agreement_with_reference": checks, "stages": stages}
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(record, indent=2) + "\n")
    print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
