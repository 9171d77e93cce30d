"""FP16 and INT8 artefacts keep SCConv's gate path in FP32 and keep its decisions (demo model, real data)."""

import json
from collections import Counter
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from scconv_deploy.cli.export import main
from scconv_deploy.datasets import load_digits
from scconv_deploy.golden import Golden
from scconv_deploy.lint import lint_onnx
from scconv_deploy.onnx_export import export_onnx
from scconv_deploy.precision import check_precision, gate_path, to_fp16, to_int8

ROOT = Path(__file__).resolve().parents[1]
DEMO = ROOT / "models" / "scconv_cnn_digits_seed.pt"


@pytest.fixture(scope="module")
def fp32(tmp_path_factory):
    """The demo's FP32 export with golden data on the whole held-out test split."""
    out = tmp_path_factory.mktemp("fp32") / "demo.onnx"
    x, _ = load_digits("test")
    meta = json.loads
    result = export_onnx(DEMO, out, exporter="legacy", check=False)
    model = onnx.load(out)
    props = {p.key: p.value for p in model.metadata_props}
    mean, std = meta(props["mean"])[0], meta(props["std"])[0]
    np.save(out.parent / "test.npy", ((x - mean) / std).astype(np.float32))
    result = export_onnx(DEMO, out, exporter="legacy", calib_data=out.parent / "test.npy", check_samples=400)
    assert result.ok
    return onnx.load(out), Golden.load(out.with_suffix(".golden.npz")), (mean, std)


def _run(model, x):
    return ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(
        None, {"input": x}
    )[0]


def test_fp16_keeps_the_gate_path_fp32_behind_explicit_casts(fp32):
    model, _, _ = fp32
    half = to_fp16(model)
    kept = gate_path(half).nodes
    inferred = onnx.shape_inference.infer_shapes(half)
    types = {v.name: v.type.tensor_type.elem_type for v in inferred.graph.value_info}
    for node in half.graph.node:
        if node.name in kept and node.op_type in {"Sigmoid", "InstanceNormalization", "Softmax", "Sign"}:
            assert types[node.output[0]] == onnx.TensorProto.FLOAT, node.name
    convs = [n for n in half.graph.node if n.op_type == "Conv"]
    assert all(types[c.output[0]] == onnx.TensorProto.FLOAT16 for c in convs)
    assert Counter(n.op_type for n in half.graph.node)["Cast"] > 0
    assert half.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT  # I/O stay FP32
    assert half.graph.output[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT


@pytest.mark.parametrize("variant", ["seed", "head"])
def test_fp16_decisions_read_the_fp32_gate_value_unrounded(tmp_path, variant):
    """Inside the FP32 island no edge passes through FP16 (the soft gate reads r twice: Sub and Max)."""
    out = tmp_path / "m.onnx"
    export_onnx(ROOT / "models" / f"scconv_cnn_digits_{variant}.pt", out, exporter="legacy", check=False)
    half = to_fp16(onnx.load(out))
    path = gate_path(half)
    producer = {o: n for n in half.graph.node for o in n.output}
    for node in half.graph.node:
        if node.name in path.nodes and node.op_type not in {"Cast", "Constant"}:
            for name in node.input:
                src = producer.get(name)
                if src is not None and src.op_type == "Cast":
                    assert (
                        src.name not in path.nodes
                        or producer.get(src.input[0]) is None
                        or (producer[src.input[0]].op_type != "Cast")
                    ), f"{node.name} reads {name} through an FP16 round trip"
    readers = [n for n in half.graph.node for g in path.gate_tensors if g in n.input]
    assert readers and all(n.name in path.nodes for n in readers)


def test_fp16_keeps_decisions_where_naive_fp16_flips_them(fp32):
    model, golden, _ = fp32
    check = check_precision(model, to_fp16(model), golden, "fp16")
    assert check.passed, check.reasons
    art, emu = check.artefact, check.emulation
    assert art.top1_agreement >= 0.999 and emu.top1_agreement >= 0.99  # the emulation rounds the logits too
    assert art.flipped_above_margin == 0 and emu.flipped_above_margin == 0  # block-local, margin > 1e-3
    naive_ort, naive_emu = check.naive
    assert naive_ort.flipped > 0  # the counterfactual: what the policy prevents
    assert art.flip_fraction <= naive_ort.flip_fraction / 10
    assert emu.flip_fraction <= naive_emu.flip_fraction / 10


def test_int8_is_calibrated_on_real_data_and_keeps_accuracy(fp32, tmp_path):
    model, golden, (mean, std) = fp32
    xv, _ = load_digits("val")
    q = to_int8(model, ((xv - mean) / std).astype(np.float32), cache_dir=tmp_path)
    ops = Counter(n.op_type for n in q.graph.node)
    assert ops["QuantizeLinear"] > 0 and ops["DequantizeLinear"] > 0
    kept = gate_path(q).nodes
    producers = {o: n for n in q.graph.node for o in n.output}
    for node in q.graph.node:  # nothing on the gate path reads a dequantized tensor
        if node.name in kept:
            assert all(
                producers.get(i) is None or producers[i].op_type != "DequantizeLinear" for i in node.input
            )
    check = check_precision(model, q, golden, "int8")
    assert check.passed and check.artefact.top1_agreement >= 0.99 and check.artefact.flipped_above_margin == 0
    xt, yt = load_digits("test")
    xt = ((xt - mean) / std).astype(np.float32)
    acc32 = (_run(model, xt).argmax(1) == yt).mean()
    acc8 = (_run(q, xt).argmax(1) == yt).mean()
    assert acc8 >= acc32 - 0.01


def test_int8_calibration_is_cached_until_the_data_changes(fp32, tmp_path, monkeypatch):
    model, _, (mean, std) = fp32
    calib = ((load_digits("val")[0][:32] - mean) / std).astype(np.float32)
    first = to_int8(model, calib, cache_dir=tmp_path)
    import onnxruntime.quantization as q

    def fail(*a, **k):
        raise AssertionError("calibrated again")

    monkeypatch.setattr(q, "quantize_static", fail)
    assert to_int8(model, calib, cache_dir=tmp_path).SerializeToString() == first.SerializeToString()
    with pytest.raises(AssertionError, match="calibrated again"):
        to_int8(model, calib[:16], cache_dir=tmp_path)


@pytest.mark.parametrize("trt", [10, 11])
def test_reduced_precision_artefacts_lint_clean(fp32, tmp_path, trt):
    model, _, (mean, std) = fp32
    calib = ((load_digits("val")[0][:32] - mean) / std).astype(np.float32)
    for artefact in (to_fp16(model), to_int8(model, calib, cache_dir=tmp_path)):
        report = lint_onnx(artefact, trt_major=trt)
        assert report.ok and not report.findings, str(report)


def test_cli_writes_an_fp16_artefact_and_refuses_int8_without_data(tmp_path, capsys):
    src = tmp_path / "demo.pt"
    src.write_bytes(DEMO.read_bytes())
    assert main([str(src), "--onnx", "--precision", "int8", "--exporter", "legacy"]) == 2
    assert "needs --calib-data" in capsys.readouterr().err
    assert (
        main(
            [str(src), "--onnx", "--precision", "fp16", "--exporter", "legacy", "--check-samples", "16", "-q"]
        )
        == 0
    )
    model = onnx.load(tmp_path / "demo.onnx")
    assert {p.key: p.value for p in model.metadata_props}["precision"] == "fp16"
    assert any(i.data_type == onnx.TensorProto.FLOAT16 for i in model.graph.initializer)
    report = json.loads((tmp_path / "demo.report.json").read_text())
    assert report["check"]["precision"]["passed"] and report["export"]["precision"] == "fp16"
