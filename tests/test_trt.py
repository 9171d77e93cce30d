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
from scconv_deploy.onnx_export import export_onnx
from scconv_deploy.tap import make_golden
from scconv_deploy.trt import (
    BuildPlan,
    TensorSpec,
    find_golden,
    load_golden_for,
    prepare_check,
    verify_engine,
)
from scconv_deploy.verify import forced_graph, tolerance_for

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


def _golden(gates: str) -> Golden:
    ckpt = load_checkpoint(DEMO)
    images, _ = load_digits("test")
    x = ((images[:22] - np.float32(ckpt.meta["mean"][0])) / np.float32(ckpt.meta["std"][0])).astype(
        np.float32
    )
    return make_golden(to_deploy(ckpt.model.eval(), gates=gates), x, ["output"])


@pytest.fixture(scope="module")
def golden() -> Golden:
    """PyTorch outputs and gate decisions of the demo's export form (exact gates, the default) on 22
    real test digits."""
    return _golden("exact")


@pytest.fixture(scope="module")
def fast_golden() -> Golden:
    """The same with fast gates, whose gate tensors are decision margins."""
    return _golden("fast")


@pytest.fixture(scope="module")
def fast_demo(tmp_path_factory) -> Path:
    """The demo as scconv-export ships it with ``--gates fast``."""
    path = tmp_path_factory.mktemp("fast") / "demo.onnx"
    export_onnx(DEMO, path, exporter="legacy", dynamic="batch", gates="fast", check=False)
    return path


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
    """Exact gates: ONNX Runtime's sigmoid rounds some ties the other way than PyTorch's."""
    engine = OrtEngine(with_gate_outputs(onnx.load(demo)), batch=(1, 8, 8))
    result = verify_engine(engine, golden, gate_outputs=GATES)
    assert result.passed, result.reasons
    assert 0 < result.compared < 22 and result.deployed.flipped > 0  # ties taken the other way
    assert result.compared == 22 - len(result.deployed.diverged)
    assert any("no verification twin" in n for n in result.notes)


def test_fast_gates_exposed_as_decision_margins_are_read_as_decisions(fast_demo, fast_golden):
    """Fast gates: the engine's gate tensors are decision margins, decided as the golden data's specs say."""
    engine = OrtEngine(with_gate_outputs(onnx.load(fast_demo)), batch=(1, 8, 8))
    golden = fast_golden
    result = verify_engine(engine, golden, gate_outputs=GATES)
    assert result.passed, result.reasons
    assert all(spec.fast for spec in golden.gates)
    assert result.deployed.gates == sum(d.size for d in golden.decisions)  # every gate read
    assert result.compared == 22 - len(result.deployed.diverged)
    assert result.deployed.real_flips == 0


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
    setup = prepare_check(BuildPlan.from_onnx(demo), path)
    assert setup.golden.samples == 22 and setup.twin is not None and caplog.text == ""
    assert prepare_check(BuildPlan.from_onnx(demo), path, twin=False).twin is None
    assert "without a verification twin or --debug-gates the check can compare no sample" in caplog.text
    caplog.clear()
    prepare_check(BuildPlan.from_onnx(demo, debug_gates=True), path, twin=False)
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
