"""Verification of a TensorRT engine against golden PyTorch data (``scconv_deploy.trt.check``), with ONNX
Runtime standing in for TensorRT. The TensorRT layer itself is specified in tests/deploy/.
"""

from __future__ import annotations

import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from scconv_deploy import EngineError, VerificationError
from scconv_deploy.checkpoint import load_checkpoint
from scconv_deploy.convert import to_deploy
from scconv_deploy.datasets import load_digits
from scconv_deploy.gates import with_gate_outputs
from scconv_deploy.golden import Golden
from scconv_deploy.tap import make_golden
from scconv_deploy.trt import BuildPlan, TensorSpec, find_golden, load_golden_for, verify_engine

ROOT = Path(__file__).resolve().parents[1]
DEMO = ROOT / "models" / "scconv_cnn_digits_seed.pt"

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning", "ignore::UserWarning")


@pytest.fixture(scope="module")
def demo(demo_onnx) -> Path:
    """The demo model as scconv-export ships it: dynamic batch, N x 1 x 32 x 32."""
    return demo_onnx("batch")


@pytest.fixture(scope="module")
def demo_hw(demo_onnx) -> Path:
    """The demo model with dynamic batch, height and width."""
    return demo_onnx("batch+hw")


@pytest.fixture(scope="module")
def golden() -> Golden:
    """PyTorch outputs and gate decisions of the demo's export form on 22 real test digits."""
    ckpt = load_checkpoint(DEMO)
    images, _ = load_digits("test")
    x = ((images[:22] - np.float32(ckpt.meta["mean"][0])) / np.float32(ckpt.meta["std"][0])).astype(
        np.float32
    )
    return make_golden(to_deploy(ckpt.model.eval()), x, ["output"])


class OrtEngine:
    """The ``Engine`` contract (inputs, outputs, infer) over ONNX Runtime, with a chosen batch profile."""

    def __init__(self, model: onnx.ModelProto, batch: tuple[int, int, int], scale: float = 1.0, hw: int = 32):
        self.session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
        shapes = [(b, 1, hw, hw) for b in batch]
        self.inputs = {"input": TensorSpec(*shapes, np.dtype(np.float32))}
        self.outputs = [o.name for o in self.session.get_outputs()]
        self.scale = scale
        self.batches: list[int] = []

    def infer(self, feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        assert self.inputs["input"].admits(feed["input"].shape)
        self.batches.append(len(feed["input"]))
        results = dict(zip(self.outputs, self.session.run(None, feed), strict=True))
        results["output"] = results["output"] * np.float32(self.scale)
        return results


GATES = ["gate:features.1.0.SRU", "gate:features.3.0.SRU", "gate:features.5.0.SRU"]


def test_engine_exposing_gates_is_verified_with_flips_counted(demo, golden):
    engine = OrtEngine(with_gate_outputs(onnx.load(demo)), batch=(1, 4, 4))
    result = verify_engine(engine, golden, GATES)
    assert result.passed, result.reasons
    assert engine.batches == [4, 4, 4, 4, 4, 2]
    assert result.gates_compared == 22 * (32 * 32 * 32 + 64 * 16 * 16 + 128 * 8 * 8)
    assert result.real_flips == 0 and len(result.compared) > 0


def test_a_static_batch_engine_gets_padded_batches(demo, golden):
    engine = OrtEngine(with_gate_outputs(onnx.load(demo)), batch=(4, 4, 4))
    assert verify_engine(engine, golden, GATES).passed and engine.batches == [4] * 6


def test_without_gate_outputs_tie_samples_are_set_aside_and_all_tie_data_is_inconclusive(demo, golden):
    # Real digits hold exact ties (a constant norm group gives sigmoid(0) = 0.5 = t) in every sample:
    # without the gate values nothing can be compared tightly, and the check says how to fix that.
    assert golden.tie_samples().all()
    result = verify_engine(OrtEngine(onnx.load(demo), batch=(1, 8, 8)), golden)
    assert not result.passed and result.flips is None and result.compared == []
    assert result.tie_samples == list(range(22)) and "gate outputs exposed" in result.reasons[0]
    assert any("--debug-gates" in note for note in result.notes)


def test_an_engine_that_computes_wrongly_fails(demo, golden):
    wrong = OrtEngine(with_gate_outputs(onnx.load(demo)), batch=(1, 8, 8), scale=1.01)
    result = verify_engine(wrong, golden, GATES, precision="FP32")
    assert not result.passed and "exceeds atol" in result.reasons[0]
    assert (result.rtol, result.atol) == (1e-3, 1e-4)
    close = OrtEngine(with_gate_outputs(onnx.load(demo)), batch=(1, 8, 8), scale=1.0001)
    relaxed = verify_engine(close, golden, GATES, precision="FP16")
    assert relaxed.passed and (relaxed.rtol, relaxed.atol) == (1e-2, 1e-2)


def test_golden_inputs_outside_the_profile_or_missing_outputs_are_errors(demo, golden):
    with pytest.raises(VerificationError, match="do not fit the engine's profile"):
        verify_engine(OrtEngine(onnx.load(demo), batch=(1, 1, 1), hw=16), golden)
    with pytest.raises(VerificationError, match="no output"):
        verify_engine(OrtEngine(onnx.load(demo), batch=(1, 1, 1)), golden, GATES)


def test_golden_data_is_matched_to_the_plan_before_any_build(demo, demo_hw, golden, tmp_path, caplog):
    path = tmp_path / "demo.golden.npz"
    golden.save(path)
    assert load_golden_for(BuildPlan.from_onnx(demo), path).samples == 22
    assert "without --debug-gates the check can compare no sample" in caplog.text
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
