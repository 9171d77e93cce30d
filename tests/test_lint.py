"""The TensorRT lint: each rule on tiny graphs that do and do not trigger it, then real SCConv exports."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from onnx import TensorProto, helper, numpy_helper

from scconv_deploy import ExportError, ScConv, to_deploy
from scconv_deploy.cli.trt import main
from scconv_deploy.lint import Finding, LintReport, lint_onnx

pytestmark = pytest.mark.filterwarnings(
    "ignore::DeprecationWarning", "ignore::UserWarning", "ignore::torch.jit.TracerWarning"
)

F, B, I64 = TensorProto.FLOAT, TensorProto.BOOL, TensorProto.INT64


def tensor(name: str, elem: int = F, shape=("N", 4)) -> onnx.ValueInfoProto:
    return helper.make_tensor_value_info(name, elem, list(shape))


def const(name: str, values, dtype=np.float32) -> onnx.TensorProto:
    return numpy_helper.from_array(np.asarray(values, dtype=dtype), name)


def model(nodes, inputs=None, outputs=None, inits=(), opset: int = 18) -> onnx.ModelProto:
    graph = helper.make_graph(
        nodes, "g", inputs or [tensor("x")], outputs or [tensor("y")], initializer=list(inits)
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])


def node(op: str, inputs, outputs, name: str = "", **attrs) -> onnx.NodeProto:
    return helper.make_node(op, list(inputs), list(outputs), name=name or op.lower(), **attrs)


def rules(report: LintReport, severity: str | None = None) -> list[str]:
    return [f.rule for f in report.findings if severity is None or f.severity == severity]


RELU = model([node("Relu", ["x"], ["y"])])


# ---- TRT001/TRT002/TRT003: operators and opsets ----------------------------------------------------


def test_supported_operators_lint_clean():
    assert lint_onnx(RELU).findings == []


def test_an_operator_documented_as_unsupported_is_an_error_naming_it():
    (finding,) = lint_onnx(model([node("Unique", ["x"], ["y"], name="u")])).findings
    assert (finding.rule, finding.severity, finding.node, finding.op_type) == (
        "TRT001",
        "error",
        "u",
        "Unique",
    )
    assert "documented as unsupported" in finding.message


def test_an_operator_unknown_to_the_parser_is_an_error():
    report = lint_onnx(model([node("Frobnicate", ["x"], ["y"])]))
    assert rules(report, "error") == ["TRT001"]
    assert "not in the parser's operator list" in report.findings[0].message


def test_unsupported_operators_inside_subgraphs_are_found():
    branch = helper.make_graph([node("Unique", ["x"], ["z"])], "b", [], [tensor("z")])
    cond = helper.make_tensor_value_info("c", B, [])
    report = lint_onnx(
        model([node("If", ["c"], ["y"], then_branch=branch, else_branch=branch)], [cond, tensor("x")])
    )
    assert rules(report) == ["TRT001"]


def test_an_operator_newer_than_the_target_release_is_an_error_only_when_the_release_is_known():
    stft = model([node("STFT", ["x", "step"], ["y"])], inits=[const("step", 4, np.int64)], opset=17)
    assert rules(lint_onnx(stft, 10, "10.4")) == ["TRT001"]
    assert "from TensorRT 10.5 on" in lint_onnx(stft, 10, "10.4").findings[0].message
    assert lint_onnx(stft, 10, "10.5").findings == []
    assert lint_onnx(stft, 10).findings == []


def test_swish_is_parsed_by_tensorrt_11_only():
    swish = model([node("Swish", ["x"], ["y"])], opset=24)
    assert rules(lint_onnx(swish, 10)) == ["TRT001"]
    assert lint_onnx(swish, 11).findings == []


def test_custom_domain_operators_need_a_plugin_and_are_a_warning():
    custom = helper.make_node("MyPlugin", ["x"], ["y"], domain="my.plugins", name="p")
    m = model([custom])
    m.opset_import.append(helper.make_opsetid("my.plugins", 1))
    (finding,) = lint_onnx(m).findings
    assert (finding.rule, finding.severity) == ("TRT002", "warning")
    assert "'MyPlugin'" in finding.fix


@pytest.mark.parametrize(
    ("opset", "major", "version", "expected"),
    [
        (8, 10, None, "error"),
        (9, 10, None, None),
        (24, 10, None, None),
        (25, 10, None, "error"),
        (25, 11, None, None),
        (20, 10, "10.0", None),
        (21, 10, "10.8", "warning"),  # 10.0 documents 20, 10.15 documents 24: 10.8 is undocumented
        (25, 10, "10.8", "error"),
        (24, 10, "10.15", None),
        (25, 11, "11.2", "warning"),
        (25, 11, "11.5", None),
    ],
)
def test_the_opset_is_checked_against_the_documented_range_of_the_target(opset, major, version, expected):
    report = lint_onnx(model([node("Relu", ["x"], ["y"])], opset=opset), major, version)
    assert [(f.rule, f.severity) for f in report.findings] == ([("TRT003", expected)] if expected else [])


# ---- TRT010/TRT011/TRT012: BOOL tensors -------------------------------------------------------------


def test_bool_tensors_into_arithmetic_are_an_error():
    bool_mul = model([node("Mul", ["m", "x"], ["y"])], [tensor("m", B), tensor("x")])
    (finding,) = lint_onnx(bool_mul).findings
    assert (finding.rule, finding.severity, finding.op_type) == ("TRT010", "error", "Mul")
    assert "#1872" in finding.message


def test_a_cast_to_bool_feeding_arithmetic_is_an_error():
    nodes = [node("Cast", ["x"], ["m"], to=B), node("Add", ["m", "x"], ["y"])]
    assert "TRT010" in rules(lint_onnx(model(nodes)), "error")


def test_bool_inputs_where_tensorrt_takes_bool_are_not_flagged():
    logic = model([node("And", ["a", "b"], ["y"])], [tensor("a", B), tensor("b", B)], [tensor("y", B)])
    where = model([node("Where", ["m", "x", "x"], ["y"])], [tensor("m", B), tensor("x")])
    dropout = model(
        [node("Dropout", ["x", "", "t"], ["y"])], [tensor("x"), tensor("t", B, [])]
    )  # training_mode is BOOL by the spec
    for m in (logic, where, dropout):
        assert "TRT010" not in rules(lint_onnx(m))


def test_a_comparison_mask_cast_to_float_for_arithmetic_is_a_warning_at_the_comparison():
    nodes = [
        node("GreaterOrEqual", ["x", "t"], ["m"], name="ge"),
        node("Cast", ["m"], ["mf"], to=F),
        node("Mul", ["mf", "x"], ["y"]),
    ]
    report = lint_onnx(model(nodes, inits=[const("t", 0.5)]))
    (mask,) = [f for f in report.findings if f.rule == "TRT011"]
    assert (mask.severity, mask.node) == ("warning", "ge")
    assert report.ok  # TensorRT parses Cast(BOOL -> FLOAT) and a float Mul


def test_float_masks_are_not_flagged():
    nodes = [node("Sub", ["x", "t"], ["d"]), node("Sign", ["d"], ["s"]), node("Relu", ["s"], ["m"])]
    nodes.append(node("Mul", ["m", "x"], ["y"]))
    assert lint_onnx(model(nodes, inits=[const("t", 0.5)])).findings == []


def test_where_on_a_comparison_is_a_warning_also_through_logical_ops():
    direct = [node("Greater", ["x", "t"], ["m"]), node("Where", ["m", "one", "x"], ["y"], name="w")]
    negated = [
        node("Greater", ["x", "t"], ["m"]),
        node("Not", ["m"], ["n"]),
        node("Where", ["n", "one", "x"], ["y"], name="w"),
    ]
    for nodes in (direct, negated):
        report = lint_onnx(model(nodes, inits=[const("t", 0.5), const("one", 1.0)]))
        assert [(f.rule, f.severity, f.node) for f in report.findings if f.rule == "TRT012"] == [
            ("TRT012", "warning", "w")
        ]


def test_where_on_a_bool_input_is_not_a_comparison_chain():
    where = model([node("Where", ["m", "x", "x"], ["y"])], [tensor("m", B), tensor("x")])
    assert lint_onnx(where).findings == []


def test_casts_to_and_from_bool_are_counted_in_one_warning():
    nodes = [
        node("Cast", ["x"], ["m"], to=B, name="c1"),
        node("Cast", ["m"], ["f"], to=F, name="c2"),
        node("Cast", ["f"], ["y"], to=TensorProto.FLOAT16, name="c3"),
    ]
    (count,) = [f for f in lint_onnx(model(nodes)).findings if f.rule == "TRT062"]
    assert count.severity == "warning" and count.message.startswith("2 Cast nodes")


# ---- TRT020/TRT030: computed shapes and bounds -------------------------------------------------------


def _gathered_dim(source: str, index: int, out: str) -> list[onnx.NodeProto]:
    return [
        node("Shape", [source], [f"{out}_shape"], name=f"{out}_s"),
        node("Gather", [f"{out}_shape", f"i{index}"], [out], name=f"{out}_g", axis=0),
    ]


DIM_INITS = [const("i0", 0, np.int64), const("i0v", [0], np.int64), const("minus1", [-1], np.int64)]


def test_a_shape_computed_from_shape_at_run_time_is_a_warning():
    nodes = [
        *_gathered_dim("x", 0, "n"),
        node("Unsqueeze", ["n", "i0v"], ["n1"]),
        node("Concat", ["n1", "minus1"], ["target"], axis=0),
        node("Reshape", ["x", "target"], ["y"], name="r"),
    ]
    (finding,) = lint_onnx(model(nodes, inits=DIM_INITS)).findings
    assert (finding.rule, finding.severity, finding.node) == ("TRT020", "warning", "r")
    assert "INT32" in finding.fix


def test_shapes_passed_on_unchanged_or_constant_are_not_flagged():
    passed = model(
        [node("Relu", ["x"], ["r"]), node("Shape", ["x"], ["s"]), node("Reshape", ["r", "s"], ["y"])]
    )
    constant = model([node("Reshape", ["x", "target"], ["y"])], inits=[const("target", [0, -1], np.int64)])
    assert lint_onnx(passed).findings == []
    assert lint_onnx(constant).findings == []


def test_shape_values_cast_to_float_as_data_are_not_shape_tensors():
    """The seed export form's n = H·W·C/G: INT64 arithmetic on Shape, cast to float, used as data."""
    nodes = [
        *_gathered_dim("x", 0, "n"),
        node("Mul", ["n", "two"], ["n2"]),
        node("Cast", ["n2"], ["nf"], to=F),
        node("Mul", ["x", "nf"], ["y"]),
    ]
    assert lint_onnx(model(nodes, inits=[*DIM_INITS, const("two", 2, np.int64)])).findings == []


def test_split_sizes_computed_in_the_graph_are_a_warning():
    nodes = [
        *_gathered_dim("x", 1, "c"),
        node("Div", ["c", "two"], ["half"]),
        node("Unsqueeze", ["half", "i0v"], ["h1"]),
        node("Concat", ["h1", "h1"], ["sizes"], axis=0),
        node("Split", ["x", "sizes"], ["y", "z"], name="sp", axis=1),
    ]
    inits = [*DIM_INITS, const("i1", 1, np.int64), const("two", 2, np.int64)]
    report = lint_onnx(model(nodes, outputs=[tensor("y"), tensor("z")], inits=inits))
    assert [(f.rule, f.node) for f in report.findings] == [("TRT030", "sp")]
    assert "fix the channel counts at export" in report.findings[0].fix


def test_split_sizes_and_slice_bounds_that_are_constants_are_not_flagged():
    split = model(
        [node("Split", ["x", "sizes"], ["y", "z"], axis=1)],
        outputs=[tensor("y"), tensor("z")],
        inits=[const("sizes", [2, 2], np.int64)],
    )
    slice_ = model(
        [
            node("Constant", [], ["ends"], value=const("v", [2], np.int64)),
            node("Slice", ["x", "s", "ends"], ["y"]),
        ],
        inits=[const("s", [0], np.int64)],
    )
    assert lint_onnx(split).findings == []
    assert lint_onnx(slice_).findings == []


def test_slice_bounds_from_a_graph_input_are_a_warning():
    report = lint_onnx(
        model(
            [node("Slice", ["x", "s", "e"], ["y"])],
            [tensor("x"), tensor("s", I64, [1]), tensor("e", I64, [1])],
        )
    )
    assert rules(report) == ["TRT030"]
    assert "s, e" in report.findings[0].message


# ---- TRT040/TRT041/TRT042: GroupNormalization ----------------------------------------------------------


def group_norm(groups: int, opset: int = 21) -> onnx.ModelProto:
    channels = 4 if opset >= 21 else groups
    gn = node("GroupNormalization", ["x", "g", "b"], ["y"], name="gn", num_groups=groups)
    shape = ("N", 4, 8, 8)
    return model(
        [gn],
        [tensor("x", F, shape)],
        [tensor("y", F, shape)],
        [const("g", [1] * channels), const("b", [0] * channels)],
        opset,
    )


@pytest.mark.parametrize(
    ("major", "version", "expected"),
    [
        (10, "10.8", [("TRT040", "error")]),
        (10, None, [("TRT040", "warning")]),
        (10, "10.9", []),
        (11, None, []),
    ],
)
def test_opset_21_group_norm_needs_tensorrt_10_9(major, version, expected):
    report = lint_onnx(group_norm(2), major, version)
    assert [(f.rule, f.severity) for f in report.findings if f.rule.startswith("TRT04")] == expected


def test_opset_18_group_norm_predates_the_10_9_requirement():
    assert lint_onnx(group_norm(2, opset=18), 10, "10.8").findings == []


@pytest.mark.parametrize(
    ("major", "version", "severity"),
    [(10, "10.16", "error"), (10, "10.12", "warning"), (10, None, "warning"), (11, None, "warning")],
)
def test_group_norm_with_one_group_is_computed_wrongly_by_tensorrt_10_16(major, version, severity):
    findings = [f for f in lint_onnx(group_norm(1), major, version).findings if f.rule == "TRT041"]
    assert [(f.severity, f.node) for f in findings] == [(severity, "gn")]
    assert "#4756" in findings[0].message


def test_the_deprecated_group_norm_plugin_is_a_warning_not_an_unknown_operator():
    plugin = model(
        [node("GroupNormalizationPlugin", ["x", "g", "b"], ["y"])],
        inits=[const("g", [1.0]), const("b", [0.0])],
    )
    assert [(f.rule, f.severity) for f in lint_onnx(plugin).findings] == [("TRT042", "warning")]


# ---- TRT050/TRT051: external data ---------------------------------------------------------------------


def external_model(tmp_path: Path) -> tuple[onnx.ModelProto, Path]:
    m = model([node("Add", ["x", "w"], ["y"])], inits=[const("w", np.ones((64, 4)))])
    path = tmp_path / "m.onnx"
    onnx.save(m, str(path), save_as_external_data=True, location="m.onnx.data", size_threshold=0)
    return onnx.load(str(path), load_external_data=False), path


def test_external_data_is_a_warning_when_the_file_is_there(tmp_path):
    proto, path = external_model(tmp_path)
    for report in (lint_onnx(path), lint_onnx(proto)):
        assert [(f.rule, f.severity) for f in report.findings] == [("TRT050", "warning")]
        assert "m.onnx.data" in report.findings[0].message


def test_missing_external_data_files_are_an_error_when_linting_a_path(tmp_path):
    _, path = external_model(tmp_path)
    (tmp_path / "m.onnx.data").unlink()
    report = lint_onnx(path)
    assert [(f.rule, f.severity) for f in report.findings] == [("TRT051", "error"), ("TRT050", "warning")]


# ---- TRT060/TRT061: unfolded constants -----------------------------------------------------------------


def test_nodes_on_constants_only_are_a_warning_with_the_count():
    nodes = [node("Mul", ["a", "b"], ["ab"]), node("Add", ["ab", "a"], ["w"]), node("Add", ["x", "w"], ["y"])]
    (finding,) = lint_onnx(model(nodes, inits=[const("a", [1.0] * 4), const("b", [2.0] * 4)])).findings
    assert (finding.rule, finding.severity) == ("TRT060", "warning")
    assert finding.message.startswith("2 nodes") and "onnxslim" in finding.fix


def test_nodes_on_inputs_are_not_foldable():
    assert lint_onnx(model([node("Add", ["x", "w"], ["y"])], inits=[const("w", [1.0] * 4)])).findings == []


def unrolled_sum(terms: int) -> onnx.ModelProto:
    """w / sum(w) over w's elements, the way the legacy exporter writes Python's builtin ``sum``."""
    outs = [f"w{i}" for i in range(terms)]
    nodes = [node("Split", ["w", "ones"], outs, name="split", axis=0)]
    total = outs[0]
    for i in range(1, terms):
        nodes.append(node("Add", [total, outs[i]], [f"s{i}"], name=f"add{i}"))
        total = f"s{i}"
    nodes += [node("Div", ["w", total], ["wn"]), node("Mul", ["x", "wn"], ["y"])]
    inits = [const("w", np.arange(1, terms + 1)), const("ones", [1] * terms, np.int64)]
    return model(nodes, [tensor("x", F, ("N", terms))], [tensor("y", F, ("N", terms))], inits)


def test_the_unrolled_python_sum_is_named_from_eight_constant_adds():
    (finding,) = [f for f in lint_onnx(unrolled_sum(9)).findings if f.rule == "TRT061"]
    assert (
        finding.severity == "warning" and "sum()" in finding.message and finding.message.startswith("8 Add")
    )
    assert rules(lint_onnx(unrolled_sum(8))) == ["TRT060"]  # 7 Adds: only the generic count


# ---- the report and the entry point ------------------------------------------------------------------


def test_the_report_lists_errors_first_and_serialises_to_json():
    nodes = [node("Add", ["a", "a"], ["w"]), node("Unique", ["x"], ["u"]), node("Add", ["u", "w"], ["y"])]
    report = lint_onnx(model(nodes, inits=[const("a", [1.0] * 4)]), 11, "11.1")
    assert rules(report) == ["TRT001", "TRT060"] and not report.ok
    assert [f.rule for f in report.errors] == ["TRT001"] and [f.rule for f in report.warnings] == ["TRT060"]
    data = json.loads(json.dumps(report.to_dict()))
    assert data["ok"] is False and data["trt_version"] == "11.1" and data["opset"] == 18
    assert Finding(**data["findings"][0]) == report.findings[0]
    assert report.summary() == "TensorRT 11.1, opset 18: 1 error, 1 warning"
    assert "TRT001" in str(report) and "fix:" in str(report)


def test_lint_does_not_modify_the_model():
    m = unrolled_sum(9)
    before = m.SerializeToString()
    lint_onnx(m)
    assert m.SerializeToString() == before


@pytest.mark.parametrize(("major", "version"), [(8, None), (10, "11.2"), (10, "ten")])
def test_an_unknown_target_is_a_value_error(major, version):
    with pytest.raises(ValueError, match="trt_"):
        lint_onnx(RELU, major, version)


def test_an_unreadable_file_is_an_export_error_naming_it(tmp_path):
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"\xff\xfe not protobuf")
    for path in (bad, tmp_path / "missing.onnx"):
        with pytest.raises(ExportError, match=path.name):
            lint_onnx(path)


# ---- real SCConv exports -------------------------------------------------------------------------------


def legacy_export(module: torch.nn.Module) -> onnx.ModelProto:
    buf = io.BytesIO()
    torch.onnx.export(
        module.eval(),
        (torch.randn(1, 32, 8, 8),),
        buf,
        dynamo=False,
        opset_version=18,
        input_names=["x"],
        dynamic_axes={"x": {0: "N", 2: "H", 3: "W"}},
    )
    return onnx.load_from_string(buf.getvalue())


SEED, HEAD = {}, {"gate": "soft", "torch_gn": True, "group_num": 4}


@pytest.fixture(scope="module", params=[SEED, HEAD], ids=["seed", "head"])
def export_form(request) -> onnx.ModelProto:
    return legacy_export(to_deploy(ScConv(32, **request.param)))


@pytest.mark.parametrize("major", [10, 11])
def test_the_export_form_of_a_scconv_block_lints_clean(export_form, major):
    report = lint_onnx(export_form, major)
    assert report.findings == [], str(report)


@pytest.mark.parametrize("major, warned", [(10, True), (11, False)])
def test_fast_gates_warn_against_weakly_typed_fp16_builds_on_tensorrt_10(major, warned):
    """A fast gate's margin is scaled below FP16's normal range: TensorRT 10's weakly typed --fp16 would
    decide it in FP16. The exact form, and TensorRT 11 (strongly typed only), get no warning."""
    fast = legacy_export(to_deploy(ScConv(32), gates="fast"))
    helper.set_model_props(fast, {"scconv.gates": "fast"})  # what scconv-export records
    found = [f for f in lint_onnx(fast, major).findings if f.rule == "TRT070"]
    assert bool(found) == warned and all(
        f.severity == "warning" and "--stronglyTyped" in f.fix for f in found
    )
    exact = legacy_export(to_deploy(ScConv(32), gates="exact"))
    helper.set_model_props(exact, {"scconv.gates": "exact"})
    assert lint_onnx(exact, major).findings == []


def test_a_naive_export_of_the_seed_block_is_parsed_but_carries_every_cost_the_export_form_removes():
    """``(r >= t) * x`` exports as comparison -> Cast(FLOAT) -> Mul, which TensorRT parses (the Cast is the
    #1872 workaround): warnings, not errors. The unrolled ``sum(gamma)`` and the norm's computed reshapes
    are warnings too."""
    report = lint_onnx(legacy_export(ScConv(32)), 10)
    assert report.errors == []
    assert set(rules(report)) == {"TRT011", "TRT020", "TRT060", "TRT061", "TRT062"}
    assert {f.op_type for f in report.findings if f.rule == "TRT011"} == {"GreaterOrEqual", "Less"}


def test_a_naive_export_of_the_head_block_shows_the_comparison_where_chain():
    report = lint_onnx(legacy_export(ScConv(32, **HEAD)), 10)
    assert report.errors == []
    assert {"TRT012", "TRT061"} <= set(rules(report))


# ---- the scconv-trt lint command -----------------------------------------------------------------------


def test_cli_exits_0_and_prints_the_table_when_there_are_no_errors(tmp_path, capsys):
    path = tmp_path / "m.onnx"
    onnx.save(unrolled_sum(9), str(path))
    assert main(["lint", str(path), "--trt-version", "10.8"]) == 0
    out = capsys.readouterr().out
    assert "TensorRT 10.8, opset 18: 0 errors, 2 warnings" in out and "TRT061" in out


def test_cli_exits_1_on_errors_and_json_output_parses(tmp_path, capsys):
    path = tmp_path / "m.onnx"
    onnx.save(model([node("Unique", ["x"], ["y"])]), str(path))
    assert main(["lint", str(path), "--trt", "11", "--json"]) == 1
    data = json.loads(capsys.readouterr().out)
    assert (data["ok"], data["trt_major"], data["findings"][0]["rule"]) == (False, 11, "TRT001")


@pytest.mark.parametrize("content", [None, b"not an onnx model"])
def test_cli_exits_2_with_one_line_for_a_missing_or_corrupt_file(tmp_path, capsys, content):
    path = tmp_path / "m.onnx"
    if content is not None:
        path.write_bytes(content)
    assert main(["lint", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("scconv-trt: error:") and str(path) in err


@pytest.mark.parametrize(
    "args", [["--trt", "11", "--trt-version", "10.2"], ["--trt-version", "8.6"], ["--trt", "9"]]
)
def test_cli_rejects_an_inconsistent_target_with_exit_2(tmp_path, args, capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["lint", str(tmp_path / "m.onnx"), *args])
    assert exit_.value.code == 2


def test_cli_help_shows_an_example(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["lint", "--help"])
    assert exit_.value.code == 0
    assert "scconv-trt lint model.onnx" in capsys.readouterr().out


def test_the_lint_goes_on_with_declared_types_when_shape_inference_fails(monkeypatch, caplog):
    def fail(model):
        raise ValueError("too large")

    monkeypatch.setattr(onnx.shape_inference, "infer_shapes", fail)
    bool_mul = model([node("Mul", ["m", "x"], ["y"])], [tensor("m", B), tensor("x")])
    assert rules(lint_onnx(bool_mul)) == ["TRT010"]
    assert "shape inference failed" in caplog.text
