"""SCConv hyper-parameters, their validation, and the two public variants.

Every rule here prevents a failure users of the public SCConv code meet at run time (a shape
error deep inside ``forward``) by refusing the configuration at construction, with a message that
names the parameter and says how to fix it.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from ..errors import ConfigError

GATES = ("hard", "soft")

#: The two public variants of the SCConv code (see the README): keyword defaults of each.
VARIANTS: dict[str, dict[str, Any]] = {
    # article / seed version: custom group norm, hard ``>=`` gate masks
    "seed": {"gate": "hard", "torch_gn": False, "group_num": 16},
    # repository HEAD: nn.GroupNorm, soft gate with ``torch.where(r > t, ...)``
    "head": {"gate": "soft", "torch_gn": True, "group_num": 4},
}


def variant_name(gate: str, torch_gn: bool) -> str:
    """A short, stable name for a gate/norm combination, e.g. ``"hard/custom-gn"``."""
    return f"{gate}/{'nn-gn' if torch_gn else 'custom-gn'}"


def _divisors(n: int) -> str:
    return ", ".join(str(d) for d in range(1, n + 1) if n % d == 0)


def _require_int(name: str, value: Any, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(f"{name}={value!r} must be an int >= {minimum}")
    if value < minimum:
        raise ConfigError(f"{name}={value} must be >= {minimum}")
    return value


def _require_open_unit(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigError(f"{name}={value!r} must be a number strictly between 0 and 1")
    if not 0.0 < float(value) < 1.0:
        raise ConfigError(f"{name}={value} must lie strictly between 0 and 1 (the public default is 0.5)")
    return float(value)


def check_sru(op_channel: Any, group_num: Any, gate_treshold: Any, gate: Any, torch_gn: Any) -> None:
    """Validate the SRU's parameters; raise ``ConfigError`` naming the parameter and the fix."""
    c = _require_int("op_channel", op_channel, 2)
    if c % 2:
        raise ConfigError(
            f"op_channel={c} is odd: SRU swaps two equal channel halves, so use an even "
            f"channel count (e.g. {c + 1})"
        )
    g = _require_int("group_num", group_num, 1)
    if c % g:
        raise ConfigError(
            f"op_channel={c} is not divisible by group_num={g}: pick group_num from the "
            f"divisors of {c} ({_divisors(c)})"
        )
    _require_open_unit("gate_treshold", gate_treshold)
    if gate not in GATES:
        raise ConfigError(f"gate={gate!r} is unknown: use 'hard' (seed, >=) or 'soft' (HEAD, where >)")
    if not isinstance(torch_gn, bool):
        raise ConfigError(f"torch_gn={torch_gn!r} must be True (nn.GroupNorm) or False (custom norm)")


def cru_channels(op_channel: int, alpha: float) -> tuple[int, int]:
    """(up, low) channel counts exactly as the public code computes them: ``int(alpha * C)``."""
    up = int(alpha * op_channel)
    return up, op_channel - up


def check_cru(
    op_channel: Any, alpha: Any, squeeze_radio: Any, group_size: Any, group_kernel_size: Any
) -> None:
    """Validate the CRU's parameters; raise ``ConfigError`` naming the parameter and the fix."""
    c = _require_int("op_channel", op_channel, 2)
    _require_open_unit("alpha", alpha)
    s = _require_int("squeeze_radio", squeeze_radio, 1)
    gs = _require_int("group_size", group_size, 1)
    k = _require_int("group_kernel_size", group_kernel_size, 1)
    if k % 2 == 0:
        raise ConfigError(
            f"group_kernel_size={k} is even: GWC pads by k//2, so an even kernel changes the "
            f"spatial size; use an odd kernel (e.g. {k + 1})"
        )
    up, low = cru_channels(c, alpha)
    if up < 1 or low < 1:
        raise ConfigError(
            f"alpha={alpha} with op_channel={c} gives up={up}, low={low} channels: both must be "
            f">= 1, choose alpha closer to 0.5"
        )
    for part, n in (("up", up), ("low", low)):
        if n // s < 1:
            raise ConfigError(
                f"squeeze_radio={s} squeezes the {part} part ({n} channels) to 0 channels: use "
                f"squeeze_radio <= {n} or more channels"
            )
    up_sq = up // s
    if up_sq % gs or c % gs:
        common = ", ".join(str(d) for d in range(1, up_sq + 1) if up_sq % d == 0 and c % d == 0)
        raise ConfigError(
            f"group_size={gs} must divide both GWC's input channels (up_channel//squeeze_radio = "
            f"{up_sq}) and op_channel={c}: choose group_size from ({common})"
        )


@dataclass(frozen=True)
class ScConvConfig:
    """Validated SCConv hyper-parameters and the derived channel counts.

    Field names follow the public code, misspellings included (``gate_treshold``,
    ``squeeze_radio``), so that ``ScConvConfig(**public_kwargs)`` just works.
    """

    op_channel: int
    group_num: int = 16
    gate_treshold: float = 0.5
    alpha: float = 0.5
    squeeze_radio: int = 2
    group_size: int = 2
    group_kernel_size: int = 3
    gate: str = "hard"
    torch_gn: bool = False

    def __post_init__(self) -> None:
        check_sru(self.op_channel, self.group_num, self.gate_treshold, self.gate, self.torch_gn)
        check_cru(self.op_channel, self.alpha, self.squeeze_radio, self.group_size, self.group_kernel_size)

    # Derived channel counts, exactly as the public code computes them.
    @property
    def up_channel(self) -> int:
        return cru_channels(self.op_channel, self.alpha)[0]

    @property
    def low_channel(self) -> int:
        return cru_channels(self.op_channel, self.alpha)[1]

    @property
    def variant(self) -> str:
        return variant_name(self.gate, self.torch_gn)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


_ALIASES = {"gate_threshold": "gate_treshold", "squeeze_ratio": "squeeze_radio"}
_DEFAULTS = {"gate_treshold": 0.5, "squeeze_radio": 2}


class _Unset:
    """Default of the keywords that have a correctly spelled alias: tells 'not passed' apart."""

    def __repr__(self) -> str:
        return "<default>"


UNSET: Any = _Unset()


def resolve_aliases(kwargs: dict[str, Any]) -> dict[str, Any]:
    """Map correctly spelled aliases onto the public (misspelled) keywords; refuse both at once.

    Keywords still ``UNSET`` afterwards take the public defaults.
    """
    out = dict(kwargs)
    for alias, public in _ALIASES.items():
        if alias in out:
            if out.get(public, UNSET) is not UNSET:
                raise ConfigError(f"pass either {public}= or its alias {alias}=, not both")
            out[public] = out.pop(alias)
    for name, default in _DEFAULTS.items():
        if out.get(name) is UNSET:
            out[name] = default
    return out
