"""FP16 and INT8 artefacts keep SCConv's gate path in FP32 and keep its decisions (demo model, real data)."""

import json
from collections import Counter
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

from scconv_deploy.cli.export import main
from scconv_deploy.cli.verify import main as verify_main
from scconv_deploy.datasets import load_digits
from scconv_deploy.errors import ExportError
from scconv_deploy.golden import Golden
from scconv_deploy.lint import lint_onnx
from scconv_deploy.onnx_export import export_onnx
from scconv_deploy.ort_cpu import cpu_session
from scconv_deploy.precision import check_precision, gate_path, output_layers, to_fp16, to_int8
from scconv_deploy.precision.gate_path import ensure_node_names

import tamper

ROOT = Path(__file__).resolve().parents[1]
DEMO = ROOT / "models" / "scconv_cnn_digits_seed.pt"


@pytest.fixture(scope="module")
def digits_npy(tmp_path_factory):
    """The held-out test split as uint8 images (what a user has), 359 of them."""
    from scconv_deploy.datasets import save_digits_images

    path = tmp_path_factory.mktemp("digits") / "digits_test.npy"
    save_digits_images("test", path)
    return path


@pytest.fixture(scope="module")
def fp32(tmp_path_factory):
    """The demo's FP32 export (default exporter) with golden data on the whole held-out test split."""
    out = tmp_path_factory.mktemp("fp32") / "demo.onnx"
    x, _ = load_digits("test")
    meta = json.loads
    result = export_onnx(DEMO, out, check=False)
    model = onnx.load(out)
    props = {p.key: p.value for p in model.metadata_props}
    mean, std = meta(props["mean"])[0], meta(props["std"])[0]
    np.save(out.parent / "test.npy", ((x - mean) / std).astype(np.float32))
    result = export_onnx(DEMO, out, calib_data=out.parent / "test.npy", check_samples=400)
    assert result.ok
    return onnx.load(out), Golden.load(out.with_suffix(".golden.npz")), (mean, std)


def _run(model, x, optimization="all"):
    """The first output in ONNX Runtime ("basic" keeps Q/DQ semantics, the same on every CPU)."""
    return cpu_session(model, optimization=optimization).run(None, {"input": x})[0]


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
    assert art.compared == emu.compared == golden.samples  # every sample, decisions forced
    assert art.deployed.top1_agreement >= 0.999 and emu.deployed.top1_agreement >= 0.99
    assert sum(b.beyond_ties for b in check.block_local + check.emulation_block_local) == 0
    # The counterfactual, what the policy prevents. ONNX Runtime's CPU provider computes the naive
    # graph's FP16 operators in FP32 and so understates it; the emulation rounds as FP16 hardware does.
    naive_ort, naive_emu = check.naive["naive FP16 (ORT)"], check.naive["naive FP16 emulation"]
    assert 0 < naive_ort.deployed.flipped < naive_emu.deployed.flipped
    assert emu.deployed.flipped <= naive_emu.deployed.flipped / 10


def test_fp16_check_fails_when_the_gate_path_is_off(fp32):
    """A shift of 0.01 of one SRU's gate input: the block-local gate path flips clear decisions."""
    model, golden, _ = fp32
    check = check_precision(model, tamper.shift_sru_norm(to_fp16(model), 0.01, 1, golden), golden, "fp16")
    assert not check.passed
    assert any("gate path fed FP32 inputs flips" in r for r in check.reasons)


def test_fp16_check_fails_on_output_error_beyond_its_tolerance(fp32):
    model, golden, _ = fp32
    shifted = tamper.shift_output(to_fp16(model), 0.1 * float(np.abs(golden.outputs[0]).max()))
    check = check_precision(model, shifted, golden, "fp16", counterfactual=False)
    assert not check.passed and any("beyond tolerance" in r for r in check.reasons)


def _int8(model, mean, std, tmp_path, target="trt"):
    xv, _ = load_digits("val")
    return to_int8(model, ((xv - mean) / std).astype(np.float32), target=target, cache_dir=tmp_path)


def test_int8_is_calibrated_on_real_data_and_keeps_accuracy(fp32, tmp_path):
    model, golden, (mean, std) = fp32
    q = _int8(model, mean, std, tmp_path)
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
    assert check.passed, check.reasons
    assert check.artefact.deployed.top1_agreement >= 0.99
    assert sum(b.beyond_ties for b in check.block_local) == 0
    assert any("int8 kernels on this CPU" in n for n in check.artefact.notes)  # reported, whatever the CPU
    xt, yt = load_digits("test")
    xt = ((xt - mean) / std).astype(np.float32)
    acc32 = (_run(model, xt).argmax(1) == yt).mean()
    acc8 = (_run(q, xt, "basic").argmax(1) == yt).mean()  # Q/DQ semantics: what TensorRT computes
    assert acc8 >= acc32 - 0.01


def _dequantized_inputs(model: onnx.ModelProto) -> set[str]:
    """Names of the nodes that read a DequantizeLinear output."""
    dq = {o for n in model.graph.node if n.op_type == "DequantizeLinear" for o in n.output}
    return {n.name for n in model.graph.node if any(i in dq for i in n.input)}


def test_the_output_layers_are_the_quantizable_nodes_nearest_the_outputs(fp32):
    """The demo classifier ends in one Gemm; every other Conv/Gemm feeds the outputs through it."""
    model = onnx.ModelProto()
    model.CopyFrom(fp32[0])
    ensure_node_names(model)  # as output_layers and to_int8 name them
    (last,) = output_layers(model)
    ops = {n.name: n.op_type for n in model.graph.node}
    assert ops[last] == "Gemm" and sum(op == "Gemm" for op in ops.values()) == 1


def test_int8_keeps_the_output_layers_fp32_where_asked(fp32, tmp_path):
    model, golden, (mean, std) = fp32
    xv, _ = load_digits("val")
    x = ((xv - mean) / std).astype(np.float32)
    kept = output_layers(model)
    q = to_int8(model, x, float_layers=kept, cache_dir=tmp_path)
    full = to_int8(model, x, cache_dir=tmp_path)  # another cache entry: the kept layers are part of the key
    assert not set(kept) & _dequantized_inputs(q) and set(kept) <= _dequantized_inputs(full)
    assert check_precision(model, q, golden, "int8").passed


def test_the_int8_verdict_does_not_depend_on_the_cpus_integer_kernels(fp32, tmp_path, monkeypatch):
    """On x86 without VNNI ONNX Runtime's fused u8s8 kernels saturate. Whatever they compute, the
    verdict (Q/DQ semantics) stays; what they computed is a note naming the CPU variant."""
    import scconv_deploy.verify.ort_check as ort_check

    model, golden, (mean, std) = fp32
    q = _int8(model, mean, std, tmp_path)
    real = ort_check.run_deployed

    def saturating(m, g, *, optimization="all", masks=True, progress=None):
        run = real(m, g, optimization=optimization, masks=masks, progress=progress)
        if optimization != "all":
            return run
        noise = np.random.default_rng(0).standard_normal(run.outputs[0].shape).astype(np.float32)
        return ort_check.Run([run.outputs[0] + 3 * noise], run.masks)

    monkeypatch.setattr(ort_check, "run_deployed", saturating)
    check = check_precision(model, q, golden, "int8")
    assert check.passed, check.reasons
    (note,) = [n for n in check.artefact.notes if "int8 kernels on this CPU" in n]
    assert "--precision int8-cpu" in note


def test_the_cpu_int8_variant_has_7_bit_weights(fp32, tmp_path):
    """reduce_range: symmetric weights in [-64, 64], so u8s8 products cannot saturate without VNNI."""
    model, golden, (mean, std) = fp32
    q = _int8(model, mean, std, tmp_path, target="ort-cpu")
    weights = {n.input[0] for n in q.graph.node if n.op_type == "DequantizeLinear"}
    quantized = [
        numpy_helper.to_array(i)
        for i in q.graph.initializer
        if i.name in weights and i.data_type == onnx.TensorProto.INT8
    ]
    assert quantized and all(np.abs(w.astype(int)).max() <= 64 for w in quantized)
    assert check_precision(model, q, golden, "int8-cpu").passed


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


@pytest.mark.parametrize("method", ["percentile", "entropy"])
def test_histogram_calibration_takes_a_number_of_inputs_that_is_no_multiple_of_the_batch(
    fp32, tmp_path, method
):
    """ONNX Runtime's histogram calibrators stack the batches: a short last one must not reach them."""
    model, golden, (mean, std) = fp32
    calib = ((load_digits("val")[0][:21] - mean) / std).astype(np.float32)  # batches of 16 and 5
    q = to_int8(model, calib, method=method, cache_dir=tmp_path)
    assert Counter(n.op_type for n in q.graph.node)["QuantizeLinear"] > 0
    assert check_precision(model, q, golden, "int8", counterfactual=False).passed


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
    assert main([str(src), "--onnx", "--precision", "int8"]) == 2
    assert "needs --calib-data" in capsys.readouterr().err
    assert main([str(src), "--onnx", "--precision", "fp16", "--check-samples", "16", "-q"]) == 0
    model = onnx.load(tmp_path / "demo.onnx")
    assert {p.key: p.value for p in model.metadata_props}["precision"] == "fp16"
    assert any(i.data_type == onnx.TensorProto.FLOAT16 for i in model.graph.initializer)
    report = json.loads((tmp_path / "demo.report.json").read_text())
    assert report["precision"]["passed"] and report["export"]["precision"] == "fp16"
    assert verify_main([str(tmp_path / "demo.onnx"), "-q"]) == 0  # the FP16 file against its golden data


@pytest.mark.parametrize("exporter", ["dynamo", "legacy"])
@pytest.mark.parametrize("precision", ["fp16", "int8"])
def test_static_exports_take_every_precision(tmp_path, exporter, precision, digits_npy):
    """--dynamic none: every run (golden, check, calibration, emulation) feeds the fixed batch."""
    src = tmp_path / "demo.pt"
    src.write_bytes(DEMO.read_bytes())
    args = [str(src), "--onnx", "--dynamic", "none", "--precision", precision, "--exporter", exporter]
    assert (
        main([*args, "--calib-data", str(digits_npy), "--check-samples", "12", "--calib-samples", "40", "-q"])
        == 0
    )
    model = onnx.load(tmp_path / "demo.onnx")
    assert [d.dim_value for d in model.graph.input[0].type.tensor_type.shape.dim] == [1, 1, 32, 32]
    assert verify_main([str(tmp_path / "demo.onnx"), "-q"]) == 0


def test_int8_is_checked_on_inputs_it_was_not_calibrated_on(tmp_path, digits_npy, monkeypatch):
    import scconv_deploy.onnx_export as ox

    seen = {}
    real = ox.to_int8

    def spy(model, calib, **kwargs):
        seen["calib"] = calib
        return real(model, calib, **kwargs)

    monkeypatch.setattr(ox, "to_int8", spy)
    result = export_onnx(
        DEMO, tmp_path / "q.onnx", precision="int8", calib_data=digits_npy, check_samples=24, calib_samples=64
    )
    assert result.ok, result.precision_check.reasons
    golden = result.check.golden.inputs.reshape(24, -1)
    calib = seen["calib"].reshape(len(seen["calib"]), -1)
    assert len(calib) == 64 and not (golden[:, None, :] == calib[None, :, :]).all(axis=2).any()
    assert "held out" in result.report["check"]["data"]
    with pytest.raises(ExportError, match="not calibrated on"):
        export_onnx(DEMO, tmp_path / "q.onnx", precision="int8", calib_data=digits_npy, check_samples=400)
