"""What ``scconv-export`` is asked to do: the options of one export, checked before any work starts."""

from __future__ import annotations

from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from ..errors import ExportError
from ..golden import DEFAULT_TIE_GUARD
from ..modules.gate_forms import DEFAULT_GATE_FORM, GATE_FORMS
from .graph import DYNAMIC, EXPORTERS

DEFAULT_OPSET = 18  # InstanceNormalization-based GroupNorm: parsed by every TensorRT 10/11
PRECISIONS = ("fp32", "fp16", "int8", "int8-cpu")
CALIBRATION_METHODS = ("minmax", "percentile", "entropy")
#: What INT8 does with the network's output layers (``precision.output_layers``): keep them FP32 or
#: quantize them. Default: float for detectors (Ultralytics heads), int8 otherwise.
INT8_OUTPUTS = ("float", "int8")
#: Without --check-samples the check takes as many samples as fit this many input elements
#: (64 digits at 32², 26 images at 224², 8 at 640²), at least MIN_CHECK_SAMPLES.
CHECK_ELEMENTS = 4_000_000
MIN_CHECK_SAMPLES, MAX_CHECK_SAMPLES = 8, 64


def parse_input_shape(text: str | Any) -> tuple[int, ...]:
    """``"1,3,224,224"`` (or a sequence) → ``(1, 3, 224, 224)``; four positive ints."""
    try:
        dims = tuple(int(d) for d in (text.split(",") if isinstance(text, str) else text))
    except (TypeError, ValueError) as err:
        raise ExportError(f"input shape {text!r} is not a list of integers like 1,3,224,224") from err
    if len(dims) != 4 or min(dims) < 1:
        raise ExportError(f"input shape {text!r} must be four positive integers N,C,H,W")
    return dims


def parse_floats(text: str | Any, what: str) -> tuple[float, ...]:
    """``"0.485,0.456,0.406"`` (or a sequence, or one number) → a tuple of floats."""
    try:
        if isinstance(text, str):
            return tuple(float(v) for v in text.split(","))
        if isinstance(text, (int, float)):
            return (float(text),)
        return tuple(float(v) for v in text)
    except (TypeError, ValueError) as err:
        raise ExportError(f"{what} {text!r} is not a list of numbers like 0.485,0.456,0.406") from err


def default_check_samples(shape: tuple[int, ...]) -> int:
    """How many check samples fit the budget for one input of ``shape`` (see ``CHECK_ELEMENTS``)."""
    per_sample = shape[1] * shape[2] * shape[3]
    return max(MIN_CHECK_SAMPLES, min(MAX_CHECK_SAMPLES, CHECK_ELEMENTS // per_sample))


@dataclass(frozen=True)
class ExportOptions:
    """Every option of one export; ``validate`` refuses bad values with one line naming the option."""

    input_shape: tuple[int, ...] | None = None  # default: the checkpoint's metadata
    dynamic: str | None = None  # default: the network's (pipeline.network.default_dynamic)
    opset: int = DEFAULT_OPSET
    exporter: str = "dynamo"
    gates: str = DEFAULT_GATE_FORM  # how hard gates decide: "exact" (PyTorch's ties) or "fast" (no sigmoid)
    simplify: bool = True
    check: bool = True
    check_data: str | Path | None = None  # default: a held-out part of calib_data
    check_samples: int | None = None  # default: follows the input size (default_check_samples)
    calib_data: str | Path | None = None
    calib_samples: int = 512
    calib_method: str = "minmax"
    calib_cache: str | Path | None = None
    int8_outputs: str | None = None  # default: the network's (pipeline.network.default_int8_outputs)
    precision: str = "fp32"
    mean: tuple[float, ...] | None = None  # default: the checkpoint's
    std: tuple[float, ...] | None = None
    tie_guard: float = DEFAULT_TIE_GUARD
    rtol: float | None = None  # default: the precision's tolerance
    atol: float | None = None
    gate_atol: float | None = None  # FP32: a block's mean |r - r_PyTorch| (default: 1e-6)
    trt_major: int = 10
    plots_dir: str | Path | None = None

    @classmethod
    def from_kwargs(cls, **kwargs: Any) -> ExportOptions:
        """Options from keyword arguments (``None`` means "the default"), parsed and validated."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(kwargs) - known)
        if unknown:
            raise ExportError(f"unknown export option(s) {unknown}; known: {', '.join(sorted(known))}")
        values = {k: v for k, v in kwargs.items() if v is not None}
        if "input_shape" in values:
            values["input_shape"] = parse_input_shape(values["input_shape"])
        for key in ("mean", "std"):
            if key in values:
                values[key] = parse_floats(values[key], key)
        options = cls(**values)
        options.validate()
        return options

    def validate(self) -> None:
        def choose(name: str, value: str, allowed: tuple[str, ...]) -> None:
            if value not in allowed:
                raise ExportError(f"{name}={value!r} is unknown: use one of {', '.join(allowed)}")

        if self.dynamic is not None:
            choose("dynamic", self.dynamic, DYNAMIC)
        choose("exporter", self.exporter, EXPORTERS)
        choose("gates", self.gates, GATE_FORMS)
        choose("precision", self.precision, PRECISIONS)
        choose("calib_method", self.calib_method, CALIBRATION_METHODS)
        if self.int8_outputs is not None:
            choose("int8_outputs", self.int8_outputs, INT8_OUTPUTS)
        if not 9 <= int(self.opset) <= 23:
            raise ExportError(f"opset {self.opset} is outside 9..23")
        if self.check_samples is not None and self.check_samples < 1:
            raise ExportError(f"check_samples={self.check_samples} must be at least 1")
        if self.calib_samples < 1:
            raise ExportError(f"calib_samples={self.calib_samples} must be at least 1")
        if not 0 < self.tie_guard < 1e-2:
            raise ExportError(f"tie_guard={self.tie_guard:g} must lie in (0, 0.01)")
        for name in ("rtol", "atol", "gate_atol"):
            value = getattr(self, name)
            if value is not None and value < 0:
                raise ExportError(f"{name}={value:g} must not be negative")
        if self.precision.startswith("int8") and self.calib_data is None:
            raise ExportError(
                f"--precision {self.precision} needs --calib-data: INT8 ranges must come from real inputs"
            )
        if self.plots_dir is not None and not self.check:
            raise ExportError("--plots needs the check (drop --no-check)")
        if (self.mean is None) != (self.std is None):
            raise ExportError("give --mean and --std together")
        if self.std is not None and min(self.std) <= 0:
            raise ExportError(f"std {list(self.std)} must be positive")
