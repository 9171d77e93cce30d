#!/usr/bin/env bash
# One command on a machine with an NVIDIA GPU and TensorRT: install the TensorRT extra, export the demo
# model (FP32, FP16, INT8), build engines with their verification twins (MODEL.verify.plan: the same
# ONNX with PyTorch's gate decisions fed in), verify them against PyTorch's golden data on every
# sample, benchmark, inspect, and run the TensorRT tests.
#
#   scripts/gpu_check.sh                                   # from anywhere; uses `python`
#   TRT_EXTRA=trt10-cu12 scripts/gpu_check.sh              # the extra to install (default: trt11-cu12)
#   PYTHON=.venv/bin/python SKIP_INSTALL=1 scripts/gpu_check.sh
#
# The export steps need PyTorch (the export extra); building, verifying, benchmarking and inspecting
# do not. The versions step records TensorRT, its CUDA flavour, the driver and the GPU as this
# package reads them (from libcuda, not from PyTorch).
#
# Writes build/gpu_check/results.txt (one line per step, then the key numbers) and one log per step
# beside it. Exit status: 0 when every step passed, 1 otherwise.
set -u
cd "$(dirname "$0")/.."
PY=${PYTHON:-python}
OUT=${OUT_DIR:-build/gpu_check}
TRT=("$PY" -m scconv_deploy.cli.trt)
RESULTS="$OUT/results.txt"
mkdir -p "$OUT"
failed=0

step() {  # step NAME COMMAND...: run COMMAND, log it to $OUT/NAME.log, record PASS/FAIL and the time
    local name=$1 start=$SECONDS status
    shift
    echo "== $name: $*"
    if "$@" >"$OUT/$name.log" 2>&1; then status=PASS; else status="FAIL(exit $?)"; failed=1; fi
    printf '%-18s %-12s %5ss  %s\n' "$name" "$status" $((SECONDS - start)) "$OUT/$name.log" | tee -a "$RESULTS"
}

skip() {  # skip NAME REASON
    printf '%-18s %-12s %5s   %s\n' "$1" SKIP - "$2" | tee -a "$RESULTS"
}

{
    echo "# scripts/gpu_check.sh, $(date -u +%Y-%m-%dT%H:%M:%SZ), $(git rev-parse --short HEAD 2>/dev/null || echo '?')"
    nvidia-smi --query-gpu=name,driver_version,compute_cap --format=csv,noheader 2>&1 | sed 's/^/# gpu: /'
} >"$RESULTS"

if [ "${SKIP_INSTALL:-0}" = 1 ]; then
    skip install "SKIP_INSTALL=1"
else
    step install "$PY" -m pip install -e ".[export,${TRT_EXTRA:-trt11-cu12},dev]" --extra-index-url https://pypi.nvidia.com
fi
step versions "$PY" -c "import polygraphy, onnxruntime; \
from scconv_deploy.trt import require_trt_gpu; from scconv_deploy.trt.env import tensorrt_cuda_major; \
from scconv_deploy.deps import installed_onnxruntimes; host = require_trt_gpu(); \
print('tensorrt', host.version, 'for CUDA', tensorrt_cuda_major() or '?', '| gpu', host.device, \
'| polygraphy', polygraphy.__version__, '| onnxruntime', ', '.join(installed_onnxruntimes()), \
onnxruntime.get_available_providers())"
sed "s/^/# /" "$OUT/versions.log" >>"$RESULTS"

mkdir -p build
step data "$PY" -m scconv_deploy.datasets build/digits_test.npy --split test
step export "$PY" -m scconv_deploy.cli.export models/scconv_cnn_digits_seed.pt --onnx -o build/digits.onnx \
    --calib-data build/digits_test.npy
step dry-run "${TRT[@]}" build build/digits.onnx --dry-run --batch 1:8:32

# Each build writes the deployable engine (the ONNX as given) and its verification twin, and checks
# both: on real digits every sample holds a gate tie, so only the twin, run with PyTorch's decisions,
# compares every sample. verify reruns that check from the files. The --debug-gates engine also
# exposes the deployable engine's own gate values, so its flips are counted too.
step build-fp32 "${TRT[@]}" build build/digits.onnx --batch 1:8:32 --timing-cache build/tactics.cache
step verify-fp32 "${TRT[@]}" verify build/digits.plan
step build-fp32-gates "${TRT[@]}" build build/digits.onnx -o build/digits.gates.plan --batch 1:8:32 \
    --debug-gates --timing-cache build/tactics.cache
step verify-fp32-gates "${TRT[@]}" verify build/digits.gates.plan

# FP16 (gate path kept FP32) and INT8 (Q/DQ) ONNX files, where scconv-export has --precision.
if "$PY" -m scconv_deploy.cli.export --help 2>/dev/null | grep -q -- "--precision"; then
    for kind in fp16 int8; do
        step "export-$kind" "$PY" -m scconv_deploy.cli.export models/scconv_cnn_digits_seed.pt --onnx \
            -o "build/digits.$kind.onnx" --precision "$kind" --calib-data build/digits_test.npy
    done
else
    skip export-fp16-int8 "scconv-export has no --precision"
fi

for kind in fp16 int8; do
    onnx="build/digits.$kind.onnx"
    if [ ! -f "$onnx" ]; then
        skip "build-$kind" "no $onnx"
        continue
    fi
    golden="build/digits.$kind.golden.npz"
    [ -f "$golden" ] || golden=build/digits.golden.npz
    step "build-$kind" "${TRT[@]}" build "$onnx" --batch 1:8:32 --golden "$golden" \
        --timing-cache build/tactics.cache
    step "verify-$kind" "${TRT[@]}" verify "build/digits.$kind.plan" --golden "$golden"
    step "build-$kind-gates" "${TRT[@]}" build "$onnx" -o "build/digits.$kind.gates.plan" --batch 1:8:32 \
        --debug-gates --golden "$golden" --timing-cache build/tactics.cache
    step "bench-$kind" "${TRT[@]}" bench "build/digits.$kind.plan" --batch-sizes 1,8,32 --json "$OUT/bench_$kind.json"
done

step bench-fp32 "${TRT[@]}" bench build/digits.plan --batch-sizes 1,8,32 --json "$OUT/bench_fp32.json"
step bench-onnxruntime "${TRT[@]}" bench build/digits.onnx --batch-sizes 1,8,32 --iterations 30 \
    --json "$OUT/bench_onnxruntime.json"
step inspect "${TRT[@]}" inspect build/digits.plan
step pytest "$PY" -m pytest tests/test_trt_gpu.py tests/deploy -m gpu -rs -q -p no:cacheprovider

{
    echo
    echo "# key lines"
    for log in "$OUT"/build-*.log "$OUT"/verify-*.log; do
        [ -f "$log" ] && grep -H -E "^built|verification|gate decisions|as deployed|^  output|^  !|error:" "$log"
    done
    for log in "$OUT"/bench-*.log; do
        [ -f "$log" ] && { echo "$log:"; grep -v "^wrote" "$log"; }
    done
    echo "$OUT/pytest.log:"
    tail -n 15 "$OUT/pytest.log"
} >>"$RESULTS" 2>&1

echo "results: $RESULTS"
exit $failed
