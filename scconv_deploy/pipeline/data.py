"""Which inputs check an export and which calibrate it: never the same ones.

Check inputs come from ``--check-data``, else from the start of ``--calib-data``, else random
(with a warning). INT8 calibrates on ``--calib-data`` — after the check inputs when both come from
the same file, so that an INT8 artefact is never judged on the data it was calibrated on.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..calibration import load_inputs
from ..errors import ExportError
from .options import ExportOptions, default_check_samples


@dataclass(frozen=True)
class Inputs:
    check: np.ndarray | None
    check_source: str | None
    calibration: np.ndarray | None
    calibration_source: str | None


def select_inputs(
    options: ExportOptions,
    shape: tuple[int, ...],
    mean,
    std,
    *,
    need_check: bool,
    need_calibration: bool,
    resize: str = "stretch",
) -> Inputs:
    """The check and calibration inputs of an export (see the module docstring); images are brought to
    the input size by ``resize`` ("stretch" or "letterbox", see ``calibration``)."""
    n_check = options.check_samples or default_check_samples(shape)
    check = calib = None
    check_source = calib_source = None

    def load(source, limit: int) -> tuple[np.ndarray, str]:
        return load_inputs(source, shape, mean, std, limit=limit, resize=resize)

    if options.check_data is not None and need_check:
        check, check_source = load(options.check_data, n_check)
    if need_calibration:
        skip = n_check if need_check and options.check_data is None else 0
        data, _ = load(options.calib_data, skip + options.calib_samples)
        if len(data) <= skip:
            raise ExportError(
                f"--calib-data holds {len(data)} input(s), all taken by the {skip} check samples: INT8 must "
                f"be checked on inputs it was not calibrated on — give more data, fewer --check-samples, "
                f"or separate --check-data"
            )
        if need_check and check is None:
            check, check_source = data[:skip], f"{skip} inputs from {options.calib_data} (held out)"
        calib = data[skip:]
        calib_source = f"{len(calib)} inputs from {options.calib_data}" + (
            f", after the {skip} check inputs" if skip else ""
        )
    if need_check and check is None:
        check, check_source = load(options.calib_data, n_check)
    return Inputs(check, check_source, calib, calib_source)
