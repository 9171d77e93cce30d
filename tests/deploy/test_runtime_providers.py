"""ONNX Runtime providers: the ones asked for or an error, and TensorRT EP options taken from the model.

ONNX Runtime's silent fallback is reproduced with a session class that, like ORT when a GPU
provider's libraries do not load, accepts any provider list and runs on the CPU.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import ClassVar

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from scconv_deploy.errors import DependencyError
from scconv_deploy.runtime import InputError, load
from scconv_deploy.runtime.providers import FallbackError, OnnxFacts, choose_providers, tensorrt_options

TRT, CUDA, CPU = "TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"
ALL_PROVIDERS = [TRT, CUDA, CPU]


def test_providers_follow_the_device_and_what_is_installed():
    assert choose_providers("auto", None, ALL_PROVIDERS) == ALL_PROVIDERS
    assert choose_providers("auto", None, [CPU]) == [CPU]
    assert choose_providers("cpu", None, ALL_PROVIDERS) == [CPU]
    assert choose_providers("cuda", None, ALL_PROVIDERS[1:]) == ALL_PROVIDERS[1:]
    given = [CUDA, CPU]
    assert choose_providers("auto", given, ALL_PROVIDERS) == given  # an explicit list wins, as given
    assert choose_providers("auto", [(TRT, {"trt_fp16_enable": True}), CPU], ALL_PROVIDERS) == [TRT, CPU]
    # Without TensorRT's libraries (onnxruntime-gpu lists its TensorRT EP regardless) "auto" skips it.
    assert choose_providers("auto", None, ALL_PROVIDERS, tensorrt=False) == [CUDA, CPU]
    with pytest.raises(DependencyError, match="device='cuda' needs onnxruntime-gpu"):
        choose_providers("cuda", None, [CPU])
    with pytest.raises(DependencyError, match="CUDAExecutionProvider not available"):
        choose_providers("auto", given, [CPU])


class FallingBack(ort.InferenceSession):
    """A session that takes any providers and, like ORT whose GPU libraries did not load, runs on the CPU
    (``active=``: which of the requested providers it reports as active instead)."""

    made: ClassVar[list[FallingBack]] = []
    active: ClassVar[list[str] | None] = None

    def __init__(self, path, options=None, providers=None):
        self.requested = providers
        self.fallback_disabled = False
        super().__init__(path, options, providers=[CPU])
        FallingBack.made.append(self)

    def get_providers(self):
        if FallingBack.active is None:
            return super().get_providers()
        return [
            p for p in FallingBack.active if p in [r if isinstance(r, str) else r[0] for r in self.requested]
        ]

    def disable_fallback(self):
        self.fallback_disabled = True
        super().disable_fallback()


@pytest.fixture
def gpu_ort(monkeypatch):
    """onnxruntime as onnxruntime-gpu presents itself (every provider listed) on a host with TensorRT."""
    FallingBack.made, FallingBack.active = [], None
    monkeypatch.setattr(ort, "get_available_providers", lambda: list(ALL_PROVIDERS))
    monkeypatch.setattr(ort, "InferenceSession", FallingBack)
    monkeypatch.setattr("scconv_deploy.runtime.onnxrt.load_tensorrt", lambda: True)
    return FallingBack


def test_without_tensorrt_auto_does_not_ask_for_the_tensorrt_ep(onnx_path, gpu_ort, monkeypatch):
    monkeypatch.setattr("scconv_deploy.runtime.onnxrt.load_tensorrt", lambda: False)
    with pytest.raises(FallbackError, match="did not activate CUDAExecutionProvider and would run on CPU"):
        load(onnx_path)
    assert gpu_ort.made[-1].requested[0][0] == CUDA


def test_a_silent_fallback_to_the_cpu_is_an_error_naming_what_did_not_load(onnx_path, tmp_path, gpu_ort):
    with pytest.raises(FallbackError) as info:
        load(onnx_path, cache_dir=tmp_path)
    message = str(info.value)
    assert "\n" not in message and isinstance(info.value, DependencyError)
    assert message.startswith(
        f"{onnx_path.name}: ONNX Runtime did not activate TensorrtExecutionProvider, CUDAExecutionProvider "
        "and would run on CPUExecutionProvider: "
    )
    assert (
        "TensorRT libraries did not load" in message and "allow_fallback=True (--allow-fallback)" in message
    )


def test_an_allowed_fallback_runs_with_a_warning(onnx_path, tmp_path, gpu_ort, caplog):
    with (
        caplog.at_level(logging.WARNING, logger="scconv_deploy"),
        load(onnx_path, cache_dir=tmp_path, allow_fallback=True) as model,
    ):
        assert model.providers == [CPU]
        assert model(np.zeros((2, 1, 32, 32), np.float32)).shape == (2, 10)
    assert (
        "TensorrtExecutionProvider did not load; running on ['CPUExecutionProvider'] (allowed)" in caplog.text
    )
    assert gpu_ort.made[-1].fallback_disabled is False


def test_without_a_fallback_allowed_orts_own_run_time_fallback_is_switched_off(onnx_path, gpu_ort):
    with load(onnx_path, device="cpu") as model:
        assert model.providers == [CPU]
    assert gpu_ort.made[-1].fallback_disabled is True


def test_the_tensorrt_ep_gets_caches_a_profile_and_the_onnx_precision(onnx_path, tmp_path, gpu_ort):
    gpu_ort.active = [TRT, CPU]  # as if TensorRT loaded
    with load(onnx_path, providers=[TRT, CPU], cache_dir=tmp_path, max_batch=32) as model:
        (name, options), cpu = gpu_ort.made[-1].requested
        assert name == TRT and cpu == (CPU, {})
        assert options["trt_engine_cache_enable"] == "True" and options["trt_timing_cache_enable"] == "True"
        assert Path(options["trt_engine_cache_path"]).parent == tmp_path
        assert options["trt_timing_cache_path"] == str(tmp_path)
        assert (options["trt_fp16_enable"], options["trt_int8_enable"]) == ("False", "False")  # an FP32 ONNX
        assert options["trt_profile_min_shapes"] == "input:1x1x32x32"
        assert options["trt_profile_opt_shapes"] == options["trt_profile_max_shapes"] == "input:32x1x32x32"
        # Inputs outside the profile would fail inside TensorRT: the model refuses them first.
        assert (model.input_spec.min_shape, model.input_spec.max_shape) == ((1, 1, 32, 32), (32, 1, 32, 32))
        with pytest.raises(InputError, match=r"expected float32 \(1\.\.32, 1, 32, 32\)"):
            model(np.zeros((33, 1, 32, 32), np.float32))
        assert model.predict_batches(np.zeros((70, 1, 32, 32), np.float32)).shape == (70, 10)


def test_caller_options_win_and_the_cuda_ep_skips_per_shape_benchmarks(onnx_path, tmp_path, gpu_ort):
    gpu_ort.active = ALL_PROVIDERS
    given = [
        (TRT, {"trt_fp16_enable": True, "trt_max_workspace_size": 1 << 30}),
        (CUDA, {"device_id": 1}),
        CPU,
    ]
    with load(onnx_path, providers=given, cache_dir=tmp_path):
        trt, cuda, _ = gpu_ort.made[-1].requested
    assert trt[1]["trt_fp16_enable"] == "True" and trt[1]["trt_max_workspace_size"] == str(1 << 30)
    assert trt[1]["trt_engine_cache_enable"] == "True"
    assert cuda == (CUDA, {"cudnn_conv_algo_search": "HEURISTIC", "device_id": "1"})


def _facts(model: onnx.ModelProto, tmp_path: Path) -> OnnxFacts:
    path = tmp_path / "m.onnx"
    onnx.save(model, path)
    return OnnxFacts.read(path)


def _conv(dtype: int, *, dims=("N", 4, 8, 8), qdq: bool = False) -> onnx.ModelProto:
    np_dtype = onnx.helper.tensor_dtype_to_np_dtype(dtype)
    nodes = [helper.make_node("Conv", ["x", "w"], ["y"])]
    inits = [numpy_helper.from_array(np.ones((4, 4, 1, 1), np_dtype), "w")]
    if qdq:
        nodes = [
            helper.make_node("QuantizeLinear", ["x", "s", "z"], ["q"]),
            helper.make_node("DequantizeLinear", ["q", "s", "z"], ["xq"]),
            helper.make_node("Conv", ["xq", "w"], ["y"]),
        ]
        inits += [
            numpy_helper.from_array(np.array(0.1, np.float32), "s"),
            numpy_helper.from_array(np.array(0, np.int8), "z"),
        ]
    graph = helper.make_graph(
        nodes,
        "conv",
        [helper.make_tensor_value_info("x", dtype, list(dims))],
        [helper.make_tensor_value_info("y", dtype, list(dims))],
        initializer=inits,
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])


def test_fp16_and_int8_only_as_the_onnx_says(tmp_path):
    fp32 = tensorrt_options(_facts(_conv(TensorProto.FLOAT), tmp_path), 8, tmp_path, "1.31.1")
    fp16 = tensorrt_options(_facts(_conv(TensorProto.FLOAT16), tmp_path), 8, tmp_path, "1.31.1")
    int8 = tensorrt_options(_facts(_conv(TensorProto.FLOAT, qdq=True), tmp_path), 8, tmp_path, "1.31.1")
    assert (fp32["trt_fp16_enable"], fp32["trt_int8_enable"]) == ("False", "False")
    assert (fp16["trt_fp16_enable"], fp16["trt_int8_enable"]) == ("True", "False")
    assert (int8["trt_fp16_enable"], int8["trt_int8_enable"]) == ("False", "True")
    assert fp32["trt_profile_max_shapes"] == "x:8x4x8x8"


def test_profiles_take_the_export_shape_for_dynamic_hw_and_are_left_out_when_unknown(demo_onnx, tmp_path):
    hw = tensorrt_options(OnnxFacts.read(demo_onnx("batch+hw")), 16, tmp_path, "1.31.1")
    assert (
        hw["trt_profile_min_shapes"] == "input:1x1x32x32"
        and hw["trt_profile_max_shapes"] == "input:16x1x32x32"
    )
    unknown = tensorrt_options(
        _facts(_conv(TensorProto.FLOAT, dims=("N", 4, "H", "W")), tmp_path), 8, tmp_path, "1"
    )
    assert not any(key.startswith("trt_profile") for key in unknown)  # the EP then profiles shapes itself
    static = tensorrt_options(_facts(_conv(TensorProto.FLOAT, dims=(2, 4, 8, 8)), tmp_path), 8, tmp_path, "1")
    assert static["trt_profile_min_shapes"] == static["trt_profile_max_shapes"] == "x:2x4x8x8"


def test_engine_caches_are_kept_apart_per_model_and_onnx_runtime(demo_onnx, tmp_path):
    a = tensorrt_options(OnnxFacts.read(demo_onnx("batch")), 8, tmp_path, "1.31.1")["trt_engine_cache_path"]
    b = tensorrt_options(OnnxFacts.read(demo_onnx("batch+hw")), 8, tmp_path, "1.31.1")[
        "trt_engine_cache_path"
    ]
    c = tensorrt_options(OnnxFacts.read(demo_onnx("batch")), 8, tmp_path, "1.32.0")["trt_engine_cache_path"]
    assert len({a, b, c}) == 3 and a.endswith("-ort1.31.1")


def test_an_engine_cache_follows_the_weights_stored_beside_the_model(demo_onnx, tmp_path):
    """A model whose weights live in an external data file gets a new engine cache when they change."""
    path = tmp_path / "m.onnx"
    onnx.save(
        onnx.load(demo_onnx("batch")), path, save_as_external_data=True, location="m.data", size_threshold=0
    )

    def cache() -> str:
        return tensorrt_options(OnnxFacts.read(path), 8, tmp_path, "1.31.1")["trt_engine_cache_path"]

    before = cache()
    data = bytearray((tmp_path / "m.data").read_bytes())
    data[-1] ^= 1  # one weight's last byte: the .onnx file itself is unchanged
    (tmp_path / "m.data").write_bytes(bytes(data))
    assert cache() != before


def test_the_server_passes_its_batch_limit_and_fallback_choice_to_the_runtime(onnx_path, monkeypatch, capsys):
    from scconv_deploy.cli import serve
    from scconv_deploy.errors import ModelError

    seen = {}

    def fake_load(path, **kwargs):
        seen.update(kwargs)
        raise ModelError("stop here")

    monkeypatch.setattr(serve, "load", fake_load)
    argv = [
        str(onnx_path),
        "--max-batch",
        "16",
        "--allow-fallback",
        "--cache-dir",
        "/tmp/c",
        "--no-compat-check",
    ]
    assert serve.main(argv) == 2
    assert seen == {
        "device": "auto",
        "providers": None,
        "allow_fallback": True,
        "max_batch": 16,
        "cache_dir": "/tmp/c",
        "check_compatibility": False,
    }
    assert capsys.readouterr().err == "scconv-serve: error: stop here\n"
