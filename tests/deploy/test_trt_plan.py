"""scconv-trt build --dry-run and ``BuildPlan``: profiles, precision, gate tensors, lint, the sidecar draft.

No TensorRT, GPU or PyTorch: the plan is settled from the ONNX file and the options alone.
"""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from scconv_deploy import EngineError
from scconv_deploy.cli.trt import main
from scconv_deploy.trt import BuildPlan, OnnxInput, ShapeRange, make_profile, onnx_precision, sidecar_path
from scconv_deploy.trt.plan import parse_size
from scconv_deploy.trt.profile import parse_hw, parse_range, parse_shapes

from trt_standin import run_cli, save, tiny_model


@pytest.fixture(scope="module")
def demo(demo_onnx):
    """The demo model as scconv-export ships it: dynamic batch, N x 1 x 32 x 32."""
    return demo_onnx("batch")


@pytest.fixture(scope="module")
def demo_hw(demo_onnx):
    """The demo model with dynamic batch, height and width."""
    return demo_onnx("batch+hw")


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
    assert "yes (later TensorRT releases run it too)" in text


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
