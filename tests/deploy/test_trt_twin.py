"""The verification twin, MODEL.verify.plan: the engine's ONNX with every SRU mask fed in, built beside it.

Its plan (mask profiles from the golden data's decision shapes), its build through Polygraphy's real
loaders with the recording TensorRT stand-in, and its use by the check and by ``scconv-trt verify``
with ``trt_standin.OrtPlanEngine`` running each plan's ONNX (or verification graph) in ONNX Runtime,
as the plan's sidecar describes the engine. The golden data is PyTorch's, on real test digits, where
every sample holds a gate tie. No TensorRT, GPU or PyTorch needed.
"""

from __future__ import annotations

import json
import logging
import sys
from dataclasses import replace
from pathlib import Path

import onnx
import pytest

from scconv_deploy import EngineError, VerificationError
from scconv_deploy.golden import Golden
from scconv_deploy.trt import (
    BuildPlan,
    ShapeRange,
    build_and_verify,
    read_sidecar,
    sidecar_summary,
    twin_path,
    twin_plan,
)
from scconv_deploy.trt.sidecar import sha256_bytes

from trt_standin import FakeTensorRT, OrtPlanEngine, forget_tensorrt, run_cli

#: every test installs its own TensorRT stand-in (tests/conftest.py)
pytestmark = pytest.mark.usefixtures("fresh_tensorrt")

GATES = ["gate:features.1.0.SRU", "gate:features.3.0.SRU", "gate:features.5.0.SRU"]
MASKS = ["mask:features.1.0.SRU", "mask:features.3.0.SRU", "mask:features.5.0.SRU"]
FORCE = ["force:features.1.0.SRU", "force:features.3.0.SRU", "force:features.5.0.SRU"]
STRONGLY_TYPED_BIT = 1 << 1  # NetworkDefinitionCreationFlag.STRONGLY_TYPED in the stand-in


def shapes(*corners: tuple[int, ...]) -> ShapeRange:
    return ShapeRange(*corners)


@pytest.fixture(scope="module")
def golden(demo_golden) -> Golden:
    return Golden.load(demo_golden)


def install(monkeypatch, version: str = "10.8.0.43") -> FakeTensorRT:
    """The stand-in as ``tensorrt``; built engines run as ``OrtPlanEngine`` (``scale`` for the twin's)."""
    forget_tensorrt()
    fake = FakeTensorRT(version, tensor_names=["conv", *GATES, *MASKS, "output"])
    monkeypatch.setitem(sys.modules, "tensorrt", fake)
    run_as_onnx(monkeypatch)
    return fake


def run_as_onnx(monkeypatch, twin_scale: float = 1.0) -> None:
    def engine(data, sidecar, name):
        return OrtPlanEngine(name, sidecar, scale=twin_scale if sidecar["verification_twin"] else 1.0)

    monkeypatch.setattr("scconv_deploy.trt.pipeline.Engine", engine)


# ---- the twin's plan ------------------------------------------------------------------------------


def test_each_mask_follows_the_batch_range_of_the_input_corner_by_corner(demo_onnx, golden, tmp_path):
    plan = BuildPlan.from_onnx(demo_onnx("batch"), tmp_path / "m.plan", batch=(1, 8, 32))
    twin = twin_plan(plan, golden)
    assert twin.engine_path == tmp_path / "m.verify.plan" == twin_path(plan.engine_path)
    assert twin.profile == {
        "input": shapes((1, 1, 32, 32), (8, 1, 32, 32), (32, 1, 32, 32)),
        FORCE[0]: shapes((1, 32, 32, 32), (8, 32, 32, 32), (32, 32, 32, 32)),
        FORCE[1]: shapes((1, 64, 16, 16), (8, 64, 16, 16), (32, 64, 16, 16)),
        FORCE[2]: shapes((1, 128, 8, 8), (8, 128, 8, 8), (32, 128, 8, 8)),
    }
    assert [i.name for i in twin.inputs] == ["input", *FORCE]
    assert twin.outputs == ["output", *MASKS] and twin.engine_outputs == ["output", *MASKS]
    same = ("precision", "workspace", "timing_cache", "version_compatible", "hardware_compatibility")
    assert all(getattr(twin, k) == getattr(plan, k) for k in same) and twin.onnx_path == plan.onnx_path


def test_with_a_dynamic_size_each_mask_is_the_input_size_scaled_by_its_block(demo_onnx, golden, tmp_path):
    hw = ((16, 24), (32, 32), (64, 96))
    plan = BuildPlan.from_onnx(demo_onnx("batch+hw"), tmp_path / "m.plan", batch=(1, 4, 8), hw=hw)
    profile = twin_plan(plan, golden).profile
    assert profile["input"] == shapes((1, 1, 16, 24), (4, 1, 32, 32), (8, 1, 64, 96))
    assert profile[FORCE[0]] == shapes((1, 32, 16, 24), (4, 32, 32, 32), (8, 32, 64, 96))
    assert profile[FORCE[1]] == shapes((1, 64, 8, 12), (4, 64, 16, 16), (8, 64, 32, 48))
    assert profile[FORCE[2]] == shapes((1, 128, 4, 6), (4, 128, 8, 8), (8, 128, 16, 24))


def test_a_static_model_gets_a_fixed_twin_profile(demo_onnx, golden, tmp_path):
    plan = BuildPlan.from_onnx(demo_onnx("none"), tmp_path / "m.plan")
    profile = twin_plan(plan, golden).profile
    assert profile == {
        "input": shapes(*[(1, 1, 32, 32)] * 3),
        FORCE[0]: shapes(*[(1, 32, 32, 32)] * 3),
        FORCE[1]: shapes(*[(1, 64, 16, 16)] * 3),
        FORCE[2]: shapes(*[(1, 128, 8, 8)] * 3),
    }


@pytest.mark.parametrize(
    ("hw", "message"),
    [
        ("30:32:64", "the min height 30 of input 'input' gives 'force:features.5.0.SRU' no whole size"),
        ("32:34:64", "the opt height 34 of input 'input' gives 'force:features.5.0.SRU' no whole size"),
        ("32x32:32x32:64x66", "the max width 66 of input 'input' gives 'force:features.5.0.SRU' no whole"),
    ],
)
def test_sizes_that_give_a_mask_no_whole_size_are_refused_in_one_line(
    demo_onnx, demo_golden, tmp_path, capsys, hw, message
):
    argv = ["build", demo_onnx("batch+hw"), "--golden", demo_golden, "-o", tmp_path / "m.plan", "--hw", hw]
    code, _, err = run_cli(capsys, *argv, "--dry-run")
    assert code == 2 and err.count("\n") == 1
    assert message in err and "(its mask is 1/4 of the input's" in err and "divisible by 4" in err
    assert "--no-twin" in err
    assert run_cli(capsys, *argv, "--dry-run", "--no-twin")[0] == 0  # the deployment engine alone builds


def _without_last_block(golden: Golden) -> Golden:
    return replace(
        golden,
        gates=golden.gates[:2],
        decisions=golden.decisions[:2],
        classes=golden.classes[:2],
        margins=golden.margins[:, :2],
    )


def test_golden_data_of_other_blocks_or_mask_shapes_is_refused(demo_onnx, golden, tmp_path):
    plan = BuildPlan.from_onnx(demo_onnx("batch"), tmp_path / "m.plan")
    other_blocks = r"the golden data's SCConv blocks \(2: .*\) are not those of .*\(3:"
    with pytest.raises(EngineError, match=other_blocks):
        twin_plan(plan, _without_last_block(golden))
    narrow = replace(golden, decisions=[golden.decisions[0][:, :16], *golden.decisions[1:]])
    with pytest.raises(
        EngineError,
        match=r"'force:features.1.0.SRU' is \[batch, 32, 32, 32\] in demo-batch.onnx, the golden data's "
        r"decisions make it 1x16x32x32 to 8x16x32x32: pass the golden file written with this ONNX",
    ):
        twin_plan(plan, narrow)
    halved = replace(golden, decisions=[golden.decisions[0][:, :, ::2, ::2], *golden.decisions[1:]])
    with pytest.raises(EngineError, match=r"'force:features.1.0.SRU' is \[1, 32, 32, 32\] in demo-none.onnx"):
        twin_plan(BuildPlan.from_onnx(demo_onnx("none"), tmp_path / "m.plan"), halved)


def test_mismatched_golden_data_stops_the_build_before_tensorrt_builds_anything(
    demo_onnx, golden, tmp_path, capsys, gpu, monkeypatch
):
    trt = install(monkeypatch)
    _without_last_block(golden).save(tmp_path / "other.golden.npz")
    argv = ["build", demo_onnx("batch"), "--golden", tmp_path / "other.golden.npz", "-o", tmp_path / "m.plan"]
    code, out, err = run_cli(capsys, *argv, "-q")
    assert code == 2 and out == "" and err.count("\n") == 1 and "SCConv blocks" in err
    assert trt.calls("builder") == [] and not (tmp_path / "m.plan").exists()


def test_dry_run_shows_the_twins_plan_and_its_mask_profiles_without_tensorrt(
    demo_onnx, demo_golden, tmp_path, capsys, monkeypatch
):
    monkeypatch.setitem(sys.modules, "tensorrt", None)  # as on a host without TensorRT
    argv = ["build", demo_onnx("batch+hw"), "-o", tmp_path / "m.plan", "--golden", demo_golden]
    code, out, _ = run_cli(capsys, *argv, "--dry-run", "--batch", "1:8:32", "--hw", "16:32:64")
    assert code == 0
    assert f"check against {demo_golden} (22 samples)" in out
    twin = out[out.index(f"build plan for the verification twin of {tmp_path / 'm.plan'}") :]
    assert f"engine          {tmp_path / 'm.verify.plan'} (sidecar m.verify.plan.json)" in twin
    assert "profile         force:features.3.0.SRU: min 1x64x8x8, opt 8x64x16x16, max 32x64x32x32" in twin
    assert "profile         force:features.5.0.SRU: min 1x128x4x4, opt 8x128x8x8, max 32x128x16x16" in twin
    assert f"outputs         output, {', '.join(MASKS)}" in twin
    assert '"of": "m.plan"' in twin and '"force_inputs": [' in twin

    code, out, _ = run_cli(capsys, *argv, "--dry-run", "--no-twin")
    assert code == 0 and "verification twin: none (--no-twin)" in out
    assert "build plan for the verification" not in out
    code, out, _ = run_cli(capsys, "build", demo_onnx("batch+hw"), "--dry-run", "--no-check")
    assert code == 0 and "no check (--no-check): no verification twin" in out


# ---- build and check ------------------------------------------------------------------------------


def test_build_writes_the_engine_and_its_twin_with_sidecars_and_compares_every_sample(
    demo_onnx, demo_golden, tmp_path, gpu, monkeypatch
):
    trt = install(monkeypatch)
    demo = demo_onnx("batch")
    plan = BuildPlan.from_onnx(
        demo,
        tmp_path / "m.plan",
        batch=(1, 4, 8),
        workspace=1 << 28,
        timing_cache=tmp_path / "tactics.cache",
        hardware_compatibility="ampere+",
        builder_opt_level=4,
    )
    result = build_and_verify(plan, demo_golden)

    assert result.ok and result.verification.compared == 22 == result.verification.samples
    assert sorted(p.name for p in tmp_path.glob("m.*")) == [
        "m.plan",
        "m.plan.json",
        "m.verify.plan",
        "m.verify.plan.json",
    ]
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary files left
    # TensorRT parsed the ONNX as given, then its verification graph (from a temporary file, now gone).
    first, second = trt.calls("parser", "parse_from_file")
    assert first == (str(demo),) and not Path(second[0]).exists()
    assert [i.name for i in trt.parsed[0].graph.input] == ["input"]
    assert [i.name for i in trt.parsed[1].graph.input] == ["input", *FORCE]
    # Both with the same settings: strongly typed, workspace, level, compatibility, the same timing cache.
    assert all(flags[0] & STRONGLY_TYPED_BIT for flags in trt.calls("builder", "create_network"))
    assert trt.calls("config", "set_memory_pool_limit") == [(trt.MemoryPoolType.WORKSPACE, 1 << 28)] * 2
    assert trt.calls("config", "builder_optimization_level=") == [(4,)] * 2
    level = trt.HardwareCompatibilityLevel.AMPERE_PLUS
    assert trt.calls("config", "hardware_compatibility_level=") == [(level,)] * 2
    assert trt.calls("config", "create_timing_cache") == [(b"",), (b"+timings",)]  # the twin reuses it
    assert trt.calls("profile", "set_shape") == [
        ("input", (1, 1, 32, 32), (4, 1, 32, 32), (8, 1, 32, 32)),
        ("input", (1, 1, 32, 32), (4, 1, 32, 32), (8, 1, 32, 32)),
        (FORCE[0], (1, 32, 32, 32), (4, 32, 32, 32), (8, 32, 32, 32)),
        (FORCE[1], (1, 64, 16, 16), (4, 64, 16, 16), (8, 64, 16, 16)),
        (FORCE[2], (1, 128, 8, 8), (4, 128, 8, 8), (8, 128, 8, 8)),
    ]

    engine, twin = read_sidecar(tmp_path / "m.plan"), read_sidecar(tmp_path / "m.verify.plan")
    assert engine["verification_twin"] is None and engine["outputs"] == ["output"]
    assert list(engine["profiles"][0]) == ["input"]  # the deployment engine is the ONNX as given
    assert twin["verification_twin"]["of"] == "m.plan"
    assert twin["verification_twin"]["plan_sha256"] == sha256_bytes(trt.plan_bytes)
    assert (twin["force_inputs"], twin["mask_outputs"]) == (FORCE, MASKS)
    assert twin["onnx"] == engine["onnx"]  # the same ONNX file, hash and metadata
    assert list(twin["profiles"][0]) == ["input", *FORCE] and twin["outputs"] == ["output", *MASKS]
    for sidecar in (engine, twin):
        check = sidecar["verification"]
        assert check["passed"] and check["compared"] == 22 and check["twin"] == "m.verify.plan"
    text = str(result)
    assert "built its verification twin" in text and str(tmp_path / "m.verify.plan.json") in text
    assert "verification twin of m.plan: the ONNX with every SRU mask fed in" in sidecar_summary(twin)


def test_the_twin_of_an_onnx_with_external_data_is_parsed_from_beside_it(
    demo_onnx, demo_golden, tmp_path, gpu, monkeypatch
):
    trt = install(monkeypatch)
    model = onnx.load(str(demo_onnx("batch")))
    (tmp_path / "models").mkdir()
    onnx_path = tmp_path / "models" / "demo.onnx"
    onnx.save(model, str(onnx_path), save_as_external_data=True, location="demo.weights", size_threshold=0)
    assert build_and_verify(BuildPlan.from_onnx(onnx_path, tmp_path / "m.plan"), demo_golden).ok
    _, (twin_file,) = trt.calls("parser", "parse_from_file")
    assert Path(twin_file).parent == onnx_path.parent  # where "demo.weights" resolves
    assert sorted(p.name for p in onnx_path.parent.iterdir()) == ["demo.onnx", "demo.weights"]


def test_a_twin_that_computes_wrongly_fails_the_check_and_both_engines_are_kept(
    demo_onnx, demo_golden, tmp_path, gpu, monkeypatch
):
    install(monkeypatch)
    run_as_onnx(monkeypatch, twin_scale=1.01)
    result = build_and_verify(BuildPlan.from_onnx(demo_onnx("batch"), tmp_path / "m.plan"), demo_golden)
    assert not result.ok and "beyond tolerance" in result.verification.reasons[0]
    for plan in ("m.plan", "m.verify.plan"):
        assert read_sidecar(tmp_path / plan)["verification"]["passed"] is False


def test_with_debug_gates_the_engine_is_also_compared_where_its_own_decisions_agree(
    demo_onnx, demo_golden, tmp_path, gpu, monkeypatch
):
    trt = install(monkeypatch)
    plan = BuildPlan.from_onnx(demo_onnx("batch"), tmp_path / "m.plan", debug_gates=True)
    result = build_and_verify(plan, demo_golden)
    assert trt.calls("network", "mark_output") == [(name,) for name in GATES]  # the deployment engine only
    assert result.ok and result.verification.compared == 22
    deployed = result.verification.deployed
    assert deployed.flips is not None and 0 < len(deployed.compared) < 22  # ties taken the other way
    assert read_sidecar(tmp_path / "m.verify.plan")["gate_outputs"] == []


def test_without_a_twin_a_model_whose_every_sample_holds_a_tie_cannot_pass(
    demo_onnx, demo_golden, tmp_path, gpu, monkeypatch, caplog
):
    install(monkeypatch)
    plan = BuildPlan.from_onnx(demo_onnx("batch"), tmp_path / "m.plan")
    build_and_verify(plan, demo_golden)
    assert twin_path(plan.engine_path).is_file()
    with caplog.at_level(logging.WARNING, logger="scconv_deploy"):
        result = build_and_verify(plan, demo_golden, twin=False)
    assert not result.ok and result.verification.compared == 0 and result.twin is None
    assert any("no sample was compared" in r for r in result.verification.reasons)
    assert "without a verification twin or --debug-gates the check can compare no sample" in caplog.text
    # The twin of the engine this build replaced is gone: it verified another build.
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.plan", "m.plan.json"]
    assert "removed " + str(tmp_path / "m.verify.plan") in caplog.text
    assert read_sidecar(tmp_path / "m.plan")["verification"]["twin"] is None


def test_no_twin_and_no_check_build_the_deployment_engine_only(demo_onnx, tmp_path, capsys, gpu, monkeypatch):
    trt = install(monkeypatch)
    code, out, _ = run_cli(capsys, "build", demo_onnx("batch"), "-o", tmp_path / "m.plan", "--no-check", "-q")
    assert code == 0 and "verification twin" not in out
    assert len(trt.calls("builder", "build_serialized_network")) == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.plan", "m.plan.json"]


def test_a_failing_twin_build_keeps_the_deployment_engine(demo_onnx, demo_golden, tmp_path, gpu, monkeypatch):
    trt = install(monkeypatch)
    trt.build_error, trt.fail_build = RuntimeError("[TRT] [E] Requested amount of GPU memory failed"), 2
    plan = BuildPlan.from_onnx(demo_onnx("batch"), tmp_path / "m.plan")
    failed = r"TensorRT could not build the verification twin of .*out of memory"
    with pytest.raises(EngineError, match=failed):
        build_and_verify(plan, demo_golden)
    assert (tmp_path / "m.plan").read_bytes() == trt.plan_bytes
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.plan", "m.plan.json"]  # no temporary files


# ---- scconv-trt verify ----------------------------------------------------------------------------


@pytest.fixture
def built(demo_onnx, demo_golden, tmp_path, gpu, monkeypatch) -> Path:
    """m.plan and its twin m.verify.plan, built (stand-in) and checked; ``load_engine`` runs them in ORT."""
    install(monkeypatch)
    assert build_and_verify(BuildPlan.from_onnx(demo_onnx("batch"), tmp_path / "m.plan"), demo_golden).ok
    return tmp_path / "m.plan"


@pytest.fixture
def loads(monkeypatch) -> list[tuple[str, bool]]:
    """``load_engine`` for ``verify``: each plan as an OrtPlanEngine; records (plan, check_compatibility)."""
    calls = []

    def load(path, *, check_compatibility=True):
        calls.append((Path(path).name, check_compatibility))
        return OrtPlanEngine(path, read_sidecar(path))

    monkeypatch.setattr("scconv_deploy.trt.check.load_engine", load)
    return calls


def test_verify_runs_the_twin_beside_the_plan_on_every_sample(built, demo_golden, capsys, loads):
    code, out, _ = run_cli(capsys, "verify", built, "--golden", demo_golden)
    assert code == 0, out
    assert "verification PASSED" in out
    assert "22/22 samples compared with PyTorch's gate decisions fed in" in out
    assert loads == [("m.plan", True), ("m.verify.plan", True)]
    loads.clear()
    assert run_cli(capsys, "verify", built, "--golden", demo_golden, "--no-compat-check")[0] == 0
    assert loads == [("m.plan", False), ("m.verify.plan", False)]  # the override reaches both loads


def test_verify_without_the_twin_compares_only_what_the_engine_allows(built, demo_golden, capsys, loads):
    twin_path(built).unlink()
    code, out, _ = run_cli(capsys, "verify", built, "--golden", demo_golden)
    assert code == 1 and "0/22 samples compared" in out and loads == [("m.plan", True)]


def _edit_sidecar(plan: Path, edit) -> None:
    path = plan.with_name(plan.name + ".json")
    sidecar = json.loads(path.read_text())
    edit(sidecar)
    path.write_text(json.dumps(sidecar))


def test_a_twin_of_another_build_or_a_file_that_is_no_twin_is_refused_in_one_line(
    built, demo_golden, capsys, loads
):
    twin = twin_path(built)
    _edit_sidecar(twin, lambda s: s["verification_twin"].update(plan_sha256="0" * 64))
    code, out, err = run_cli(capsys, "verify", built, "--golden", demo_golden)
    assert code == 2 and out == "" and err.count("\n") == 1
    assert f"{twin} is the verification twin of another build of m.plan: rebuild both" in err
    code, _, err = run_cli(capsys, "verify", twin, "--golden", demo_golden)
    assert code == 2 and err.count("\n") == 1
    assert f"{twin} is a verification twin: verify the engine it was built for, m.plan" in err
    _edit_sidecar(twin, lambda s: s.update(verification_twin=None))
    code, _, err = run_cli(capsys, "verify", built, "--golden", demo_golden)
    assert code == 2 and err.count("\n") == 1 and f"{twin} is not a verification twin" in err


def test_golden_data_the_twin_does_not_fit_is_refused_in_one_line(built, golden, tmp_path, capsys, loads):
    _without_last_block(golden).save(tmp_path / "two.golden.npz")
    code, _, err = run_cli(capsys, "verify", built, "--golden", tmp_path / "two.golden.npz")
    assert code == 2 and err.count("\n") == 1
    assert "the verification twin has 3 forced gates, the golden data 2 blocks" in err
    narrow = replace(golden, decisions=[golden.decisions[0][:, :16], *golden.decisions[1:]])
    narrow.save(tmp_path / "narrow.golden.npz")
    code, _, err = run_cli(capsys, "verify", built, "--golden", tmp_path / "narrow.golden.npz")
    assert code == 2 and err.count("\n") == 1
    assert "golden decisions of shape 22x16x32x32 do not fit the verification twin's profile" in err
    assert loads[-2:] == [("m.plan", True), ("m.verify.plan", True)]


def test_verify_engine_refuses_a_twin_of_other_blocks_before_running_anything(built, golden):
    from scconv_deploy.trt import verify_engine

    engine = OrtPlanEngine(built, read_sidecar(built))
    twin = OrtPlanEngine(twin_path(built), read_sidecar(twin_path(built)))
    renamed = ([*FORCE[:2], "force:other"], [*MASKS[:2], "mask:other"])
    with pytest.raises(VerificationError, match="the verification twin's SCConv blocks"):
        verify_engine(engine, golden, twin=twin, twin_tensors=renamed)
    assert engine.batches == [] and twin.batches == []
