"""Model registry: entry points registered by name, built with ``create(name, **kwargs)``.

Entry points follow timm's style: a function per model, named after it, whose body is mostly
data (the family's config) handed to the family's ``_create_*`` builder. Every entry point takes
``num_classes`` and ``in_chans``; the ``scconv_*`` ones also take the SCConv options resolved by
``scconv_options``.
"""

from __future__ import annotations

import difflib
import fnmatch
from collections.abc import Callable
from typing import Any, TypeVar

from torch import nn

from ..modules.config import VARIANTS

_ModelFn = TypeVar("_ModelFn", bound=Callable[..., nn.Module])

_REGISTRY: dict[str, Callable[..., nn.Module]] = {}

#: Keywords every ``scconv_*`` entry point takes on top of its family's own.
SCCONV_KEYWORDS = ("variant", "scconv", "gate", "torch_gn", "group_num")
_OVERRIDES = ("gate", "torch_gn", "group_num")


def register_model(fn: _ModelFn) -> _ModelFn:
    """Register ``fn`` under its ``__name__``; returns ``fn`` unchanged (use as a decorator)."""
    name = fn.__name__
    if name in _REGISTRY:
        raise ValueError(f"model {name!r} is already registered (by {_REGISTRY[name].__module__})")
    _REGISTRY[name] = fn
    return fn


def list_models(pattern: str | None = None) -> list[str]:
    """Registered model names, sorted; only those matching the fnmatch ``pattern`` if given."""
    names = sorted(_REGISTRY)
    return names if pattern is None else fnmatch.filter(names, pattern)


def create(name: str, **kwargs: Any) -> nn.Module:
    """Build the registered model ``name`` with its entry point's keyword arguments.

    The model carries ``registry_spec = {"name": ..., "kwargs": ...}`` for ``save_checkpoint``.
    """
    if name not in _REGISTRY:
        close = difflib.get_close_matches(name, list_models(), n=4)
        hint = f"close matches: {', '.join(close)}" if close else "see list_models()"
        raise ValueError(f"unknown model {name!r}; {hint}")
    model = _REGISTRY[name](**kwargs)
    # Recorded so that save_checkpoint can name the architecture (a plain attribute, not state).
    model.registry_spec = {"name": name, "kwargs": dict(kwargs)}
    return model


def scconv_options(model: str, with_scconv: bool, options: dict[str, Any]) -> dict[str, Any] | None:
    """``ScConv`` keywords for the blocks of ``model``, or None for a plain model.

    ``options`` holds the caller's SCConv keywords (``SCCONV_KEYWORDS``): ``variant`` ("seed",
    the default, or "head") picks ``VARIANTS[variant]``; ``scconv=dict(...)`` adds or changes any
    ``ScConv`` keyword; ``gate=``, ``torch_gn=`` and ``group_num=`` override one each. A plain
    model takes none of them. Values are checked by ``ScConv`` itself (``ConfigError``).
    """
    if not with_scconv:
        if options:
            raise TypeError(f"{model} has no SCConv blocks: unexpected keyword(s) {sorted(options)}")
        return None
    unknown = sorted(set(options) - set(SCCONV_KEYWORDS))
    if unknown:
        raise TypeError(f"{model}: unexpected keyword(s) {unknown}; SCConv options are {SCCONV_KEYWORDS}")
    variant = options.get("variant", "seed")
    if variant not in VARIANTS:
        raise ValueError(f"{model}: variant={variant!r} is unknown; use one of {sorted(VARIANTS)}")
    extra = dict(options.get("scconv") or {})
    overrides = {k: options[k] for k in _OVERRIDES if k in options}
    both = sorted(set(extra) & set(overrides))
    if both:
        raise ValueError(f"{model}: {both} given both in scconv= and as keyword(s); pass each once")
    return {**VARIANTS[variant], **extra, **overrides}
