"""The ``model.pt`` format, safe loading of the layouts users arrive with, and atomic saving.

Our format is a plain dict that ``torch.load(weights_only=True)`` reads — no code runs when it
loads::

    {"format": "scconv-deploy/checkpoint", "format_version": 1,
     "arch": {"name": "scconv_cnn", "kwargs": {...}},   # registry name or "module:callable"
     "state_dict": {...},
     "meta": {"input_shape": [1, 1, 32, 32], "mean": [...], "std": [...], "class_names": [...], ...}}

``load_checkpoint`` also reads a bare state dict (with ``arch=``), the common wrappers
``{"model": ...}``, ``{"state_dict": ...}``, ``{"ema": ...}`` (YOLO style), ``module.``/``model.``/
``_orig_mod.`` key prefixes (stripped only where that makes the keys the architecture's), and —
only with ``trust=True`` — pickled ``nn.Module`` objects, because unpickling runs code from the
file (``torch_file`` says what a refused file holds). Ultralytics training checkpoints
(``best.pt``/``last.pt``) load their network from ``ema`` or ``model`` and record what is known
about it (task, class names, input shape) in ``Checkpoint.meta``.
"""

from __future__ import annotations

import hashlib
import importlib
import logging
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ._files import Staging
from ._version import __version__
from .errors import CheckpointError, first_line
from .torch_file import read_torch_file
from .yolo import describe, is_yolo_model

logger = logging.getLogger(__name__)

FORMAT = "scconv-deploy/checkpoint"
FORMAT_VERSION = 1
_WRAPPER_KEYS = ("ema", "model", "state_dict", "model_state_dict", "net")
_PREFIXES = ("module.", "model.", "_orig_mod.")


@dataclass
class Checkpoint:
    """A loaded network and what is known about it."""

    model: nn.Module
    path: Path
    sha256: str
    layout: str  # "scconv-deploy", "state_dict", "<wrapper>/state_dict", "pickle", "<wrapper>/pickle"
    arch: str | None = None
    arch_kwargs: dict[str, Any] = field(default_factory=dict)
    meta: dict[str, Any] = field(default_factory=dict)


# ---- saving -------------------------------------------------------------------------------------


def _check_plain(value: Any, where: str) -> None:
    """Metadata must load with weights_only=True: plain Python values only."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return
    if isinstance(value, (list, tuple)):
        for i, v in enumerate(value):
            _check_plain(v, f"{where}[{i}]")
        return
    if isinstance(value, dict):
        for k, v in value.items():
            if not isinstance(k, str):
                raise CheckpointError(f"{where}: key {k!r} must be a str")
            _check_plain(v, f"{where}.{k}")
        return
    raise CheckpointError(
        f"{where} is a {type(value).__name__}; checkpoint metadata must be plain Python values"
    )


def architecture_of(model: nn.Module) -> tuple[str, dict[str, Any]] | None:
    """(registry name, kwargs) recorded on a model built by ``scconv_deploy.models.create``."""
    spec = getattr(model, "registry_spec", None)
    if isinstance(spec, Mapping) and isinstance(spec.get("name"), str):
        return spec["name"], dict(spec.get("kwargs", {}))
    return None


def save_checkpoint(
    model: nn.Module,
    path: str | os.PathLike,
    *,
    arch: str | None = None,
    arch_kwargs: Mapping[str, Any] | None = None,
    **meta: Any,
) -> Path:
    """Write ``model`` to ``path`` in the scconv-deploy format, atomically; return the path.

    ``arch`` defaults to the registry name a ``models.create`` model carries; for a network of
    your own pass ``arch="package.module:factory"`` (called with ``arch_kwargs``). ``meta`` takes
    plain values, e.g. ``input_shape=[1, 3, 224, 224], mean=[...], std=[...], class_names=[...]``.
    """
    recorded = architecture_of(model)
    if arch is None and recorded is not None:
        arch, recorded_kwargs = recorded
        arch_kwargs = recorded_kwargs if arch_kwargs is None else arch_kwargs
    if arch is None:
        raise CheckpointError(
            f"cannot record the architecture of {type(model).__name__}: pass arch='<registry name>' "
            f"or arch='package.module:factory'"
        )
    kwargs = dict(arch_kwargs or {})
    _check_plain(kwargs, "arch_kwargs")
    _check_plain(meta, "meta")
    payload = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "arch": {"name": arch, "kwargs": kwargs},
        "state_dict": {k: v.detach().cpu().clone() for k, v in model.state_dict().items()},
        "meta": {"toolkit_version": __version__, "torch_version": str(torch.__version__), **meta},
    }
    path = Path(path)
    _atomic_torch_save(payload, path)
    return path


def _atomic_torch_save(obj: Any, path: Path) -> None:
    with Staging(CheckpointError) as staging:
        torch.save(obj, staging.temp_for(path))


# ---- loading ------------------------------------------------------------------------------------


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _is_state_dict(obj: Any) -> bool:
    return (
        isinstance(obj, Mapping)
        and bool(obj)
        and all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in obj.items())
    )


def _stripped_variants(state: Mapping[str, torch.Tensor]) -> list[dict[str, torch.Tensor]]:
    """``state`` as is, then with each wrapper prefix that every key shares removed, one after another."""
    variants = [dict(state)]
    while True:
        keys = variants[-1]
        prefix = next((p for p in _PREFIXES if keys and all(k.startswith(p) for k in keys)), None)
        if prefix is None:
            return variants
        variants.append({k[len(prefix) :]: v for k, v in keys.items()})


def _align_keys(state: Mapping[str, torch.Tensor], own: Iterable[str]) -> dict[str, torch.Tensor]:
    """``state`` with wrapper prefixes stripped only where that makes its keys the architecture's.

    ``model.`` is a wrapper's prefix in one checkpoint and part of the network's own names in
    another (Ultralytics: ``model.0.conv.weight``): the keys decide. Without an exact fit, the
    variant sharing the most keys is returned (the least stripped on a tie), for the error report.
    """
    own = set(own)
    variants = _stripped_variants(state)
    exact = next((v for v in variants if set(v) == own), None)
    return exact if exact is not None else max(variants, key=lambda v: len(own & set(v)))


def _pickled_meta(top: Any, model: nn.Module) -> dict[str, Any]:
    """What the file says about a pickled network: for an Ultralytics model, its task, names, shape."""
    if not is_yolo_model(model):
        return {}
    train_args = top.get("train_args") if isinstance(top, Mapping) else None
    return describe(model, train_args).checkpoint_meta()


def build_architecture(arch: str, arch_kwargs: Mapping[str, Any] | None = None) -> nn.Module:
    """A fresh network from a registry name or ``package.module:factory``."""
    kwargs = dict(arch_kwargs or {})
    if ":" in arch:
        module_name, _, attr = arch.partition(":")
        try:
            factory = getattr(importlib.import_module(module_name), attr)
        except (ImportError, AttributeError) as err:
            raise CheckpointError(f"architecture {arch!r} cannot be imported: {first_line(err)}") from err
        model = factory(**kwargs)
        if not isinstance(model, nn.Module):
            raise CheckpointError(
                f"architecture {arch!r} returned a {type(model).__name__}, not an nn.Module"
            )
        return model
    from .models import create

    try:
        return create(arch, **kwargs)
    except ValueError as err:
        raise CheckpointError(f"architecture {arch!r}: {err}") from err


def _load_state(model: nn.Module, state: Mapping[str, torch.Tensor], path: Path, arch: str) -> None:
    own = model.state_dict()
    state = _align_keys(state, own)
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    resized = [k for k in own if k in state and own[k].shape != state[k].shape]
    if missing or unexpected or resized:
        detail = "; ".join(
            f"{what} {len(keys)} key(s), e.g. {', '.join(keys[:3])}"
            for what, keys in (("missing", missing), ("unexpected", unexpected), ("wrong shape", resized))
            if keys
        )
        raise CheckpointError(f"{path}: weights do not fit architecture {arch!r}: {detail}")
    model.load_state_dict(state, strict=True)


def load_checkpoint(
    path: str | os.PathLike,
    *,
    arch: str | None = None,
    arch_kwargs: Mapping[str, Any] | None = None,
    trust: bool = False,
    map_location: str | torch.device = "cpu",
    import_paths: Iterable[str | os.PathLike] = (),
) -> Checkpoint:
    """Load a network from ``path`` (see the module docstring for the accepted layouts).

    ``arch`` (registry name or ``package.module:factory``) is needed for bare state dicts and
    overrides the one recorded in our format. Pickled modules load only with ``trust=True``;
    ``import_paths`` (folders) are importable while they unpickle, for the classes they name.
    Every failure raises ``CheckpointError`` naming the file.
    """
    path = Path(path)
    obj, pickled = read_torch_file(path, trust=trust, map_location=map_location, import_paths=import_paths)
    digest = _sha256(path)
    top, layout_prefix = obj, ""

    if isinstance(obj, Mapping) and obj.get("format") == FORMAT:
        version = obj.get("format_version")
        if not isinstance(version, int) or version > FORMAT_VERSION:
            raise CheckpointError(
                f"{path} was written in checkpoint format version {version}; this scconv-deploy reads up to "
                f"{FORMAT_VERSION}: upgrade scconv-deploy"
            )
        spec = obj.get("arch") or {}
        name = arch or spec.get("name")
        kwargs = dict(arch_kwargs if arch_kwargs is not None else spec.get("kwargs", {}))
        if not isinstance(name, str) or not _is_state_dict(obj.get("state_dict")):
            raise CheckpointError(f"{path}: scconv-deploy checkpoint lacks 'arch' or 'state_dict'")
        model = build_architecture(name, kwargs)
        _load_state(model, obj["state_dict"], path, name)
        meta = dict(obj.get("meta") or {})
        return Checkpoint(model.eval(), path, digest, "scconv-deploy", name, kwargs, meta)

    if isinstance(obj, Mapping) and not _is_state_dict(obj):
        for key in _WRAPPER_KEYS:
            if obj.get(key) is not None:
                obj, layout_prefix = obj[key], f"{key}/"
                break
        else:
            keys = ", ".join(sorted(map(str, obj))[:8])
            raise CheckpointError(f"{path}: unknown checkpoint layout (top-level keys: {keys})")

    if isinstance(obj, nn.Module):
        if not pickled:  # cannot happen with weights_only=True, kept as a guard for future torch
            raise CheckpointError(f"{path}: unexpected module object in a weights-only load")
        if arch is not None:
            logger.warning("%s: holds a whole module; ignoring arch=%r", path, arch)
        dtypes = {p.dtype for p in obj.parameters()}
        if dtypes - {torch.float32}:
            # The FP32 PyTorch network is the reference every artefact is checked against.
            logger.info("%s: converting %s weights to float32", path, ", ".join(sorted(map(str, dtypes))))
            obj = obj.float()
        meta = _pickled_meta(top, obj)
        return Checkpoint(obj.eval(), path, digest, f"{layout_prefix}pickle", meta=meta)

    if _is_state_dict(obj):
        if arch is None:
            raise CheckpointError(
                f"{path} holds only weights (a state dict): say which network they belong to with "
                f"arch='<registry name>' or arch='package.module:factory' (CLI: --arch)"
            )
        model = build_architecture(arch, arch_kwargs)
        _load_state(model, obj, path, arch)
        return Checkpoint(
            model.eval(), path, digest, f"{layout_prefix}state_dict", arch, dict(arch_kwargs or {})
        )

    raise CheckpointError(f"{path}: holds a {type(obj).__name__}, not a network or its weights")
