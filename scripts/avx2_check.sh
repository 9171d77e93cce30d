#!/usr/bin/env bash
# The tests whose results could depend on the CPU's kernels, run on an emulated AVX2-only CPU:
# INT8 (integer kernels) and the FP32 gate-value checks (the float sigmoid and group-norm kernels
# decide how close r comes to PyTorch's). QEMU's user-mode "-cpu Haswell" (AVX2 and FMA; no
# AVX-512, no VNNI) emulates CPUID, so ONNX Runtime dispatches its AVX2 kernels for real. Slow
# (about 45 minutes on 2 cores).
#
#   scripts/avx2_check.sh            # needs qemu-user (Debian: apt install qemu-user) and the full set-up
set -euo pipefail
cd "$(dirname "$0")/.."
command -v qemu-x86_64 >/dev/null || { echo "qemu-x86_64 not found: apt install qemu-user" >&2; exit 2; }
python=${PYTHON:-$(command -v python)}
qemu-x86_64 -cpu Haswell "$python" -c "from scconv_deploy._cpu import cpu_description; print('emulated CPU:', cpu_description())" 2>/dev/null
exec qemu-x86_64 -cpu Haswell "$python" -m pytest -q -p no:cacheprovider \
    tests/test_precision.py tests/deploy/test_verify_artefacts.py tests/test_export_pipeline.py tests/test_export_cli.py \
    -k "int8 or changed_fp32 or seed_norm_correction or registry_network_with_dynamic" \
    2> >(grep -v "TCG doesn't support" >&2)
