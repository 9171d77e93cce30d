"""The CPU's vector instruction sets, for reports: results of integer kernels can depend on them.

Read with CPUID at run time (numpy's own dispatch detection), so an emulated CPU (QEMU's
``-cpu Haswell``) reports what the code really runs on; ``/proc/cpuinfo`` only fills in the flags
numpy does not track (AVX-VNNI, AMX) and is the fallback where numpy's table is unavailable.
"""

from __future__ import annotations

import platform
from functools import lru_cache
from pathlib import Path

#: numpy's feature name → the flag name reports use (Linux's spelling).
_NUMPY_FLAGS = {
    "AVX2": "avx2",
    "FMA3": "fma",
    "AVX512F": "avx512f",
    "AVX512BW": "avx512bw",
    "AVX512VNNI": "avx512_vnni",
    "AVX512_SPR": "avx512_fp16",
    "ASIMD": "asimd",
    "ASIMDDP": "asimddp",
    "SVE": "sve",
}
#: Flags only /proc/cpuinfo tells: int8 dot products on AVX2 machines and Intel's matrix units.
_PROC_ONLY = ("avx_vnni", "amx_int8", "amx_bf16")


def _numpy_features() -> dict[str, bool] | None:
    try:
        from numpy._core._multiarray_umath import __cpu_features__
    except ImportError:
        try:
            from numpy.core._multiarray_umath import __cpu_features__
        except ImportError:
            return None
    return dict(__cpu_features__)


def _proc_flags() -> set[str]:
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return set()
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() in ("flags", "Features"):
            return set(value.split())
    return set()


@lru_cache(maxsize=1)
def cpu_flags() -> tuple[str, ...]:
    """The instruction-set flags that change which ONNX Runtime (MLAS) kernels run."""
    features = _numpy_features()
    proc = _proc_flags()
    if features is None:
        known = set(_NUMPY_FLAGS.values())
        return tuple(sorted(f for f in proc if f in known or f in _PROC_ONLY))
    flags = [flag for name, flag in _NUMPY_FLAGS.items() if features.get(name)]
    if features.get("AVX2"):  # /proc/cpuinfo of the host, not an emulated CPU: only with AVX2 present
        flags += [f for f in _PROC_ONLY if f in proc]
    return tuple(flags)


def has_vnni() -> bool:
    """Whether the CPU has int8 dot-product instructions (AVX-512 VNNI, AVX-VNNI, AMX, Arm dot product)."""
    return bool({"avx512_vnni", "avx_vnni", "amx_int8", "asimddp"} & set(cpu_flags()))


def cpu_description() -> str:
    """``x86_64, flags avx2 fma avx512f …`` for benchmark output and reports."""
    flags = " ".join(cpu_flags()) or "unknown"
    return f"{platform.machine() or 'unknown'}, flags {flags}"
