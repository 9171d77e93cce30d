"""scconv_deploy.runtime: one inference API over ONNX Runtime and TensorRT, validated, thread-safe."""

from __future__ import annotations

import json
import sys
import threading
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

import numpy as np
import onnx
import onnxruntime as ort
import pytest

import scconv_deploy
from scconv_deploy.errors import DependencyError, ScconvDeployError
from scconv_deploy.runtime import InputError, ModelError, load

ROOT = Path(__file__).resolve().parents[1]
DEMO = ROOT / "models" / "scconv_cnn_digits_seed.pt"


@pytest.fixture(scope="module")
def fixed_onnx(onnx_path, tmp_path_factory) -> Path:
    """The demo graph with its batch fixed at 1 and no metadata (no mean/std)."""
    graph = onnx.load(onnx_path)
    for value in (graph.graph.input[0], graph.graph.output[0]):
        value.type.tensor_type.shape.dim[0].dim_value = 1
    del graph.metadata_props[:]
    path = tmp_path_factory.mktemp("fixed") / "fixed.onnx"
    onnx.save(graph, path)
    return path


def _random(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((n, 1, 32, 32), dtype=np.float32)


def test_outputs_equal_a_direct_onnxruntime_session(model, onnx_path):
    x = _random(5)
    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    np.testing.assert_array_equal(model(x), session.run(None, {"input": x})[0])
    assert model.infer(x).keys() == {"output"}


def test_specs_and_metadata_come_from_the_model(model):
    spec = model.input_spec
    assert (spec.name, spec.dtype, spec.shape) == ("input", np.float32, (None, 1, 32, 32))
    assert spec.describe() == "float32 (?, 1, 32, 32)"
    assert [(s.name, s.shape) for s in model.output_specs] == [("output", (None, 10))]
    assert model.platform == "onnxruntime_onnx" and model.providers == ["CPUExecutionProvider"]
    meta = model.metadata
    assert meta["input.dynamic"] == "batch" and meta["input.shape"] == [1, 1, 32, 32]
    assert meta["class_names"] == [str(d) for d in range(10)] and len(meta["mean"]) == 1
    assert meta["scconv.variants"] == {"hard/custom-gn": 3} and meta["arch"] == "scconv_cnn"


def test_the_provider_choice_is_logged(onnx_path, caplog):
    with caplog.at_level("INFO", logger="scconv_deploy.runtime"), load(onnx_path):
        pass
    assert "execution providers ['CPUExecutionProvider']" in caplog.text


@pytest.mark.parametrize(
    ("x", "got"),
    [
        (np.zeros((2, 1, 32, 32), np.float64), "got float64 (2, 1, 32, 32)"),
        (np.zeros((2, 3, 32, 32), np.float32), "got float32 (2, 3, 32, 32)"),
        (np.zeros((1, 32, 32), np.float32), "got float32 (1, 32, 32)"),
        (np.zeros((2, 1, 32, 32), np.uint8), "got uint8 (2, 1, 32, 32)"),
    ],
)
def test_inputs_off_the_spec_are_refused_in_one_line(model, x, got):
    with pytest.raises(InputError) as info:
        model(x)
    message = str(info.value)
    assert message == f"input 'input': expected float32 (?, 1, 32, 32), {got}" and "\n" not in message
    assert isinstance(info.value, ScconvDeployError) and isinstance(info.value, ValueError)


def test_non_arrays_are_refused(model):
    with pytest.raises(InputError, match="expected a numpy array, got list"):
        model([[0.0]])


def test_load_errors_name_the_problem(onnx_path, tmp_path):
    with pytest.raises(ModelError, match="no such file"):
        load(tmp_path / "missing.onnx")
    with pytest.raises(ModelError, match=r"unknown model kind '\.pt'"):
        load(DEMO)
    with pytest.raises(ModelError, match="device='gpu' is unknown"):
        load(onnx_path, device="gpu")
    (tmp_path / "bad.onnx").write_bytes(b"not a model")
    with pytest.raises(ModelError, match="ONNX Runtime cannot load"):
        load(tmp_path / "bad.onnx")
    with pytest.raises(DependencyError, match="not available"):
        load(onnx_path, providers=["NoSuchExecutionProvider"])


def test_normalize_is_the_training_arithmetic_and_gives_the_cards_accuracy(model, digits_test):
    raw, labels = digits_test  # uint8 (N, 32, 32, 1), as scconv-export --calib-data takes them
    n = 64
    mean, std = model.metadata["mean"], model.metadata["std"]
    manual = (
        raw[:n].transpose(0, 3, 1, 2).astype(np.float32) / np.float32(255) - np.float32(mean[0])
    ) / np.float32(std[0])
    np.testing.assert_array_equal(model.preprocess(raw[:n]), manual)
    np.testing.assert_array_equal(model(raw[:n], normalize=True), model(manual))
    np.testing.assert_array_equal(model.preprocess(raw[:n, :, :, 0]), manual)  # N×H×W: one channel
    accuracy = float(np.mean(model.predict_batches(raw, normalize=True).argmax(1) == labels))
    assert accuracy > 0.97  # the demo card says 98.9 %: the normalisation is the training one


def test_normalize_refuses_what_it_cannot_take(model, fixed_onnx):
    with pytest.raises(InputError, match="takes uint8 images N×H×W or N×H×W×C, got float32"):
        model(np.zeros((1, 32, 32), np.float32), normalize=True)
    with pytest.raises(InputError, match="images are 28×28, the model takes 32×32: resize them first"):
        model(np.zeros((1, 28, 28), np.uint8), normalize=True)
    with pytest.raises(InputError, match="images have 3 channel"):
        model(np.zeros((1, 32, 32, 3), np.uint8), normalize=True)
    with load(fixed_onnx) as bare, pytest.raises(InputError, match="records no mean/std"):
        bare(np.zeros((1, 32, 32), np.uint8), normalize=True)


def test_concurrent_calls_give_the_sequential_results(model):
    inputs = [_random(2, seed) for seed in range(20)]
    expected = [model(x) for x in inputs]
    results: dict[tuple[int, int], np.ndarray] = {}
    start = threading.Barrier(8)

    def worker(t: int) -> None:
        start.wait()
        for i in range(20):
            k = (t + i) % 20
            results[t, k] = model(inputs[k])

    threads = [threading.Thread(target=worker, args=(t,)) for t in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert len(results) == 8 * 20
    for (_, k), y in results.items():
        np.testing.assert_array_equal(y, expected[k])


def test_predict_batches_splits_pads_and_joins(model, fixed_onnx):
    x = _random(37, seed=3)
    whole = model(x)
    np.testing.assert_allclose(model.predict_batches(x, 8), whole, rtol=1e-5, atol=1e-4)
    np.testing.assert_allclose(model.predict_batches(x), whole, rtol=1e-5, atol=1e-4)  # default 64: one run
    with load(fixed_onnx) as fixed:
        assert fixed.input_spec.batch_range == (1, 1)
        one_by_one = fixed.predict_batches(x[:5])  # batch 1, the fixed size
        np.testing.assert_allclose(one_by_one, whole[:5], rtol=1e-5, atol=1e-4)
        with pytest.raises(InputError, match=r"batch_size 4: fixed\.onnx takes batches of 1"):
            fixed.predict_batches(x, 4)
    with pytest.raises(InputError, match="non-empty array"):
        model.predict_batches(x[:0])


def test_close_and_context_manager(onnx_path):
    with load(onnx_path) as m:
        m(_random(1))
    with pytest.raises(ModelError, match=r"demo-batch\.onnx is closed"):
        m(_random(1))
    m.close()  # twice is fine


# -- the .plan backend, against a stand-in for scconv_deploy.trt (the real one needs a GPU) ------------


@dataclass(frozen=True)
class _Profile:  # what scconv_deploy.trt's Engine.inputs holds per input
    min: tuple[int, ...]
    opt: tuple[int, ...]
    max: tuple[int, ...]
    dtype: np.dtype


class _FakeEngine:
    """An ORT session dressed as an engine with profile batch 1..8, counting overlapping calls."""

    def __init__(self, onnx_path: Path) -> None:
        self._session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
        self.inputs = {
            "input": _Profile((1, 1, 32, 32), (4, 1, 32, 32), (8, 1, 32, 32), np.dtype(np.float32))
        }
        self.outputs = ["output"]
        self.active = self.most_active = 0
        self.closed = False

    def infer(self, feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        assert not self.closed and 1 <= len(feed["input"]) <= 8  # the real engine refuses these too
        self.active += 1
        self.most_active = max(self.most_active, self.active)
        try:
            return {"output": self._session.run(None, feed)[0]}
        finally:
            self.active -= 1

    def close(self) -> None:
        self.closed = True


@pytest.fixture
def fake_trt(monkeypatch, onnx_path):
    module = ModuleType("scconv_deploy.trt")
    module.engines = []

    def load_engine(path, check_compatibility=True):
        module.engines.append(_FakeEngine(onnx_path))
        module.checked = check_compatibility
        return module.engines[-1]

    def read_sidecar(path):
        side = Path(str(path) + ".json")
        return json.loads(side.read_text()) if side.exists() else None

    module.load_engine, module.read_sidecar = load_engine, read_sidecar
    monkeypatch.setitem(sys.modules, "scconv_deploy.trt", module)
    monkeypatch.setattr(scconv_deploy, "trt", module, raising=False)
    return module


@pytest.fixture
def plan(tmp_path, onnx_path) -> Path:
    path = tmp_path / "demo.plan"
    path.write_bytes(b"engine bytes")
    metadata = {
        p.key: p.value for p in onnx.load(onnx_path).metadata_props
    }  # strings, as the sidecar keeps them
    (tmp_path / "demo.plan.json").write_text(json.dumps({"onnx": {"metadata": metadata}}))
    return path


def test_plan_backend_validates_against_the_engine_profile(fake_trt, plan, model):
    with load(plan) as engine_model:
        spec = engine_model.input_spec
        assert (spec.shape, spec.min_shape, spec.max_shape) == (
            (None, 1, 32, 32),
            (1, 1, 32, 32),
            (8, 1, 32, 32),
        )
        assert engine_model.platform == "tensorrt_plan"
        assert [(s.name, s.shape) for s in engine_model.output_specs] == [("output", (None, 10))]
        assert engine_model.metadata["mean"] == model.metadata["mean"]
        x = _random(8, seed=5)
        np.testing.assert_array_equal(engine_model(x), model(x))
        with pytest.raises(
            InputError, match=r"expected float32 \(1\.\.8, 1, 32, 32\), got float32 \(9, 1, 32, 32\)"
        ):
            engine_model(_random(9))
        np.testing.assert_allclose(engine_model.predict_batches(_random(20)), model(_random(20)), atol=1e-4)
        with pytest.raises(InputError, match=r"batch_size 16: demo\.plan takes batches of 1\.\.8"):
            engine_model.predict_batches(x, 16)
        threads = [threading.Thread(target=engine_model, args=(x,)) for _ in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
    engine = fake_trt.engines[-1]
    assert engine.most_active == 1 and engine.closed  # calls serialised on the context; closed with the model


def test_plan_backend_passes_the_compatibility_override_on(fake_trt, plan):
    with load(plan):
        assert fake_trt.checked is True
    with load(plan, check_compatibility=False):
        assert fake_trt.checked is False


def test_plan_backend_refuses_the_cpu_and_providers(fake_trt, plan):
    with pytest.raises(ModelError, match="runs on a CUDA GPU only"):
        load(plan, device="cpu")
    with pytest.raises(ModelError, match=r"does not apply to \.plan"):
        load(plan, providers=["CPUExecutionProvider"])


def test_plan_backend_without_the_trt_layer_says_so(monkeypatch, plan):
    monkeypatch.setitem(sys.modules, "scconv_deploy.trt", None)
    monkeypatch.delattr(scconv_deploy, "trt", raising=False)
    with pytest.raises(DependencyError, match=r"needs scconv_deploy\.trt"):
        load(plan)


def _gpu_skip_reason() -> str | None:
    from scconv_deploy.trt import require_trt_gpu

    try:
        require_trt_gpu()
    except DependencyError as err:
        return str(err)
    return None


@pytest.mark.gpu
def test_real_engine_matches_onnx_runtime(onnx_path, digits_test, tmp_path):
    reason = _gpu_skip_reason()
    if reason:
        pytest.skip(reason)
    from polygraphy.backend.trt import (
        CreateConfig,
        EngineFromNetwork,
        NetworkFromOnnxPath,
        Profile,
        SaveEngine,
    )

    from scconv_deploy.trt.build import strongly_typed_flag

    plan_path = tmp_path / "demo.plan"
    profile = Profile().add("input", (1, 1, 32, 32), (16, 1, 32, 32), (64, 1, 32, 32))
    network = NetworkFromOnnxPath(str(onnx_path), strongly_typed=strongly_typed_flag(_trt_major()))
    SaveEngine(EngineFromNetwork(network, CreateConfig(profiles=[profile])), str(plan_path))()
    raw, _ = digits_test
    with load(onnx_path, device="cpu") as onnx_model, load(plan_path, device="cuda") as engine_model:
        assert engine_model.input_spec.max_shape == (64, 1, 32, 32)
        x = onnx_model.preprocess(raw)  # this plan has no sidecar, so no mean/std of its own
        expected, got = onnx_model.predict_batches(x, 64), engine_model.predict_batches(x, 64)
        assert np.mean(got.argmax(1) == expected.argmax(1)) >= 0.99  # gate ties may move a sample
        assert np.median(np.abs(got - expected)) < 1e-3


def _trt_major() -> int:
    import tensorrt

    return int(tensorrt.__version__.split(".")[0])
