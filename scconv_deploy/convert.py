"""Find SCConv blocks in any network and replace them with their export form.

``to_deploy(model)`` returns a converted copy in eval mode; the input is left untouched.
Blocks are recognised by **structure**, not by class: our own ``ScConv``/``SRU``/``CRU``, and any
foreign module laid out like the public SCConv code (attributes ``SRU`` and ``CRU`` with the
public sub-structure), whatever its class or import path. A foreign unit is converted only after
a probe shows that it computes one of the two public functions; a block that looks like SCConv
but computes something else (a different gating, extra layers) raises ``ConversionError`` naming
the module and what differs, instead of being exported wrongly.

A replacement keeps every plain attribute of the block it replaces (e.g. Ultralytics' routing
attributes ``i``, ``f``, ``type``, ``np``, which the network's forward reads). FP16/BF16 networks
are converted in FP32 — the probes judge FP32 arithmetic with FP32's tolerance, and an FP16
block is never accused of computing something else because of FP16 rounding — and come back in
the dtypes they came in.

``deploy_summary(model)`` lists what a converted network holds (count, variants, module names).
"""

from __future__ import annotations

import copy
import logging
import types
from collections import Counter
from dataclasses import dataclass, field

import torch
from torch import nn

from .errors import ConfigError, ConversionError
from .modules.config import GATES
from .modules.export_form import ExportCRU, ExportScConv, ExportSRU
from .modules.gate_forms import DEFAULT_GATE_FORM, check_gate_form
from .modules.reference import CRU, SRU, GroupBatchnorm2d, ScConv
from .ties import untie

logger = logging.getLogger(__name__)

_CRU_CONVS = ("squeeze1", "squeeze2", "GWC", "PWC1", "PWC2")
_EXPORT_TYPES = (ExportScConv, ExportSRU, ExportCRU)
_PROBE_SHAPE = (2, 6, 5)  # N, H, W of the probe input


def _qualname(module: nn.Module) -> str:
    return f"{type(module).__module__}.{type(module).__qualname__}"


def _looks_like_sru(m: object) -> bool:
    return isinstance(m, nn.Module) and hasattr(m, "gn") and hasattr(m, "gate_treshold")


def _looks_like_cru(m: object) -> bool:
    return isinstance(m, nn.Module) and all(isinstance(getattr(m, a, None), nn.Conv2d) for a in _CRU_CONVS)


def _looks_like_scconv(m: nn.Module) -> bool:
    """Has the public block's attributes (``SRU`` plus ``CRU``, or the pre-release's ``GRU``)."""
    return isinstance(getattr(m, "SRU", None), nn.Module) and (
        isinstance(getattr(m, "CRU", None), nn.Module) or isinstance(getattr(m, "GRU", None), nn.Module)
    )


def _probe_input(channels: int, like: torch.Tensor) -> torch.Tensor:
    gen = torch.Generator().manual_seed(1234)
    n, h, w = _PROBE_SHAPE
    return torch.randn(n, channels, h, w, generator=gen).to(like.device, like.dtype)


def _tie_free_probe(block: nn.Module, channels: int, like: torch.Tensor) -> torch.Tensor:
    """The probe input, nudged off gate ties where possible (faithful copies agree even at ties)."""
    x = _probe_input(channels, like)
    try:
        return untie(block, x)
    except ValueError:
        return x


# (rtol, atol) of a probe comparison, by the coarser dtype of the two outputs compared
_TOLERANCES = {
    torch.float16: (2e-3, 2e-3),
    torch.bfloat16: (1.6e-2, 1.6e-2),
}
_FP32_TOLERANCE = (1e-4, 1e-5)
_LOW_PRECISION = (torch.float16, torch.bfloat16)


def _agrees(a: torch.Tensor, b: torch.Tensor) -> bool:
    """Same shape and values, within the rounding of the coarser of the two outputs' dtypes."""
    if a.shape != b.shape:
        return False
    coarser = a.dtype if torch.finfo(a.dtype).eps >= torch.finfo(b.dtype).eps else b.dtype
    rtol, atol = _TOLERANCES.get(coarser, _FP32_TOLERANCE)
    return bool(torch.allclose(a.float(), b.float(), rtol=rtol, atol=atol))


def _reference_sru(name: str, foreign: nn.Module, gate: str) -> SRU:
    """Our reference SRU with ``foreign``'s configuration and parameters, for one gate kind."""
    gn = foreign.gn
    if isinstance(gn, nn.GroupNorm):
        channels, groups, torch_gn = gn.num_channels, gn.num_groups, True
        if not gn.affine:
            raise ConversionError(f"{name}: SRU's GroupNorm has affine=False; SCConv's gate needs its weight")
    elif hasattr(gn, "group_num") and hasattr(gn, "eps"):
        weight = getattr(gn, "gamma", getattr(gn, "weight", None))
        if not isinstance(weight, torch.Tensor):
            raise ConversionError(f"{name}: SRU.gn has neither 'gamma' nor 'weight' parameters")
        channels, groups, torch_gn = weight.shape[0], gn.group_num, False
    else:
        raise ConversionError(
            f"{name}: SRU.gn is {type(gn).__name__}, neither nn.GroupNorm nor the seed's GroupBatchnorm2d"
        )
    try:
        ours = SRU(channels, groups, float(foreign.gate_treshold), torch_gn=torch_gn, gate=gate)
    except ConfigError as err:
        raise ConversionError(f"{name}: SRU configuration is not valid SCConv: {err}") from err
    ours.gn.eps = float(gn.eps)
    own = {k: v.detach() for k, v in foreign.state_dict().items()}
    try:
        ours.load_state_dict(own, strict=True)
    except RuntimeError as err:
        extra = sorted(set(own) - {"gn.weight", "gn.bias", "gn.gamma", "gn.beta"})
        why = f"extra tensors {extra}" if extra else str(err).splitlines()[0]
        raise ConversionError(f"{name}: SRU does not have the public SRU's parameters ({why})") from err
    ref = next(iter(foreign.parameters()), None)
    return ours.to(ref.device, ref.dtype) if ref is not None else ours


def _convert_sru(name: str, sru: nn.Module, gates: str) -> ExportSRU:
    if isinstance(sru, SRU):
        return ExportSRU.from_reference(sru, gates=gates)
    # Same structure for both public variants: tell them apart by what the module computes.
    candidates = [_reference_sru(name, sru, gate) for gate in GATES]
    matches = []
    with torch.no_grad():
        for cand in candidates:
            xc = _tie_free_probe(cand, cand.channels, cand.gn.weight)
            try:
                out = sru(xc)
            except Exception as err:  # the foreign forward is user code: report, don't crash
                raise ConversionError(f"{name}: SRU forward failed on a probe input: {err}") from err
            if isinstance(out, torch.Tensor) and _agrees(out, cand(xc)):
                matches.append(cand)
    if len(matches) != 1:
        raise ConversionError(
            f"{name}: {_qualname(sru)} is laid out like SCConv's SRU but computes neither public gate "
            f"(hard 'r >= t' masks or soft 'where(r > t, 1, r)'); port it to scconv_deploy.ScConv "
            f"or convert it yourself"
        )
    return ExportSRU.from_reference(matches[0], origin=_qualname(sru), gates=gates)


def _convert_cru(name: str, cru: nn.Module) -> ExportCRU:
    if isinstance(cru, CRU):
        return ExportCRU.from_reference(cru)
    for attr in ("up_channel", "low_channel"):
        if not isinstance(getattr(cru, attr, None), int):
            raise ConversionError(f"{name}: CRU has no integer attribute '{attr}' as the public CRU does")
    own = set(cru.state_dict())
    expected = {f"{c}.weight" for c in _CRU_CONVS} | {"GWC.bias"}
    if own != expected:
        raise ConversionError(
            f"{name}: CRU's tensors {sorted(own ^ expected)} differ from the public CRU's "
            f"(squeeze1/2, GWC with bias, PWC1/2 without)"
        )
    try:
        export = ExportCRU(cru, origin=_qualname(cru))
        x = _probe_input(export.channels, cru.GWC.weight)
        with torch.no_grad():
            same = _agrees(cru(x), export(x))
    except Exception as err:
        raise ConversionError(f"{name}: CRU does not run as the public CRU does: {err}") from err
    if not same:
        raise ConversionError(
            f"{name}: {_qualname(cru)} is laid out like SCConv's CRU but computes something else; "
            f"port it to scconv_deploy.ScConv or convert it yourself"
        )
    return export


def _convert_block(name: str, block: nn.Module, gates: str) -> ExportScConv:
    if isinstance(block, ScConv):
        return ExportScConv.from_reference(block, gates=gates)
    if not isinstance(getattr(block, "CRU", None), nn.Module):
        raise ConversionError(
            f"{name}: {_qualname(block)} has 'SRU' and 'GRU' but no 'CRU': that is the public code's "
            f"pre-release (gate on softmax(gamma)), which computes a different function; use the "
            f"seed or HEAD version of SCConv"
        )
    if not _looks_like_sru(block.SRU):
        raise ConversionError(f"{name}: block.SRU lacks 'gn' or 'gate_treshold'; not the public SRU")
    if not _looks_like_cru(block.CRU):
        raise ConversionError(f"{name}: block.CRU lacks the convolutions {', '.join(_CRU_CONVS)}")
    extra = sorted(n for n, _ in block.named_children() if n not in ("SRU", "CRU"))
    if extra:
        raise ConversionError(
            f"{name}: SCConv-like block has extra sub-modules {extra}; not the public SCConv"
        )
    # Checked in the exact form, which decides even the probe's remaining ties as PyTorch does; the
    # requested form follows from the same constants.
    sru = _convert_sru(f"{name}.SRU", block.SRU, "exact")
    cru = _convert_cru(f"{name}.CRU", block.CRU)
    if sru.channels != cru.channels:
        raise ConversionError(f"{name}: SRU has {sru.channels} channels but CRU has {cru.channels}")
    # Check the whole block too: a foreign forward might not be CRU(SRU(x)).
    x = _tie_free_probe(sru, sru.channels, sru.scale)
    export = ExportScConv(sru, cru, origin=_qualname(block))
    with torch.no_grad():
        try:
            same = _agrees(block(x), export(x))
        except Exception as err:
            raise ConversionError(f"{name}: SCConv-like block failed on a probe input: {err}") from err
    if not same:
        raise ConversionError(
            f"{name}: {_qualname(block)} does not compute CRU(SRU(x)); not the public SCConv"
        )
    return ExportScConv(sru.with_gates(gates), cru, origin=export.origin)


def _convert(name: str, module: nn.Module, gates: str) -> nn.Module | None:
    """The export form of ``module`` if it is an SCConv block or unit, else None."""
    label = name or "<root>"
    if isinstance(module, _EXPORT_TYPES):
        return None
    if isinstance(module, ScConv) or _looks_like_scconv(module):
        return _convert_block(label, module, gates)
    if isinstance(module, SRU) or (
        _looks_like_sru(module) and isinstance(module.gn, (nn.GroupNorm, GroupBatchnorm2d))
    ):
        return _convert_sru(label, module, gates)
    if isinstance(module, CRU) or (_looks_like_cru(module) and hasattr(module, "up_channel")):
        return _convert_cru(label, module)
    return None


_MODULE_INTERNALS = frozenset(vars(nn.Module()))  # training, _parameters, _modules, hooks, ...


def _defines(cls: type, name: str) -> bool:
    """``cls`` (or a base below ``nn.Module``) defines ``name`` itself."""
    own = cls.__mro__[: cls.__mro__.index(nn.Module)]
    return any(name in vars(c) for c in own)


def _keep_attributes(old: nn.Module, new: nn.Module) -> nn.Module:
    """Give ``new`` every plain attribute of ``old`` it does not define itself (``i``, ``f``, ``type``...).

    Instance attributes that shadow ``nn.Module`` methods (Ultralytics' ``type`` string) are
    kept too, as they shadowed them on the replaced block.
    """
    for name, value in vars(old).items():
        if name in _MODULE_INTERNALS or name in vars(new) or _defines(type(new), name):
            continue
        if isinstance(value, types.MethodType) and value.__self__ is old:
            continue  # a method bound to the replaced module (e.g. a patched forward) would run it
        setattr(new, name, value)
    return new


def _replace(parent: nn.Module, prefix: str, done: dict[int, nn.Module], gates: str) -> None:
    # _modules, not named_children(): the latter skips a module's second occurrence.
    for child_name, child in list(parent._modules.items()):
        if child is None:
            continue
        name = f"{prefix}.{child_name}" if prefix else child_name
        if id(child) in done:  # a module shared between two places stays shared
            setattr(parent, child_name, done[id(child)])
            continue
        new = _convert(name, child, gates)
        if new is None:
            _replace(child, name, done, gates)
        else:
            done[id(child)] = _keep_attributes(child, new)
            setattr(parent, child_name, new)


def _floating_dtypes(model: nn.Module) -> dict[str, torch.dtype]:
    """The dtype of every floating-point parameter and buffer, by qualified name."""
    tensors = [*model.named_parameters(remove_duplicate=False), *model.named_buffers(remove_duplicate=False)]
    return {name: t.dtype for name, t in tensors if t.is_floating_point()}


def _under(key: str, prefix: str) -> bool:
    return not prefix or key.startswith(f"{prefix}.")


def _export_units(model: nn.Module) -> dict[str, nn.Module]:
    """The outermost export-form modules, by name."""
    units: dict[str, nn.Module] = {}
    for name, module in model.named_modules():
        if isinstance(module, _EXPORT_TYPES) and not any(_under(name, u) and name != u for u in units):
            units[name] = module
    return units


def _cast(model: nn.Module, dtypes: dict[str, torch.dtype]) -> None:
    """Give each named parameter or buffer of ``model`` its dtype in ``dtypes`` (others stay)."""
    with torch.no_grad():
        for key, tensor in [*model.named_parameters(), *model.named_buffers()]:
            if key in dtypes and tensor.dtype != dtypes[key]:
                tensor.data = tensor.data.to(dtypes[key])


def _restore_dtypes(deployed: nn.Module, before: dict[str, torch.dtype]) -> None:
    """Cast each tensor back to its dtype before conversion; an export-form unit takes its block's."""
    units = _export_units(deployed)
    for name, unit in units.items():
        inside = [dtype for key, dtype in before.items() if _under(key, name)]
        if inside:
            unit.to(Counter(inside).most_common(1)[0][0])
    _cast(deployed, {k: d for k, d in before.items() if not any(_under(k, u) for u in units)})


def to_deploy(model: nn.Module, gates: str = DEFAULT_GATE_FORM) -> nn.Module:
    """A copy of ``model`` in eval mode with every SCConv block (and stand-alone SRU/CRU) in export form.

    ``gates`` is the form of the hard gates (``modules.gate_forms``): ``"exact"`` (the default)
    decides ties exactly as PyTorch rounds them, ``"fast"`` decides without the sigmoid.
    Raises ``ConversionError`` when a module looks like SCConv but does not compute either
    public variant, ``ConfigError`` for an unknown ``gates``. ``model`` itself is not modified. An
    FP16/BF16 network is converted in FP32 and returned in its own dtypes (each export-form unit
    in the dtype of the block it replaced; a fast gate still decides in FP32).
    """
    check_gate_form(gates)
    if not isinstance(model, nn.Module):
        raise ConversionError(f"to_deploy expects a torch.nn.Module, got {type(model).__name__}")
    deployed = copy.deepcopy(model).eval()
    before = _floating_dtypes(deployed)
    low = {key: torch.float32 for key, dtype in before.items() if dtype in _LOW_PRECISION}
    if low:
        names = ", ".join(sorted({str(before[key]) for key in low}))
        logger.info("to_deploy: converting %s weights in float32, returning them in their dtype", names)
        _cast(deployed, low)
    root = _convert("", deployed, gates)
    if root is not None:
        deployed = _keep_attributes(deployed, root)
    else:
        _replace(deployed, "", {}, gates)
    if low:
        _restore_dtypes(deployed, before)
    deployed.eval()
    summary = deploy_summary(deployed)
    if summary.count == 0:
        logger.warning("to_deploy: no SCConv block found in %s", type(model).__name__)
    else:
        logger.info("to_deploy: %s", summary.headline())
    return deployed


@dataclass(frozen=True)
class ConvertedBlock:
    """One export-form unit in a converted network."""

    name: str  # module path, "" for the root
    kind: str  # "ScConv", "SRU" or "CRU"
    variant: str  # e.g. "hard/custom-gn"; "-" for a stand-alone CRU (it has no gate)
    channels: int
    origin: str  # qualified class name of the module it replaced


@dataclass(frozen=True)
class DeploySummary:
    """What ``to_deploy`` put into a network: read back from the converted model itself."""

    blocks: tuple[ConvertedBlock, ...] = field(default_factory=tuple)

    @property
    def count(self) -> int:
        return len(self.blocks)

    @property
    def variants(self) -> dict[str, int]:
        return dict(Counter(b.variant for b in self.blocks))

    def headline(self) -> str:
        parts = ", ".join(f"{n} {v}" for v, n in sorted(self.variants.items()))
        return f"{self.count} SCConv unit(s) in export form" + (f" ({parts})" if parts else "")

    def __str__(self) -> str:
        rows = [self.headline()]
        rows += [
            f"  {b.name or '<root>'}: {b.kind} {b.variant} C={b.channels} from {b.origin}"
            for b in self.blocks
        ]
        return "\n".join(rows)


def deploy_summary(model: nn.Module) -> DeploySummary:
    """List the export-form SCConv units in ``model`` (as returned by ``to_deploy``)."""
    blocks = []
    inside_block: set[int] = set()
    for name, m in model.named_modules():
        if id(m) in inside_block:
            continue
        if isinstance(m, ExportScConv):
            inside_block.update({id(m.SRU), id(m.CRU)})
            blocks.append(ConvertedBlock(name, "ScConv", m.variant, m.SRU.channels, m.origin))
        elif isinstance(m, ExportSRU):
            blocks.append(ConvertedBlock(name, "SRU", m.variant, m.channels, m.origin))
        elif isinstance(m, ExportCRU):
            blocks.append(ConvertedBlock(name, "CRU", "-", m.channels, m.origin))
    return DeploySummary(tuple(blocks))
