"""scconv-trt build/verify/bench/inspect up to the TensorRT call: plans, profiles, precision, sidecars,
verification logic, the ONNX Runtime benchmark, and one-line failures where TensorRT or CUDA is missing.

Nothing here needs TensorRT or a GPU (tests/test_trt_gpu.py runs the rest where they exist).
"""

from __future__ import annotations

import io
import json
import shutil
import sys
import types
from dataclasses import replace
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from onnx import TensorProto, helper, numpy_helper

from scconv_deploy import EngineError, VerificationError
from scconv_deploy.checkpoint import load_checkpoint
from scconv_deploy.cli.trt import main
from scconv_deploy.convert import to_deploy
from scconv_deploy.datasets import load_digits
from scconv_deploy.gates import with_gate_outputs
from scconv_deploy.golden import Golden
from scconv_deploy.onnx_export import export_onnx
from scconv_deploy.tap import make_golden
from scconv_deploy.trt import (
    INSTALL_TRT,
    BuildInfo,
    BuildPlan,
    BuildProgress,
    OnnxInput,
    ShapeRange,
    TensorSpec,
    check_compatible,
    find_golden,
    layer_info,
    load_golden_for,
    make_profile,
    measure,
    onnx_precision,
    read_sidecar,
    sidecar_path,
    sidecar_summary,
    verify_engine,
    write_engine_files,
)
from scconv_deploy.trt.build import engine_loader
from scconv_deploy.trt.inspect import EngineReport
from scconv_deploy.trt.plan import parse_size
from scconv_deploy.trt.profile import parse_hw, parse_range, parse_shapes
from scconv_deploy.trt.sidecar import check_plan, sha256_bytes
from scconv_deploy.verify import forced_graph, tolerance_for

ROOT = Path(__file__).resolve().parents[1]
DEMO = ROOT / "models" / "scconv_cnn_digits_seed.pt"

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning", "ignore::UserWarning")


@pytest.fixture(scope="module")
def demo(tmp_path_factory) -> Path:
    """The demo model as scconv-export ships it: dynamic batch, N x 1 x 32 x 32."""
    out = tmp_path_factory.mktemp("demo") / "demo.onnx"
    export_onnx(DEMO, out, exporter="legacy", check=False)
    return out


@pytest.fixture(scope="module")
def demo_hw(tmp_path_factory) -> Path:
    """The demo model with dynamic batch, height and width."""
    out = tmp_path_factory.mktemp("demo_hw") / "demo_hw.onnx"
    export_onnx(DEMO, out, exporter="legacy", check=False, dynamic="batch+hw")
    return out


@pytest.fixture(scope="module")
def golden() -> Golden:
    """PyTorch outputs and gate decisions of the demo's export form on 22 real test digits."""
    ckpt = load_checkpoint(DEMO)
    images, _ = load_digits("test")
    x = ((images[:22] - np.float32(ckpt.meta["mean"][0])) / np.float32(ckpt.meta["std"][0])).astype(
        np.float32
    )
    return make_golden(to_deploy(ckpt.model.eval()), x, ["output"])


def run_cli(capsys, *argv: str) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def tiny_model(nodes, inits=(), shape=(1, 4)) -> onnx.ModelProto:
    graph = helper.make_graph(
        nodes,
        "tiny",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, list(shape))],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, list(shape))],
        initializer=list(inits),
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])


def save(model: onnx.ModelProto, path: Path) -> Path:
    onnx.save(model, str(path))
    return path


# ---- build --dry-run: the plan without TensorRT ------------------------------------------------------


def test_dry_run_shows_default_profile_fp32_clean_lint_and_the_sidecar(demo, capsys):
    code, out, _ = run_cli(capsys, "build", demo, "--dry-run")
    assert code == 0
    assert "input: min 1x1x32x32, opt 1x1x32x32, max 8x1x32x32" in out
    assert "batch 1:1:8 is the default for a dynamic batch" in out
    assert "FP32 (weights 100% float32" in out and "built strongly typed" in out
    assert "TensorRT 10, opset 18: clean" in out
    assert "3 in the metadata, not exposed" in out
    sidecar = json.loads(out[out.index("{") : out.rindex("}") + 1])
    assert sidecar["profiles"] == [
        {"input": {"min": [1, 1, 32, 32], "opt": [1, 1, 32, 32], "max": [8, 1, 32, 32]}}
    ]
    assert sidecar["tensorrt"]["version"] is None and sidecar["gpu"]["name"] is None  # known at build time
    assert sidecar["onnx"]["metadata"]["scconv.gate_tensors"]
    assert sidecar["precision"]["kind"] == "FP32"
    assert not demo.with_suffix(".plan").exists() and not sidecar_path(demo.with_suffix(".plan")).exists()


def test_dry_run_takes_batch_and_hw_ranges_on_a_dynamic_hw_model(demo_hw, capsys):
    code, out, _ = run_cli(capsys, "build", demo_hw, "--dry-run", "--batch", "2:4:16", "--hw", "16:32:64")
    assert code == 0
    assert "input: min 2x1x16x16, opt 4x1x32x32, max 16x1x64x64" in out
    assert "note:" not in out
    code, out, _ = run_cli(capsys, "build", demo_hw, "--dry-run", "--hw", "16x24:32x32:64x48")
    assert "input: min 1x1x16x24, opt 1x1x32x32, max 8x1x64x48" in out


def test_dynamic_hw_defaults_to_the_export_shape_and_says_so(demo_hw, capsys):
    _, out, _ = run_cli(capsys, "build", demo_hw, "--dry-run")
    assert "input: min 1x1x32x32, opt 1x1x32x32, max 8x1x32x32" in out
    assert "height and width fixed at the export shape (32x32); set --hw for a range" in out


def test_explicit_shapes_set_a_whole_input(demo, capsys):
    code, out, _ = run_cli(
        capsys, "build", demo, "--dry-run", "--shapes", "input:1x1x32x32:4x1x32x32:8x1x32x32"
    )
    assert code == 0 and "input: min 1x1x32x32, opt 4x1x32x32, max 8x1x32x32" in out


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--hw", "16:32:64"], "the height of input 'input', which is static (32) in the ONNX"),
        (
            ["--shapes", "image:1x1x32x32:1x1x32x32:1x1x32x32"],
            "'image', not an input of the model (inputs: input)",
        ),
        (["--shapes", "input:1x32x32:1x32x32:1x32x32"], "3 dimensions given, the input has 4"),
        (
            ["--shapes", "input:1x2x32x32:1x2x32x32:1x2x32x32"],
            "dim 1 of input 'input', which is static (1) in the ONNX: it is fixed by the network",
        ),
    ],
)
def test_profiles_that_contradict_the_onnx_fail_with_one_line(demo, capsys, args, message):
    code, out, err = run_cli(capsys, "build", demo, "--dry-run", *args)
    assert code == 2 and out == ""
    assert err.count("\n") == 1 and message in err


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--batch", "8:4:16"], "need MIN <= OPT <= MAX"),
        (["--batch", "1:2"], "expected MIN:OPT:MAX"),
        (["--hw", "32x32x3"], "is not a size or HxW"),
        (["--workspace", "lots"], "expected a size like 4G"),
        (["--builder-opt-level", "7"], "invalid choice"),
    ],
)
def test_malformed_options_are_usage_errors(demo, capsys, args, message):
    with pytest.raises(SystemExit) as exit_info:
        main(["build", str(demo), "--dry-run", *args])
    assert exit_info.value.code == 2 and message in capsys.readouterr().err


def test_option_parsers():
    assert parse_range("4") == (4, 4, 4) and parse_range("1:4:8") == (1, 4, 8)
    assert parse_hw("64") == ((64, 64), (64, 64), (64, 64))
    assert parse_hw("32x48:64X64:128x96") == ((32, 48), (64, 64), (128, 96))
    assert parse_shapes(["in:put:1x3:2x3:4x3"]) == {"in:put": ShapeRange((1, 3), (2, 3), (4, 3))}
    assert parse_size("4G") == 4 << 30 and parse_size("512MiB") == 512 << 20 and parse_size("1000") == 1000
    with pytest.raises(EngineError, match="twice"):
        parse_shapes(["x:1:1:1", "x:2:2:2"])
    with pytest.raises(EngineError, match="need MIN <= OPT <= MAX"):
        parse_hw("64x32:32x32:64x64")


def test_profile_rules_on_declared_inputs():
    static = [OnnxInput("x", (1, 3, 224, 224), "float32")]
    assert make_profile(static) == ({"x": ShapeRange(*[(1, 3, 224, 224)] * 3)}, [])
    assert make_profile(static, batch=(1, 1, 1))[0]["x"].max == (
        1,
        3,
        224,
        224,
    )  # the static value itself is fine
    with pytest.raises(EngineError, match=r"static \(1\) in the ONNX: re-export with --dynamic batch"):
        make_profile(static, batch=(1, 4, 8))
    unnamed = [OnnxInput("x", ("N", 3, "H", "W"), "float32")]
    with pytest.raises(
        EngineError, match="height of input 'x' is dynamic and the ONNX records no export shape"
    ):
        make_profile(unnamed)
    profile, notes = make_profile(unnamed, batch=(2, 2, 2), hw=((8, 8), (16, 16), (32, 32)))
    assert profile["x"] == ShapeRange((2, 3, 8, 8), (2, 3, 16, 16), (2, 3, 32, 32)) and notes == []
    with pytest.raises(EngineError, match="--hw applies to 4-D"):
        make_profile([OnnxInput("t", ("N", 16), "float32")], hw=((8, 8),) * 3)


def test_debug_gates_exposes_the_metadata_gate_tensors(demo, capsys):
    code, out, _ = run_cli(
        capsys, "build", demo, "--dry-run", "--debug-gates", "-o", demo.with_name("g.plan")
    )
    assert code == 0 and "3 gate tensors exposed as engine outputs (--debug-gates)" in out
    sidecar = json.loads(out[out.index("{") : out.rindex("}") + 1])
    assert sidecar["outputs"] == ["output", *sidecar["gate_tensors"]] == ["output", *sidecar["gate_outputs"]]


def test_debug_gates_needs_gate_metadata(tmp_path, capsys):
    plain = save(tiny_model([helper.make_node("Relu", ["x"], ["y"])]), tmp_path / "plain.onnx")
    code, _, err = run_cli(capsys, "build", plain, "--dry-run", "--debug-gates")
    assert code == 2 and "no 'scconv.gate_tensors' metadata" in err


def test_dry_run_with_lint_errors_exits_1(tmp_path, capsys):
    bad = save(tiny_model([helper.make_node("Unique", ["x"], ["y"])]), tmp_path / "bad.onnx")
    code, out, _ = run_cli(capsys, "build", bad, "--dry-run", "--trt", "11")
    assert code == 1 and "TensorRT 11" in out and "TRT001" in out


def test_plan_to_dict_is_json_and_names_everything(demo_hw, tmp_path):
    plan = BuildPlan.from_onnx(
        demo_hw,
        tmp_path / "m.plan",
        batch=(1, 4, 8),
        workspace=1 << 30,
        timing_cache=tmp_path / "tactics.cache",
        version_compatible=True,
        builder_opt_level=5,
    )
    d = json.loads(json.dumps(plan.to_dict()))
    assert d["profile"]["input"]["opt"] == [4, 1, 32, 32]
    assert d["workspace_bytes"] == 1 << 30 and d["builder_optimization_level"] == 5
    assert d["sidecar"]["tensorrt"]["version_compatible"] is True
    text = str(plan)
    assert "1024 MiB" in text and "tactics.cache (created, updated after the build)" in text
    assert "yes (runs on newer TensorRT of the same major)" in text


# ---- precision read from the ONNX ------------------------------------------------------------------


def _conv(weight_dtype, cast_in: bool) -> onnx.ModelProto:
    w = numpy_helper.from_array(np.ones((4, 4, 1, 1), weight_dtype), "w")
    nodes = [helper.make_node("Conv", ["xh" if cast_in else "x", "w"], ["yh" if cast_in else "y"])]
    if cast_in:
        nodes = [
            helper.make_node("Cast", ["x"], ["xh"], to=TensorProto.FLOAT16),
            *nodes,
            helper.make_node("Cast", ["yh"], ["y"], to=TensorProto.FLOAT),
        ]
    return tiny_model(nodes, [w], shape=("N", 4, 8, 8))


def test_fp32_onnx_is_fp32():
    precision = onnx_precision(_conv(np.float32, cast_in=False))
    assert precision.kind == "FP32" and precision.qdq_nodes == 0 and precision.fp16_weight_fraction == 0


def test_float16_weights_make_an_fp16_onnx_and_the_mix_is_reported():
    precision = onnx_precision(_conv(np.float16, cast_in=True))
    assert precision.kind == "FP16" and precision.fp16_weight_fraction == 1.0
    assert precision.casts == {"float16": 1, "float32": 1}
    assert str(precision).startswith("FP16 (weights 100% float16; casts 1 to float16, 1 to float32; no Q/DQ")


def test_casts_to_float16_dominating_make_fp16_even_with_float32_weights():
    model = _conv(np.float32, cast_in=True)
    model.graph.node.insert(0, helper.make_node("Cast", ["x"], ["unused"], to=TensorProto.FLOAT16))
    assert onnx_precision(model).kind == "FP16"


def test_quantize_dequantize_nodes_make_int8():
    scale = numpy_helper.from_array(np.array(0.1, np.float32), "s")
    zero = numpy_helper.from_array(np.array(0, np.int8), "z")
    nodes = [
        helper.make_node("QuantizeLinear", ["x", "s", "z"], ["q"]),
        helper.make_node("DequantizeLinear", ["q", "s", "z"], ["y"]),
    ]
    precision = onnx_precision(tiny_model(nodes, [scale, zero]))
    assert precision.kind == "INT8" and precision.qdq_nodes == 2 and "2 Q/DQ nodes" in str(precision)


def test_dry_run_reports_an_fp16_onnx(tmp_path, capsys):
    path = save(_conv(np.float16, cast_in=True), tmp_path / "half.onnx")
    code, out, _ = run_cli(capsys, "build", path, "--dry-run", "--batch", "1:2:4")
    assert code == 0 and "precision       FP16 (weights 100% float16" in out


def test_a_precision_the_metadata_declares_but_the_graph_lacks_is_noted(tmp_path):
    model = _conv(np.float32, cast_in=False)
    model.metadata_props.add(key="precision", value="fp16")
    plan = BuildPlan.from_onnx(save(model, tmp_path / "m.onnx"), batch=(1, 1, 1))
    assert plan.precision.kind == "FP32"
    assert "the metadata says precision fp16, the graph reads as FP32" in plan.notes


# ---- without TensorRT or CUDA: one line, exit 2 ------------------------------------------------------


@pytest.fixture
def no_tensorrt(monkeypatch):
    """``import tensorrt`` fails, as on a machine without it (this one has none anyway)."""
    monkeypatch.setitem(sys.modules, "tensorrt", None)


@pytest.fixture
def tensorrt_without_cuda(monkeypatch):
    """A TensorRT module is importable, but PyTorch sees no CUDA device."""
    monkeypatch.setitem(sys.modules, "tensorrt", types.SimpleNamespace(__version__="10.8.0.43"))
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)


def _commands(demo: Path) -> list[list[str]]:
    plan = str(demo.with_suffix(".plan"))
    return [["build", str(demo)], ["verify", plan], ["inspect", plan], ["bench", plan]]


@pytest.mark.parametrize("index", range(4), ids=["build", "verify", "inspect", "bench-plan"])
def test_commands_needing_tensorrt_fail_with_one_line_saying_how_to_install_it(
    demo, capsys, no_tensorrt, index
):
    code, out, err = run_cli(capsys, *_commands(demo)[index])
    assert code == 2 and out == ""
    assert err.count("\n") == 1 and err.startswith("scconv-trt: error: TensorRT is not installed")
    assert INSTALL_TRT in err and "https://pypi.nvidia.com" in err


@pytest.mark.parametrize("index", range(4), ids=["build", "verify", "inspect", "bench-plan"])
def test_commands_needing_a_gpu_fail_with_one_line_without_cuda(demo, capsys, tensorrt_without_cuda, index):
    code, out, err = run_cli(capsys, *_commands(demo)[index])
    assert code == 2 and out == ""
    assert err.count("\n") == 1 and "no CUDA device: TensorRT needs an NVIDIA GPU and its driver" in err


def test_dry_run_lint_and_onnx_bench_need_no_tensorrt(demo, capsys, no_tensorrt):
    assert run_cli(capsys, "build", demo, "--dry-run")[0] == 0
    assert run_cli(capsys, "lint", demo)[0] == 0
    assert run_cli(capsys, "bench", demo, "--batch-sizes", "1", "--iterations", "1", "--warmup", "0")[0] == 0


def test_help_shows_examples(capsys):
    for command in ("build", "verify", "bench", "inspect"):
        with pytest.raises(SystemExit) as exit_info:
            main([command, "--help"])
        assert exit_info.value.code == 0 and f"scconv-trt {command} " in capsys.readouterr().out


# ---- the sidecar -----------------------------------------------------------------------------------

H100 = ("NVIDIA H100 80GB HBM3", "9.0")


def _sidecar(
    demo: Path, plan_bytes: bytes, trt_version="10.8.0.43", gpu=H100, version_compatible=False
) -> dict:
    plan = BuildPlan.from_onnx(demo, demo.with_name("m.plan"), version_compatible=version_compatible)
    info = BuildInfo(
        trt_version, *gpu, 12.5, "2026-12-01T10:00:00+00:00", sha256_bytes(plan_bytes), len(plan_bytes)
    )
    return plan.sidecar(info)


def test_engine_and_sidecar_are_written_together_and_read_back(demo, tmp_path):
    data = b"\x00plan bytes, as TensorRT serialised them"
    sidecar = _sidecar(demo, data)
    plan_path, side = write_engine_files(tmp_path / "m.plan", data, sidecar)
    assert plan_path.read_bytes() == data  # untouched: no header
    assert side == tmp_path / "m.plan.json" and read_sidecar(plan_path) == sidecar
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.plan", "m.plan.json"]  # no temp files left
    assert sidecar["tensorrt"]["version"] == "10.8.0.43" and sidecar["gpu"]["compute_capability"] == "9.0"
    assert sidecar["build"]["seconds"] == 12.5 and sidecar["plan"]["bytes"] == len(data)
    check_plan(sidecar, data, plan_path)
    with pytest.raises(EngineError, match="describes another plan"):
        check_plan(sidecar, data + b"!", plan_path)


def test_missing_and_foreign_sidecars(tmp_path):
    assert read_sidecar(tmp_path / "none.plan") is None
    (tmp_path / "x.plan.json").write_text('{"hello": 1}')
    with pytest.raises(EngineError, match="not an scconv-deploy engine sidecar"):
        read_sidecar(tmp_path / "x.plan")
    (tmp_path / "y.plan.json").write_text("{not json")
    with pytest.raises(EngineError, match="not a readable sidecar"):
        read_sidecar(tmp_path / "y.plan")


def test_a_mismatched_tensorrt_release_is_refused_naming_both_sides(demo, tmp_path):
    write_engine_files(tmp_path / "m.plan", b"plan", _sidecar(demo, b"plan"))
    sidecar = read_sidecar(tmp_path / "m.plan")
    check_compatible(sidecar, "10.8.0.43", *H100)
    check_compatible(sidecar, "10.8.0.99", *H100)  # another build of the same release
    with pytest.raises(EngineError) as info:
        check_compatible(sidecar, "10.9.0.34", *H100)
    message = str(info.value)
    assert message.startswith("engine built with TensorRT 10.8.0.43 on NVIDIA H100 80GB HBM3 (sm_90); ")
    assert "this machine has TensorRT 10.9.0.34 on NVIDIA H100 80GB HBM3 (sm_90)" in message
    assert "needs TensorRT 10.8.0" in message


def test_another_gpu_model_is_refused(demo):
    sidecar = _sidecar(demo, b"plan")
    with pytest.raises(
        EngineError, match=r"this machine has TensorRT 10.8.0.43 on NVIDIA A100-SXM4-40GB \(sm_80\)"
    ):
        check_compatible(sidecar, "10.8.0.43", "NVIDIA A100-SXM4-40GB", "8.0")
    with pytest.raises(EngineError, match=r"needs a NVIDIA H100 80GB HBM3 \(sm_90\)"):
        check_compatible(sidecar, "10.8.0.43", "NVIDIA H100 PCIe", "9.0")


def test_a_version_compatible_engine_runs_on_newer_releases_of_its_major(demo):
    sidecar = _sidecar(demo, b"plan", version_compatible=True)
    check_compatible(sidecar, "10.8.0.43", *H100)
    check_compatible(sidecar, "10.15.1", *H100)
    for older_or_other in ("10.7.0", "11.0.0"):
        with pytest.raises(EngineError, match="version-compatible"):
            check_compatible(sidecar, older_or_other, *H100)


# ---- inspect: what needs no TensorRT -----------------------------------------------------------------


def test_inspector_layers_of_tensorrt_10_and_11():
    trt10 = {
        "Name": "conv1",
        "LayerType": "CaskConvolution",
        "Outputs": [{"Name": "t", "Format/Datatype": "Channel major FP16 format where channel % 8 == 0"}],
        "TacticName": "sm90_xmma_fprop",
    }
    trt11 = {
        "Name": "sru",
        "LayerType": "PointWiseV2",
        "Outputs": [{"Name": "t", "Datatype": "Float", "Format": "Linear"}],
    }
    assert layer_info(trt10).output_dtypes == ("FP16",)
    assert layer_info(trt10).tactic == "sm90_xmma_fprop"
    assert layer_info(trt11).output_dtypes == ("FP32",) and layer_info(trt11).type == "PointWiseV2"
    assert layer_info("conv1 + relu1").name == "conv1 + relu1"  # built without detailed profiling


def test_sidecar_summary_and_engine_report_describe_an_engine(demo):
    sidecar = _sidecar(demo, b"plan")
    text = sidecar_summary(sidecar)
    assert "built with TensorRT 10.8.0.43 on NVIDIA H100 80GB HBM3 (sm_90)" in text
    assert "profile input: min 1x1x32x32, opt 1x1x32x32, max 8x1x32x32" in text
    assert "precision FP32 (weights 100% float32" in text and "verification: not run at build" in text
    layers = [
        layer_info({"Name": f"l{i}", "LayerType": "Conv", "Outputs": [{"Format/Datatype": "FP32"}]})
        for i in range(3)
    ]
    spec = {"min": [1, 1, 32, 32], "opt": [1, 1, 32, 32], "max": [8, 1, 32, 32], "dtype": "float32"}
    report = EngineReport("m.plan", {"input": spec}, {"output": [1, 10]}, layers, 3 << 20, sidecar)
    described = report.describe(layers=True)
    assert (
        "m.plan: 3 layers, device memory 3.0 MiB" in described
        and "layer output precisions: 3 FP32" in described
    )
    assert "    l2  [Conv]  FP32" in described and "sidecar:" in described
    assert json.loads(json.dumps(report.to_dict()))["counts"]["layer_types"] == {"Conv": 3}


# ---- verification of an engine, with ONNX Runtime standing in for TensorRT -------------------------------


class OrtEngine:
    """The ``Engine`` contract (inputs, outputs, infer) over ONNX Runtime, with a chosen batch profile.

    ``forced`` sample shapes (C, H, W) describe the extra inputs of a verification twin."""

    def __init__(
        self,
        model: onnx.ModelProto,
        batch: tuple[int, int, int],
        scale: float = 1.0,
        hw: int = 32,
        forced: dict[str, tuple[int, ...]] | None = None,
    ):
        self.session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
        self.inputs = {"input": TensorSpec(*[(b, 1, hw, hw) for b in batch], np.dtype(np.float32))}
        for name, sample in (forced or {}).items():
            self.inputs[name] = TensorSpec(*[(b, *sample) for b in batch], np.dtype(np.float32))
        self.outputs = [o.name for o in self.session.get_outputs()]
        self.scale = scale
        self.batches: list[int] = []

    def infer(self, feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        for name, x in feed.items():
            assert self.inputs[name].admits(x.shape), name
        self.batches.append(len(feed["input"]))
        results = dict(zip(self.outputs, self.session.run(None, feed), strict=True))
        results["output"] = results["output"] * np.float32(self.scale)
        return results


GATES = ["gate:features.1.0.SRU", "gate:features.3.0.SRU", "gate:features.5.0.SRU"]


def twin_of(demo: Path, golden: Golden, batch=(1, 8, 8), scale: float = 1.0) -> tuple[OrtEngine, tuple]:
    """The verification twin of the demo engine (its ONNX with every mask fed in) and its tensor names."""
    graph = forced_graph(onnx.load(demo))
    shapes = {n: d.shape[1:] for n, d in zip(graph.force_inputs, golden.decisions, strict=True)}
    twin = OrtEngine(graph.model, batch=batch, scale=scale, forced=shapes)
    return twin, (list(graph.force_inputs), list(graph.mask_outputs))


def test_with_its_verification_twin_an_engine_is_compared_on_every_sample(demo, golden):
    assert golden.tie_samples().all()  # real digits: every sample holds an exact tie
    twin, tensors = twin_of(demo, golden, batch=(1, 4, 4))
    engine = OrtEngine(onnx.load(demo), batch=(1, 8, 8))
    result = verify_engine(engine, golden, twin=twin, twin_tensors=tensors)
    assert result.passed, result.reasons
    assert result.compared == 22 and result.real_flips == 0 and twin.batches == [4, 4, 4, 4, 4, 2]
    assert result.forced.gates == 22 * (32 * 32 * 32 + 64 * 16 * 16 + 128 * 8 * 8)


def test_a_static_batch_twin_gets_padded_batches(demo, golden):
    twin, tensors = twin_of(demo, golden, batch=(4, 4, 4))
    assert verify_engine(None, golden, twin=twin, twin_tensors=tensors).passed and twin.batches == [4] * 6


def test_an_engine_exposing_its_gates_is_held_where_its_decisions_agree(demo, golden):
    engine = OrtEngine(with_gate_outputs(onnx.load(demo)), batch=(1, 8, 8))
    result = verify_engine(engine, golden, gate_outputs=GATES)
    assert result.passed, result.reasons
    assert 0 < result.compared < 22 and result.deployed.flipped > 0  # ties taken the other way
    assert any("no verification twin" in n for n in result.notes)


def test_without_twin_or_gates_data_where_every_sample_holds_a_tie_cannot_pass(demo, golden):
    result = verify_engine(OrtEngine(onnx.load(demo), batch=(1, 8, 8)), golden)
    assert not result.passed and result.compared == 0
    assert any("no sample was compared" in r for r in result.reasons)


def test_an_engine_that_computes_wrongly_fails(demo, golden):
    twin, tensors = twin_of(demo, golden, scale=1.01)
    result = verify_engine(None, golden, twin=twin, twin_tensors=tensors, precision="FP32")
    assert not result.passed and "beyond tolerance" in result.reasons[0]
    assert result.tolerance == tolerance_for("fp32")
    close, tensors = twin_of(demo, golden, scale=1.0001)
    relaxed = verify_engine(None, golden, twin=close, twin_tensors=tensors, precision="FP16")
    assert relaxed.passed and relaxed.tolerance == tolerance_for("fp16")


def test_golden_inputs_outside_the_profile_or_missing_outputs_are_errors(demo, golden):
    with pytest.raises(VerificationError, match="do not fit the engine's profile"):
        verify_engine(OrtEngine(onnx.load(demo), batch=(1, 1, 1), hw=16), golden)
    with pytest.raises(VerificationError, match="no tensor"):
        verify_engine(OrtEngine(onnx.load(demo), batch=(1, 1, 1)), golden, gate_outputs=GATES)


def test_golden_data_is_matched_to_the_plan_before_any_build(demo, demo_hw, golden, tmp_path, caplog):
    path = tmp_path / "demo.golden.npz"
    golden.save(path)
    assert load_golden_for(BuildPlan.from_onnx(demo), path).samples == 22
    assert "the check can compare no sample and will fail" in caplog.text
    caplog.clear()
    load_golden_for(BuildPlan.from_onnx(demo, debug_gates=True), path)
    assert caplog.text == ""
    with pytest.raises(EngineError, match=r"no golden data at .*: pass --golden FILE, or --no-check"):
        load_golden_for(BuildPlan.from_onnx(demo), tmp_path / "missing.npz")
    with pytest.raises(VerificationError, match="do not fit the engine's profile"):
        load_golden_for(BuildPlan.from_onnx(demo_hw, hw=((16, 16),) * 3), path)
    replace(golden, meta={"source.sha256": "0" * 64}).save(path)
    with pytest.raises(VerificationError, match="was made from checkpoint sha256 000000000000"):
        load_golden_for(BuildPlan.from_onnx(demo), path)


def test_verify_finds_golden_data_beside_the_plan_else_beside_its_onnx(demo, golden, tmp_path):
    (tmp_path / "models").mkdir()
    onnx_path = Path(shutil.copy(demo, tmp_path / "models" / "demo.onnx"))
    plan_path = tmp_path / "engines" / "demo.fp32.plan"
    plan_path.parent.mkdir()
    sidecar = BuildPlan.from_onnx(onnx_path, plan_path).sidecar()
    assert sidecar["onnx"]["file"] == "../models/demo.onnx"  # relative: the pair can move together
    with pytest.raises(
        VerificationError, match=r"no golden data at .*demo\.fp32\.golden\.npz or .*demo\.golden\.npz"
    ):
        find_golden(plan_path, sidecar)
    golden.save(onnx_path.with_suffix(".golden.npz"))
    assert find_golden(plan_path, sidecar).resolve() == onnx_path.with_suffix(".golden.npz")
    golden.save(plan_path.with_suffix(".golden.npz"))
    assert find_golden(plan_path, sidecar) == plan_path.with_suffix(".golden.npz")


# ---- bench -----------------------------------------------------------------------------------------


def test_onnx_bench_prints_a_table_and_writes_json(demo, tmp_path, capsys):
    out_json = tmp_path / "bench.json"
    code, out, _ = run_cli(
        capsys,
        "bench",
        demo,
        "--batch-sizes",
        "1,4",
        "--iterations",
        "3",
        "--warmup",
        "1",
        "--json",
        out_json,
    )
    assert code == 0
    lines = out.splitlines()
    assert "onnxruntime-cpu" in lines[0] and "sample 1x32x32" in lines[0]
    assert lines[1].split() == ["batch", "p50", "ms", "p90", "ms", "p99", "ms", "mean", "ms", "samples/s"]
    assert [line.split()[0] for line in lines[2:4]] == ["1", "4"]
    result = json.loads(out_json.read_text())
    assert result["backend"] == "onnxruntime-cpu" and [r["batch"] for r in result["rows"]] == [1, 4]
    for row in result["rows"]:
        assert 0 < row["p50_ms"] <= row["p90_ms"] <= row["p99_ms"] and row["iterations"] == 3
        assert row["throughput"] == pytest.approx(row["batch"] / row["mean_ms"] * 1e3)


def test_bench_refuses_batch_sizes_a_static_onnx_cannot_take(tmp_path, capsys):
    path = save(tiny_model([helper.make_node("Relu", ["x"], ["y"])]), tmp_path / "static.onnx")
    code, _, err = run_cli(capsys, "bench", path, "--batch-sizes", "1,8")
    assert code == 2 and "static batch of 1" in err


def test_the_harness_warms_up_then_interleaves_batch_sizes():
    calls: list[int] = []

    def timer(size: int):
        return lambda: calls.append(size) or size / 1000

    rows = measure({1: timer(1), 8: timer(8), 32: timer(32)}, iterations=3, warmup=2)
    assert calls[:6] == [1, 1, 8, 8, 32, 32]
    assert calls[6:] == [1, 8, 32, 8, 32, 1, 32, 1, 8]  # each round starts one size later
    assert [(r.batch, r.p50_ms, r.throughput) for r in rows] == [
        (1, 1.0, 1000.0),
        (8, 8.0, 1000.0),
        (32, 32.0, 1000.0),
    ]


# ---- the build's loader chain, up to the TensorRT calls -------------------------------------------------


class _ProgressMonitorBase:
    def __init__(self) -> None:
        pass


FAKE_TRT = types.SimpleNamespace(
    __version__="10.8.0.43",
    MemoryPoolType=types.SimpleNamespace(WORKSPACE="workspace"),
    OnnxParserFlag=types.SimpleNamespace(NATIVE_INSTANCENORM="native-instancenorm"),
    IProgressMonitor=_ProgressMonitorBase,
)


def test_the_loader_chain_carries_every_plan_setting_to_polygraphy(demo, tmp_path):
    plan = BuildPlan.from_onnx(
        demo,
        batch=(1, 8, 16),
        workspace=1 << 30,
        timing_cache=tmp_path / "tactics.cache",
        version_compatible=True,
        builder_opt_level=4,
        debug_gates=True,
    )
    stream = io.StringIO()
    loader = engine_loader(FAKE_TRT, plan, progress=stream)  # nothing runs: no TensorRT needed
    assert loader.timing_cache_path == str(tmp_path / "tactics.cache")
    config = loader._config
    (profile,) = config.profiles
    assert list(profile["input"]) == [(1, 1, 32, 32), (8, 1, 32, 32), (16, 1, 32, 32)]
    assert config.memory_pool_limits == {"workspace": 1 << 30}
    assert config.timing_cache_path == str(tmp_path / "tactics.cache")
    assert (config.builder_optimization_level, config.version_compatible) == (4, True)
    assert not config.tf32 and not config.fp16 and not config.int8  # precision comes from the ONNX
    config.progress_monitor.phase_start("Building engine", None, 2)
    assert stream.getvalue() == "[build] Building engine (2 steps)\n"
    parse = loader._network._network  # PostprocessNetwork(NetworkFromOnnxPath)
    assert parse.path == str(demo) and parse.strongly_typed is True
    assert parse.flags == ["native-instancenorm"]  # no plugins in a version-compatible engine


class _Tensor:
    def __init__(self, name: str) -> None:
        self.name, self.is_network_output = name, False


class _Network:
    """Layers with one output each, named like the ONNX tensors the parser keeps."""

    def __init__(self, names: list[str]) -> None:
        self.layers = [
            types.SimpleNamespace(num_outputs=1, get_output=lambda j, n=n: n) for n in map(_Tensor, names)
        ]
        self.num_layers = len(self.layers)
        self.marked: list[str] = []

    def get_layer(self, i: int):
        return self.layers[i]

    def mark_output(self, tensor: _Tensor) -> None:
        self.marked.append(tensor.name)


def test_debug_gates_marks_the_gate_tensors_as_network_outputs(demo):
    plan = BuildPlan.from_onnx(demo, debug_gates=True)
    expose = engine_loader(FAKE_TRT, plan)._network._func
    network = _Network(["conv", *GATES, "output"])
    expose(network=network)
    assert network.marked == GATES
    with pytest.raises(EngineError, match="not in the parsed TensorRT network"):
        expose(network=_Network(["conv", "output"]))


def test_a_plain_build_parses_with_the_default_flags_and_no_monitor(demo):
    loader = engine_loader(FAKE_TRT, BuildPlan.from_onnx(demo))
    assert loader._network.flags is None and loader._config.progress_monitor is None
    assert loader._config.memory_pool_limits is None and loader.timing_cache_path is None


# ---- build progress ----------------------------------------------------------------------------------


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
