"""The CPU's vector instruction sets, for reports: results of integer kernels can depend on them."""

from __future__ import annotations

import platform
from functools import lru_cache
from pathlib import Path

#: Flags that change which ONNX Runtime (MLAS) kernels run: AVX2, AVX-512, VNNI, AMX.
RELEVANT = (
    "avx2",
    "fma",
    "avx512f",
    "avx512bw",
    "avx512_vnni",
    "avx_vnni",
    "amx_int8",
    "amx_bf16",
    "asimd",
    "sve",
)


@lru_cache(maxsize=1)
def cpu_flags() -> tuple[str, ...]:
    """The relevant flags this CPU reports (Linux ``/proc/cpuinfo``; empty elsewhere)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return ()
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() in ("flags", "Features"):
            have = set(value.split())
            return tuple(f for f in RELEVANT if f in have)
    return ()


def has_vnni() -> bool:
    """Whether the CPU has int8 dot-product instructions (AVX-512 VNNI, AVX-VNNI or AMX)."""
    return bool({"avx512_vnni", "avx_vnni", "amx_int8"} & set(cpu_flags()))


def cpu_description() -> str:
    """``x86_64, flags avx2 fma avx512f …`` for benchmark output and reports."""
    flags = " ".join(cpu_flags()) or "unknown"
    return f"{platform.machine() or 'unknown'}, flags {flags}"
