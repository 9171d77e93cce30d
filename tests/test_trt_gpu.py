"""TensorRT engines of the demo model, built with their verification twins, verified against PyTorch on
every golden sample, benchmarked and inspected.

Needs TensorRT and a CUDA GPU; skipped with the reason otherwise. FP16/INT8 ONNX files come from
the precision step: build/digits.fp16.onnx and build/digits.int8.onnx (or $SCCONV_FP16_ONNX,
$SCCONV_INT8_ONNX), with golden data beside them or build/digits.golden.npz.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest

from scconv_deploy import DependencyError, EngineError
from scconv_deploy.cli.trt import main
from scconv_deploy.datasets import save_digits_images
from scconv_deploy.golden import Golden
from scconv_deploy.onnx_export import export_onnx
from scconv_deploy.trt import (
    inspect_plan,
    load_engine,
    read_sidecar,
    require_trt_gpu,
    run_batches,
    twin_path,
    verify_plan,
)

pytestmark = pytest.mark.gpu

try:
    HOST = require_trt_gpu()  # TensorRT, a GPU and a driver for TensorRT's CUDA; PyTorch's CUDA plays no part
except DependencyError as err:
    pytest.skip(str(err), allow_module_level=True)
trt = HOST.trt

ROOT = Path(__file__).resolve().parents[1]
DEMO = ROOT / "models" / "scconv_cnn_digits_seed.pt"


@pytest.fixture(scope="module")
def work(tmp_path_factory) -> Path:
    """digits.onnx (dynamic batch) and digits.golden.npz from 64 real test digits."""
    directory = tmp_path_factory.mktemp("trt")
    data = directory / "digits_test.npy"
    save_digits_images("test", data)
    result = export_onnx(
        DEMO, directory / "digits.onnx", exporter="legacy", calib_data=data, check_samples=64
    )
    assert result.ok, result.report
    return directory


@pytest.fixture(scope="module")
def checked_plan(work) -> Path:
    """The deployable FP32 engine, batch 1..16, and its verification twin, checked at build."""
    plan = work / "digits.checked.plan"
    argv = ["build", work / "digits.onnx", "-o", plan, "--batch", "1:8:16", "-q"]
    assert main([str(a) for a in argv]) == 0
    return plan


@pytest.fixture(scope="module")
def gates_plan(work) -> Path:
    """FP32, batch 1..16, gate tensors as outputs, and its twin, checked at build; fills a timing cache."""
    plan = work / "digits.gates.plan"
    argv = ["build", work / "digits.onnx", "-o", plan, "--batch", "1:8:16", "--debug-gates"]
    assert main([str(a) for a in [*argv, "--timing-cache", work / "tactics.cache", "-q"]]) == 0
    return plan


@pytest.fixture(scope="module")
def plain_plan(work, gates_plan) -> Path:
    """The deployable FP32 engine (no extra outputs), built with the timing cache of the first build."""
    plan = work / "digits.plan"
    argv = [
        "build",
        work / "digits.onnx",
        "--batch",
        "1:8:16",
        "--no-check",
        "--timing-cache",
        work / "tactics.cache",
    ]
    assert main([str(a) for a in [*argv, "-q"]]) == 0
    return plan


def test_fp32_engine_with_gate_outputs_matches_pytorch_with_no_real_flip(gates_plan, work):
    sidecar = read_sidecar(gates_plan)
    assert sidecar["tensorrt"]["version"] == trt.__version__
    assert sidecar["gpu"]["name"] == HOST.device.name
    assert sidecar["gpu"]["compute_capability"] == HOST.device.compute_capability
    assert sidecar["precision"]["kind"] == "FP32" and len(sidecar["gate_outputs"]) == 3
    check = sidecar["verification"]
    assert check["passed"] and check["real_flips"] == 0, check
    assert check["compared"] == check["samples"] and check["twin"] == "digits.gates.verify.plan"
    assert (work / "tactics.cache").stat().st_size > 0


def test_the_deployable_engine_and_its_twin_are_compared_on_every_sample(checked_plan, capsys):
    engine, twin = read_sidecar(checked_plan), read_sidecar(twin_path(checked_plan))
    assert engine["outputs"] == ["output"] and engine["verification_twin"] is None
    assert twin["verification_twin"]["plan_sha256"] == engine["plan"]["sha256"]
    with load_engine(twin_path(checked_plan)) as loaded:  # TensorRT took the mask profiles
        for name in twin["force_inputs"]:
            shapes = twin["profiles"][0][name]
            assert loaded.inputs[name].min == tuple(shapes["min"])
            assert loaded.inputs[name].max == tuple(shapes["max"])
    for check in (engine["verification"], twin["verification"]):
        assert check["passed"] and check["compared"] == check["samples"] and check["real_flips"] == 0, check
    assert main(["verify", str(checked_plan)]) == 0
    out = capsys.readouterr().out
    assert "verification PASSED" in out and "samples compared with PyTorch's gate decisions fed in" in out


def test_verify_counts_gate_flips_of_the_debug_engine(gates_plan, capsys):
    assert main(["verify", str(gates_plan)]) == 0
    assert "verification PASSED" in capsys.readouterr().out
    result, _ = verify_plan(gates_plan)
    assert result.flips is not None and result.real_flips == 0 and result.compared


def test_the_deployable_engine_predicts_as_pytorch(plain_plan, work):
    golden = Golden.load(work / "digits.golden.npz")
    with load_engine(plain_plan) as engine:
        assert engine.outputs == ["output"]
        out = run_batches(engine, golden.inputs)["output"]
    agree = (out.argmax(axis=1) == golden.outputs[0].argmax(axis=1)).mean()
    assert agree >= 0.95
    # Every real digit holds an exact gate tie: without its twin (--no-check built none) and without gate
    # outputs the check is inconclusive, not passed.
    assert not twin_path(plain_plan).exists()
    result, _ = verify_plan(plain_plan)
    assert result.flips is None and (result.passed or not result.compared)


def test_a_dynamic_batch_profile_takes_every_batch_in_range(plain_plan, work):
    x = Golden.load(work / "digits.golden.npz").inputs[:16]
    with load_engine(plain_plan) as engine:
        spec = engine.inputs["input"]
        assert (spec.min, spec.opt, spec.max) == ((1, 1, 32, 32), (8, 1, 32, 32), (16, 1, 32, 32))
        full = engine.infer({"input": x})["output"]
        for n in (1, 5, 16):
            np.testing.assert_allclose(
                engine.infer({"input": x[:n]})["output"], full[:n], rtol=1e-4, atol=1e-5
            )
        with pytest.raises(EngineError, match="outside the engine's profile"):
            engine.infer({"input": np.concatenate([x, x[:1]])})
        with pytest.raises(EngineError, match="the engine takes float32"):
            engine.infer({"input": x.astype(np.float64)})


def test_bench_of_an_engine_reports_percentiles_and_throughput(plain_plan, work, capsys):
    out_json = work / "bench.json"
    argv = [
        "bench",
        plain_plan,
        "--batch-sizes",
        "1,16",
        "--iterations",
        "20",
        "--warmup",
        "3",
        "--json",
        out_json,
    ]
    assert main([str(a) for a in argv]) == 0
    result = json.loads(out_json.read_text())
    assert result["backend"] == "tensorrt" and [r["batch"] for r in result["rows"]] == [1, 16]
    assert all(0 < r["p50_ms"] <= r["p99_ms"] and r["throughput"] > 0 for r in result["rows"])
    assert "CUDA events" in capsys.readouterr().out


def test_inspect_lists_layers_precisions_and_the_sidecar(plain_plan, capsys):
    report = inspect_plan(plain_plan)
    assert report.layers and "FP32" in report.counts["output_precisions"]
    assert main(["inspect", str(plain_plan)]) == 0
    out = capsys.readouterr().out
    assert "layer output precisions:" in out and f"TensorRT {trt.__version__}" in out


def test_an_engine_recorded_for_another_gpu_is_refused(plain_plan, tmp_path):
    copy = tmp_path / "other.plan"
    shutil.copy(plain_plan, copy)
    sidecar = read_sidecar(plain_plan)
    sidecar["gpu"] = {"name": "NVIDIA Z100", "compute_capability": "12.7", "hardware_compatibility": "none"}
    (tmp_path / "other.plan.json").write_text(json.dumps(sidecar))
    with pytest.raises(EngineError, match="this machine has TensorRT"):
        load_engine(copy)
    with load_engine(copy, check_compatibility=False) as engine:  # the override: TensorRT decides (it loads)
        assert engine.outputs == ["output"]


def test_a_version_compatible_engine_builds_and_runs(work):
    plan = work / "digits.vc.plan"
    argv = ["build", work / "digits.onnx", "-o", plan, "--version-compatible", "--no-check", "-q"]
    assert main([str(a) for a in argv]) == 0
    assert read_sidecar(plan)["tensorrt"]["version_compatible"] is True
    golden = Golden.load(work / "digits.golden.npz")
    with load_engine(plan) as engine:
        out = run_batches(engine, golden.inputs)["output"]
    assert (out.argmax(axis=1) == golden.outputs[0].argmax(axis=1)).mean() >= 0.95


def _precision_onnx(kind: str) -> tuple[Path, Path]:
    path = Path(os.environ.get(f"SCCONV_{kind.upper()}_ONNX", ROOT / "build" / f"digits.{kind}.onnx"))
    if not path.is_file():
        pytest.skip(f"no {kind.upper()} ONNX at {path} (precision step; or set SCCONV_{kind.upper()}_ONNX)")
    for golden in (path.with_suffix(".golden.npz"), ROOT / "build" / "digits.golden.npz"):
        if golden.is_file():
            return path, golden
    pytest.skip(f"no golden data for {path}")


@pytest.mark.parametrize("kind", ["fp16", "int8"])
def test_reduced_precision_engines_flip_no_gate_decision(kind, tmp_path, capsys):
    onnx_path, golden = _precision_onnx(kind)
    plan = tmp_path / f"digits.{kind}.plan"
    argv = ["build", onnx_path, "-o", plan, "--debug-gates", "--golden", golden, "--batch", "1:8:16", "-q"]
    code = main([str(a) for a in argv])
    sidecar = read_sidecar(plan)
    assert sidecar["precision"]["kind"] == kind.upper()
    assert read_sidecar(twin_path(plan))["precision"]["kind"] == kind.upper()
    check = sidecar["verification"]
    assert check["real_flips"] == 0, capsys.readouterr().out
    assert check["compared"] == check["samples"] and check["twin"] == f"digits.{kind}.verify.plan"
    assert code == 0, capsys.readouterr().out
