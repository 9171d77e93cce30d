"""Engines on a deployment host: the sidecar and its compatibility rules, loading, and what the machine lacks.

A plan runs with the TensorRT release that built it (build number included; later releases for a
version-compatible plan) on a GPU of its compute capability (any sm_80+ GPU for ampere+); the
GPU's name does not decide. Every missing piece — TensorRT, its libraries, a driver, a GPU, a
driver new enough for TensorRT's CUDA — is one line naming the fix. No TensorRT, GPU or PyTorch
needed: ``trt_standin`` stands in for TensorRT and the CUDA driver.
"""

from __future__ import annotations

import json
import logging
import sys

import numpy as np
import pytest

from scconv_deploy import DependencyError, EngineError
from scconv_deploy.trt import (
    INSTALL_TRT,
    BuildInfo,
    BuildPlan,
    TensorSpec,
    check_compatible,
    cuda_device,
    load_engine,
    read_sidecar,
    require_trt_gpu,
    write_engine_files,
)
from scconv_deploy.trt import cuda as trt_cuda
from scconv_deploy.trt import env as trt_env
from scconv_deploy.trt.cuda import Driver
from scconv_deploy.trt.env import explain
from scconv_deploy.trt.runner import check_feed
from scconv_deploy.trt.sidecar import check_plan, sha256_bytes, sidecar_path

from trt_standin import FakeDriver, FakeTensorRT, forget_tensorrt, run_cli

#: every test installs its own TensorRT stand-in (tests/conftest.py)
pytestmark = pytest.mark.usefixtures("fresh_tensorrt")

H100 = ("NVIDIA H100 80GB HBM3", "9.0")


@pytest.fixture(scope="module")
def demo(demo_onnx):
    return demo_onnx("batch")


@pytest.fixture
def tensorrt(monkeypatch):
    forget_tensorrt()
    fake = FakeTensorRT("10.8.0.43")
    monkeypatch.setitem(sys.modules, "tensorrt", fake)
    return fake


def sidecar_for(demo, plan_bytes: bytes, trt_version="10.8.0.43", gpu=H100, **plan_options) -> dict:
    plan = BuildPlan.from_onnx(demo, demo.with_name("m.plan"), **plan_options)
    info = BuildInfo(
        trt_version, *gpu, 12.5, "2026-12-01T10:00:00+00:00", sha256_bytes(plan_bytes), len(plan_bytes)
    )
    return plan.sidecar(info)


# ---- the sidecar ------------------------------------------------------------------------------------


def test_engine_and_sidecar_are_written_together_and_read_back(demo, tmp_path):
    data = b"\x00plan bytes, as TensorRT serialised them"
    sidecar = sidecar_for(demo, data)
    plan_path, side = write_engine_files(tmp_path / "m.plan", data, sidecar)
    assert plan_path.read_bytes() == data  # untouched: no header
    assert side == tmp_path / "m.plan.json" and read_sidecar(plan_path) == sidecar
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.plan", "m.plan.json"]  # no temp files left
    assert sidecar["gpu"] == {"name": H100[0], "compute_capability": "9.0", "hardware_compatibility": "none"}
    check_plan(sidecar, data, plan_path)
    with pytest.raises(EngineError, match="describes another plan"):
        check_plan(sidecar, data + b"!", plan_path)


def test_missing_foreign_and_future_sidecars(tmp_path, demo):
    assert read_sidecar(tmp_path / "none.plan") is None
    (tmp_path / "x.plan.json").write_text('{"hello": 1}')
    with pytest.raises(EngineError, match="not an scconv-deploy engine sidecar"):
        read_sidecar(tmp_path / "x.plan")
    (tmp_path / "y.plan.json").write_text("{not json")
    with pytest.raises(EngineError, match="not a readable sidecar"):
        read_sidecar(tmp_path / "y.plan")
    future = {**sidecar_for(demo, b"p"), "format_version": 99}
    (tmp_path / "z.plan.json").write_text(json.dumps(future))
    with pytest.raises(EngineError, match="sidecar version 99 is not supported"):
        read_sidecar(tmp_path / "z.plan")


def test_a_format_1_sidecar_is_read_as_hardware_compatibility_none(demo, tmp_path):
    old = sidecar_for(demo, b"p")
    old["format_version"] = 1
    del old["gpu"]["hardware_compatibility"]
    (tmp_path / "old.plan.json").write_text(json.dumps(old))
    sidecar = read_sidecar(tmp_path / "old.plan")
    assert check_compatible(sidecar, "10.8.0.43", *H100) == []
    with pytest.raises(EngineError, match="hardware compatibility none"):
        check_compatible(sidecar, "10.8.0.43", "NVIDIA A100-SXM4-80GB", "8.0")


# ---- compatibility as TensorRT defines it -----------------------------------------------------------


def test_the_exact_release_is_needed_build_number_included(demo):
    sidecar = sidecar_for(demo, b"plan")
    assert check_compatible(sidecar, "10.8.0.43", *H100) == []
    with pytest.raises(EngineError) as info:
        check_compatible(sidecar, "10.8.0.99", *H100)  # another build of the same release
    message = str(info.value)
    assert message.startswith(
        "engine built with TensorRT 10.8.0.43 on NVIDIA H100 80GB HBM3 (sm_90, hardware compatibility none); "
    )
    assert "this machine has TensorRT 10.8.0.99 on NVIDIA H100 80GB HBM3 (sm_90)" in message
    assert "it needs TensorRT 10.8.0.43 exactly" in message and "--no-compat-check" in message
    with pytest.raises(EngineError, match=r"needs TensorRT 10\.8\.0\.43 exactly"):
        check_compatible(sidecar, "10.9.0.34", *H100)


def test_a_version_compatible_engine_runs_on_its_release_and_later_ones(demo):
    sidecar = sidecar_for(demo, b"plan", version_compatible=True)
    for later in ("10.8.0.43", "10.8.0.99", "10.15.1.29", "11.4.0.106"):
        assert check_compatible(sidecar, later, *H100) == []
    for older in ("10.7.0.23", "10.8.0.42"):
        with pytest.raises(
            EngineError, match=r"TensorRT 10\.8\.0\.43 or newer \(the engine is version-compatible\)"
        ):
            check_compatible(sidecar, older, *H100)


def test_gpus_match_by_compute_capability_not_by_name(demo):
    sidecar = sidecar_for(demo, b"plan")
    for same_sm in ("NVIDIA H100 PCIe", "NVIDIA H100 80GB HBM3 MIG 1g.10gb", "NVIDIA H200"):
        (note,) = check_compatible(sidecar, "10.8.0.43", same_sm, "9.0")
        assert f"engine built on NVIDIA H100 80GB HBM3, running on {same_sm}: it runs (sm_90)" in note
    with pytest.raises(EngineError, match=r"it needs a GPU of compute capability 9\.0"):
        check_compatible(sidecar, "10.8.0.43", "NVIDIA A100-SXM4-40GB", "8.0")
    with pytest.raises(
        EngineError, match=r"TensorRT 10\.8\.0\.43 exactly and a GPU of compute capability 9\.0"
    ):
        check_compatible(sidecar, "10.9.0.34", "NVIDIA L4", "8.9")


def test_an_ampere_plus_engine_runs_on_any_sm_80_or_newer_gpu(demo):
    sidecar = sidecar_for(demo, b"plan", hardware_compatibility="ampere+")
    for gpu in (("NVIDIA A10", "8.6"), ("NVIDIA L4", "8.9"), ("NVIDIA B200", "10.0")):
        check_compatible(sidecar, "10.8.0.43", *gpu)
    with pytest.raises(EngineError, match=r"an Ampere or newer GPU \(sm_80\+: built ampere\+\)"):
        check_compatible(sidecar, "10.8.0.43", "Tesla T4", "7.5")


def test_load_engine_refuses_a_mismatch_before_tensorrt_sees_the_plan(demo, tmp_path, gpu, tensorrt, caplog):
    gpu.name, gpu.capability = "NVIDIA A100-SXM4-80GB", (8, 0)
    write_engine_files(tmp_path / "m.plan", b"plan", sidecar_for(demo, b"plan"))
    with pytest.raises(EngineError, match=r"it needs a GPU of compute capability 9\.0"):
        load_engine(tmp_path / "m.plan")
    assert tensorrt.calls("runtime") == []
    # The documented override: a warning, and TensorRT decides (this stand-in's runtime refuses the plan).
    with (
        caplog.at_level(logging.WARNING, logger="scconv_deploy"),
        pytest.raises(EngineError, match="TensorRT cannot load this plan"),
    ):
        load_engine(tmp_path / "m.plan", check_compatibility=False)
    assert "(check skipped: TensorRT decides)" in caplog.text
    assert tensorrt.calls("runtime", "deserialize_cuda_engine") == [(b"plan",)]


def test_a_version_compatible_plan_may_run_its_embedded_runtime(demo, tmp_path, gpu, tensorrt):
    write_engine_files(tmp_path / "vc.plan", b"plan", sidecar_for(demo, b"plan", version_compatible=True))
    with pytest.raises(EngineError, match="TensorRT cannot load this plan"):
        load_engine(tmp_path / "vc.plan")
    assert tensorrt.calls("runtime")[-2:] == [
        ("engine_host_code_allowed=", (True,)),
        ("deserialize_cuda_engine", (b"plan",)),
    ]


def test_a_deserialisation_failure_is_one_line_with_its_cause(demo, tmp_path, gpu, tensorrt):
    tensorrt.deserialize_error = RuntimeError(
        "IRuntime::deserializeCudaEngine: Error Code 6: API Usage Error (The engine plan file is not "
        "compatible with this version of TensorRT, expecting library version 10.8.0.43 got 10.9.0.34)"
    )
    write_engine_files(tmp_path / "m.plan", b"plan", sidecar_for(demo, b"plan"))
    with pytest.raises(EngineError) as info:
        load_engine(tmp_path / "m.plan")
    assert "\n" not in str(info.value)
    assert "the plan was built by another TensorRT release or for another GPU: rebuild it here" in str(
        info.value
    )


# ---- what the machine lacks: one line, exit 2 --------------------------------------------------------


def _commands(demo) -> list[list[str]]:
    plan = str(demo.with_suffix(".plan"))
    return [["build", str(demo)], ["verify", plan], ["inspect", plan], ["bench", plan]]


@pytest.mark.parametrize("index", range(4), ids=["build", "verify", "inspect", "bench-plan"])
def test_commands_needing_tensorrt_fail_with_one_line_saying_how_to_install_it(
    demo, capsys, monkeypatch, index
):
    monkeypatch.setitem(sys.modules, "tensorrt", None)  # import tensorrt fails, as on a host without it
    code, out, err = run_cli(capsys, *_commands(demo)[index])
    assert code == 2 and out == ""
    assert err.count("\n") == 1 and err.startswith("scconv-trt: error: TensorRT is not installed")
    assert INSTALL_TRT in err and "https://pypi.nvidia.com" in err


@pytest.mark.parametrize("index", range(4), ids=["build", "verify", "inspect", "bench-plan"])
def test_commands_needing_a_gpu_fail_with_one_line_without_a_driver(
    demo, capsys, monkeypatch, tensorrt, index
):
    def no_driver():
        raise DependencyError("no NVIDIA driver: libcuda.so.1 does not load (not found)")

    monkeypatch.setattr(trt_cuda, "driver_library", no_driver)
    code, out, err = run_cli(capsys, *_commands(demo)[index])
    assert code == 2 and out == ""
    assert err.count("\n") == 1 and "no NVIDIA driver" in err


def test_dry_run_lint_and_onnx_bench_need_no_tensorrt(demo, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "tensorrt", None)
    assert run_cli(capsys, "build", demo, "--dry-run")[0] == 0
    assert run_cli(capsys, "lint", demo)[0] == 0
    assert run_cli(capsys, "bench", demo, "--batch-sizes", "1", "--iterations", "1", "--warmup", "0")[0] == 0


def test_bindings_without_their_libraries_say_so(monkeypatch):
    class Unloadable:
        def find_spec(self, name, path=None, target=None):
            if name == "tensorrt":
                raise OSError("libnvinfer.so.10: cannot open shared object file")
            return None

    monkeypatch.delitem(sys.modules, "tensorrt", raising=False)
    monkeypatch.setattr(sys, "meta_path", [Unloadable(), *sys.meta_path])
    with pytest.raises(DependencyError, match=r"TensorRT's libraries do not load \(libnvinfer\.so\.10"):
        require_trt_gpu()


def test_the_cuda_device_is_read_from_the_driver():
    device = cuda_device(Driver(FakeDriver("NVIDIA L4", (8, 9), 12040)))
    assert (device.name, device.compute_capability, device.driver_cuda) == ("NVIDIA L4", "8.9", (12, 4))
    assert str(device) == "NVIDIA L4 (sm_89), driver for CUDA 12.4"


@pytest.mark.parametrize(
    ("fail", "message"),
    [
        ({"cuInit": 100}, "no CUDA device (cuInit: CUDA_ERROR_NO_DEVICE): check the NVIDIA driver"),
        (
            {"cuInit": 35},
            "the NVIDIA driver is too old for this CUDA (cuInit: CUDA_ERROR_INSUFFICIENT_DRIVER)",
        ),
        ({"cuDeviceGetName": 999}, "CUDA driver call cuDeviceGetName failed with CUresult 999"),
    ],
)
def test_driver_failures_are_one_line(fail, message):
    with pytest.raises(DependencyError) as info:
        cuda_device(Driver(FakeDriver(fail=fail)))
    assert message in str(info.value) and "\n" not in str(info.value)


def test_a_driver_too_old_for_tensorrts_cuda_is_refused_before_tensorrt_fails(monkeypatch, gpu, tensorrt):
    tensorrt.__version__ = "11.4.0.106"
    monkeypatch.setattr(trt_env, "tensorrt_cuda_major", lambda: 13)
    gpu.driver_cuda = 12080
    with pytest.raises(DependencyError) as info:
        require_trt_gpu()
    assert str(info.value) == (
        "TensorRT 11.4.0.106 is built for CUDA 13, but this NVIDIA driver supports CUDA 12.8 at most: "
        "upgrade the driver to r580 or newer, or install the trt11-cu12 extra"
    )
    gpu.driver_cuda = 13000
    host = require_trt_gpu()
    assert (host.version, host.major, host.device.sm) == ("11.4.0.106", 11, "sm_90")


@pytest.mark.parametrize(
    ("raised", "cause"),
    [
        (TypeError("pybind11::init(): factory function returned nullptr"), "could not initialise CUDA"),
        (RuntimeError("[TRT] CUDA initialization failure with error: 35"), "could not initialise CUDA"),
        (RuntimeError("cudaErrorMemoryAllocation: out of memory"), "the GPU ran out of memory"),
        (
            RuntimeError("Serialization assertion magicTagRead == kMAGIC_TAG failed"),
            "another TensorRT release",
        ),
        (RuntimeError("Failed to parse ONNX model"), "scconv-trt lint names what it cannot take"),
        (RuntimeError("something new\nwith detail"), "TensorRT's log above says more"),
    ],
)
def test_tensorrt_messages_are_explained_in_one_line(raised, cause):
    text = explain(raised)
    assert cause in text and "\n" not in text and text.startswith(str(raised).splitlines()[0])


def test_feeds_are_checked_against_the_profile_in_one_line():
    inputs = {"input": TensorSpec((1, 1, 32, 32), (8, 1, 32, 32), (16, 1, 32, 32), np.dtype(np.float32))}
    ok = check_feed("m.plan", inputs, {"input": np.zeros((5, 1, 32, 32), np.float32)})
    assert ok["input"].flags["C_CONTIGUOUS"]
    for feed, message in (
        ({"x": np.zeros((1, 1, 32, 32), np.float32)}, r"m\.plan takes inputs \['input'\], got \['x'\]"),
        (
            {"input": np.zeros((1, 1, 32, 32), np.float64)},
            "input 'input' is float64; the engine takes float32",
        ),
        ({"input": np.zeros((17, 1, 32, 32), np.float32)}, r"shape 17x1x32x32, outside the engine's profile"),
    ):
        with pytest.raises(EngineError, match=message):
            check_feed("m.plan", inputs, feed)


def test_sidecar_path_sits_beside_the_plan(tmp_path):
    assert sidecar_path(tmp_path / "a.plan") == tmp_path / "a.plan.json"
