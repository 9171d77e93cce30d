"""What a build asks of TensorRT, through Polygraphy's real loaders, with a recording stand-in for TensorRT.

Nothing here needs TensorRT, a GPU or PyTorch: ``trt_standin.FakeTensorRT`` records the calls
TensorRT receives (network flags, parser, profile, memory pool, compatibility, timing cache), so
these tests state the build's behaviour at TensorRT's API, not at Polygraphy's internals.
"""

from __future__ import annotations

import io
import json
import logging
import sys

import pytest

from scconv_deploy import EngineError
from scconv_deploy.trt import BuildPlan, BuildProgress, CheckSetup, read_sidecar
from scconv_deploy.trt.build import build_engine
from scconv_deploy.trt.pipeline import build_and_verify
from scconv_deploy.trt.sidecar import sha256_bytes

from trt_standin import FakeTensorRT, forget_tensorrt, run_cli

#: every test installs its own TensorRT stand-in (tests/conftest.py)
pytestmark = pytest.mark.usefixtures("fresh_tensorrt")

GATES = ["gate:features.1.0.SRU", "gate:features.3.0.SRU", "gate:features.5.0.SRU"]
STRONGLY_TYPED_BIT = 1 << 1  # NetworkDefinitionCreationFlag.STRONGLY_TYPED in the stand-in


@pytest.fixture(scope="module")
def demo(demo_onnx):
    return demo_onnx("batch")


def install(monkeypatch, version: str = "10.8.0.43", **kwargs) -> FakeTensorRT:
    """The stand-in as ``tensorrt`` for this test (Polygraphy re-imports it)."""
    forget_tensorrt()
    fake = FakeTensorRT(version, tensor_names=["conv", *GATES, "output"], **kwargs)
    monkeypatch.setitem(sys.modules, "tensorrt", fake)
    return fake


def test_tensorrt_10_gets_a_strongly_typed_network_one_profile_and_the_plan_limits(
    demo, tmp_path, gpu, monkeypatch
):
    trt = install(monkeypatch, "10.8.0.43")
    plan = BuildPlan.from_onnx(
        demo,
        tmp_path / "m.plan",
        batch=(1, 8, 16),
        workspace=1 << 30,
        builder_opt_level=4,
    )
    built = build_engine(plan)
    assert built.data == trt.plan_bytes and built.info.trt_version == "10.8.0.43"
    assert (built.info.gpu_name, built.info.compute_capability) == ("NVIDIA H100 80GB HBM3", "9.0")
    (flags,) = trt.calls("builder", "create_network")
    assert flags[0] & STRONGLY_TYPED_BIT
    assert trt.calls("parser", "parse_from_file") == [(str(demo),)]
    assert trt.calls("profile", "set_shape") == [("input", (1, 1, 32, 32), (8, 1, 32, 32), (16, 1, 32, 32))]
    assert len(trt.calls("config", "add_optimization_profile")) == 1
    assert trt.calls("config", "set_memory_pool_limit") == [(trt.MemoryPoolType.WORKSPACE, 1 << 30)]
    assert trt.calls("config", "builder_optimization_level=") == [(4,)]
    set_flags = {args[0] for args in trt.calls("config", "set_flag")}
    assert not set_flags & {
        trt.BuilderFlag.FP16,
        trt.BuilderFlag.INT8,
        trt.BuilderFlag.TF32,
    }  # the ONNX decides
    assert trt.calls("parser", "flags") == []  # TensorRT's default parser flags


def test_tensorrt_11_is_not_asked_for_the_deprecated_strongly_typed_flag(demo, tmp_path, gpu, monkeypatch):
    trt = install(monkeypatch, "11.4.0.106")
    build_engine(BuildPlan.from_onnx(demo, tmp_path / "m.plan"))
    (flags,) = trt.calls("builder", "create_network")
    assert not flags[0] & STRONGLY_TYPED_BIT


def test_compatibility_options_reach_the_config_where_the_release_has_them(demo, tmp_path, gpu, monkeypatch):
    trt = install(monkeypatch, "10.8.0.43")
    plan = BuildPlan.from_onnx(
        demo, tmp_path / "m.plan", version_compatible=True, hardware_compatibility="ampere+"
    )
    build_engine(plan)
    assert trt.BuilderFlag.VERSION_COMPATIBLE in {args[0] for args in trt.calls("config", "set_flag")}
    assert trt.calls("config", "hardware_compatibility_level=") == [
        (trt.HardwareCompatibilityLevel.AMPERE_PLUS,)
    ]
    (parser_flags,) = trt.calls("parser", "flags")  # no plugins in a version-compatible engine
    assert parser_flags == (1 << int(trt.OnnxParserFlag.NATIVE_INSTANCENORM),)

    old = install(monkeypatch, "10.0.1.6", without={"SAME_COMPUTE_CAPABILITY"})
    plan = BuildPlan.from_onnx(demo, tmp_path / "n.plan", hardware_compatibility="same-cc")
    with pytest.raises(EngineError, match=r"TensorRT 10\.0\.1\.6 has no HardwareCompatibilityLevel\.SAME_"):
        build_engine(plan)
    assert old.calls("builder") == []  # refused before anything was built


def test_debug_gates_marks_the_gate_tensors_as_network_outputs(demo, tmp_path, gpu, monkeypatch):
    trt = install(monkeypatch)
    build_engine(BuildPlan.from_onnx(demo, tmp_path / "g.plan", debug_gates=True))
    assert trt.calls("network", "mark_output") == [(name,) for name in GATES]
    forget_tensorrt()
    trt = FakeTensorRT("10.8.0.43", tensor_names=["conv", "output"])
    monkeypatch.setitem(sys.modules, "tensorrt", trt)
    with pytest.raises(EngineError, match="not in the parsed TensorRT network"):
        build_engine(BuildPlan.from_onnx(demo, tmp_path / "g.plan", debug_gates=True))
    assert trt.calls("builder", "build_serialized_network") == []


def test_the_timing_cache_is_loaded_and_written_back_with_the_new_timings(demo, tmp_path, gpu, monkeypatch):
    trt = install(monkeypatch)
    cache = tmp_path / "tactics.cache"
    build_engine(BuildPlan.from_onnx(demo, tmp_path / "a.plan", timing_cache=cache))
    assert cache.read_bytes() == b"+timings"  # a new cache: empty, then this build's timings
    build_engine(BuildPlan.from_onnx(demo, tmp_path / "b.plan", timing_cache=cache))
    assert trt.calls("config", "create_timing_cache")[-1] == (b"+timings",)
    assert cache.read_bytes() == b"+timings+timings"
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []  # no temp files


def test_a_timing_cache_that_cannot_be_written_does_not_lose_the_engine(
    demo, tmp_path, gpu, monkeypatch, caplog
):
    trt = install(monkeypatch)
    plan = BuildPlan.from_onnx(demo, tmp_path / "m.plan", timing_cache=tmp_path / "tactics.cache")

    def broken(*args):
        raise OSError("No space left on device")

    monkeypatch.setattr("scconv_deploy.trt.build.Staging.temp_for", broken)
    with caplog.at_level(logging.WARNING, logger="scconv_deploy"):
        built = build_engine(plan)
    assert built.data == trt.plan_bytes
    assert "the timing cache was not saved" in caplog.text and "No space left on device" in caplog.text


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--timing-cache", "{tmp}/missing/tactics.cache"], "directory {tmp}/missing does not exist"),
        (["-o", "{tmp}/missing/m.plan"], "directory {tmp}/missing does not exist"),
        (["--timing-cache", "{tmp}"], "it is a directory"),
    ],
)
def test_output_and_cache_folders_are_checked_before_any_build(
    demo, tmp_path, capsys, gpu, monkeypatch, args, message
):
    trt = install(monkeypatch)
    argv = [a.format(tmp=tmp_path) for a in args]
    code, out, err = run_cli(capsys, "build", demo, "--no-check", *argv)
    assert code == 2 and out == "" and err.count("\n") == 1
    assert message.format(tmp=tmp_path) in err
    assert trt.calls("builder") == []
    assert run_cli(capsys, "build", demo, "--dry-run", *argv)[0] == 2  # the plan itself is refused


def test_tensorrt_failures_become_one_line_naming_cause_and_fix(demo, tmp_path, capsys, gpu, monkeypatch):
    trt = install(monkeypatch)
    trt.build_error = RuntimeError(
        "[TRT] [E] 2: [virtualMemoryBuffer.cpp] Requested amount of GPU memory failed"
    )
    code, _, err = run_cli(capsys, "build", demo, "--no-check", "-q", "-o", tmp_path / "m.plan")
    assert code == 2 and err.count("\n") == 1
    assert f"TensorRT could not build {demo}" in err and "the GPU ran out of memory" in err

    def no_builder(logger):
        raise TypeError("pybind11::init(): factory function returned nullptr")

    trt.Builder = no_builder
    code, _, err = run_cli(capsys, "build", demo, "--no-check", "-q", "-o", tmp_path / "m.plan")
    assert code == 2 and err.count("\n") == 1 and "TensorRT could not initialise CUDA" in err
    assert not (tmp_path / "m.plan").exists()


def test_the_cli_build_writes_the_plan_and_a_sidecar_of_what_was_built(
    demo, tmp_path, capsys, gpu, monkeypatch
):
    trt = install(monkeypatch, "10.8.0.43")
    code, out, _ = run_cli(
        capsys,
        "build",
        demo,
        "-o",
        tmp_path / "m.plan",
        "--no-check",
        "-q",
        "--hardware-compatibility",
        "same-cc",
    )
    assert code == 0, out
    assert (tmp_path / "m.plan").read_bytes() == trt.plan_bytes
    sidecar = read_sidecar(tmp_path / "m.plan")
    assert sidecar["format_version"] == 2 and sidecar["tensorrt"]["version"] == "10.8.0.43"
    assert sidecar["gpu"] == {
        "name": "NVIDIA H100 80GB HBM3",
        "compute_capability": "9.0",
        "hardware_compatibility": "same-cc",
    }
    assert sidecar["plan"]["sha256"] == sha256_bytes(trt.plan_bytes)
    assert "built " in out and "with TensorRT 10.8.0.43 on NVIDIA H100 80GB HBM3 (sm_90)" in out


def test_the_engine_is_on_disk_before_the_check_so_a_failing_check_cannot_lose_it(
    demo, tmp_path, gpu, monkeypatch
):
    install(monkeypatch)  # its runtime cannot deserialise: loading the engine for the check fails
    monkeypatch.setattr(
        "scconv_deploy.trt.pipeline.prepare_check", lambda plan, path, twin: CheckSetup(path, object(), None)
    )
    plan = BuildPlan.from_onnx(demo, tmp_path / "m.plan")
    with pytest.raises(EngineError, match="TensorRT cannot load this plan"):
        build_and_verify(plan, tmp_path / "golden.npz")
    assert (tmp_path / "m.plan").read_bytes() == b"serialized plan"
    assert json.loads((tmp_path / "m.plan.json").read_text())["verification"] is None


def test_a_progress_monitor_is_attached_when_progress_is_shown(demo, tmp_path, gpu, monkeypatch):
    trt = install(monkeypatch)
    stream = io.StringIO()
    build_engine(BuildPlan.from_onnx(demo, tmp_path / "m.plan"), progress=stream)
    ((monitor,),) = trt.calls("config", "progress_monitor=")
    monitor.phase_start("Building engine", None, 2)
    assert stream.getvalue() == "[build] Building engine (2 steps)\n"
    trt = install(monkeypatch)
    build_engine(BuildPlan.from_onnx(demo, tmp_path / "m.plan"))
    assert trt.calls("config", "progress_monitor=") == []


def test_build_progress_shows_outer_phases_and_their_time():
    stream = io.StringIO()
    progress = BuildProgress(stream)
    progress.phase_start("Building engine", None, 3)
    progress.phase_start("Tactic selection", "Building engine", 40)
    progress.phase_start("Timing conv1", "Tactic selection", 1)
    assert progress.step_complete("Timing conv1", 0) is True
    progress.phase_finish("Timing conv1")
    progress.phase_finish("Tactic selection")
    progress.phase_finish("Building engine")
    lines = stream.getvalue().splitlines()
    assert lines[:2] == ["[build] Building engine (3 steps)", "[build]   Tactic selection (40 steps)"]
    assert lines[2].startswith("[build] Building engine: done in ") and len(lines) == 3
