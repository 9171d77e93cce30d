"""Shared fixtures: hypothesis profiles, SCConv configuration strategies, realistic parameters, artefacts.

Importable without PyTorch (tests/deploy runs where it is absent): torch is imported inside the
helpers that need it. The demo model's ONNX files and test images are made with PyTorch where it
is installed; elsewhere they are read from ``$SCCONV_TEST_ARTEFACTS`` (written by
``python tests/artefacts.py DIR`` where PyTorch is), and tests needing them skip without either
(fail, when the variable is set: the artefacts were promised).
"""

from __future__ import annotations

import importlib.util
import logging
import os
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

ARTEFACTS_ENV = "SCCONV_TEST_ARTEFACTS"
HAVE_TORCH = importlib.util.find_spec("torch") is not None

settings.register_profile(
    "default", max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
settings.register_profile("thorough", max_examples=300, deadline=None)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "default"))


def divisors(n: int) -> list[int]:
    return [d for d in range(1, n + 1) if n % d == 0]


@st.composite
def scconv_kwargs(draw, gate=None, torch_gn=None):
    """Valid ScConv keyword sets spanning channels, groups, alpha, squeeze, group size, kernel, t."""
    from scconv_deploy.modules.config import GATES, cru_channels

    c = draw(st.sampled_from([4, 6, 8, 12, 16, 24, 32, 48, 64]))
    alpha = draw(st.sampled_from([0.25, 1 / 3, 0.5, 0.75]))
    up, low = cru_channels(c, alpha)
    squeezes = [s for s in (1, 2, 4) if up // s >= 1 and low // s >= 1]
    s = draw(st.sampled_from(squeezes))
    return {
        "op_channel": c,
        "group_num": draw(st.sampled_from(divisors(c))),
        "gate_treshold": draw(st.sampled_from([0.5, 0.3, 0.45, 0.62])),
        "alpha": alpha,
        "squeeze_radio": s,
        "group_size": draw(st.sampled_from([d for d in divisors(up // s) if c % d == 0])),
        "group_kernel_size": draw(st.sampled_from([1, 3, 5])),
        "gate": gate or draw(st.sampled_from(GATES)),
        "torch_gn": draw(st.booleans()) if torch_gn is None else torch_gn,
    }


@st.composite
def input_shapes(draw, channels: int, group_num: int):
    """(N, C, H, W) with at least two elements per norm group (the unbiased std needs two)."""
    n, h, w = draw(st.integers(1, 3)), draw(st.integers(1, 9)), draw(st.integers(1, 9))
    if (channels // group_num) * h * w < 2:
        w = 2
    return (n, channels, h, w)


def randomize_(module, seed: int):
    """Give every parameter a trained-looking random value (norm scales around 1, biases around 0)."""
    import torch

    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in module.named_parameters():
            noise = torch.randn(p.shape, generator=gen)
            if name.endswith(("gn.weight", "gn.gamma")):
                p.copy_(1.0 + 0.5 * noise)
            elif name.endswith(("gn.bias", "gn.beta", "GWC.bias")):
                p.copy_(0.3 * noise)
            else:
                p.copy_(noise / max(1.0, p[0].numel()) ** 0.5)
    return module


def random_input(shape, seed: int):
    import torch

    return torch.randn(shape, generator=torch.Generator().manual_seed(seed))


def tie_free_input(block, shape, seed: int, guard: float):
    """A random input of ``shape`` with no gate value within ``guard`` of the threshold.

    Tiny norm groups, or a channel whose gate barely depends on its input (a norm weight near
    zero leaves r = sigmoid(bias·w) for every input: a structural near-tie), can make a tie
    impossible to nudge away; then another random draw is taken, and then a smaller guard, down
    to guard/100 (1e-7 for the default: still above the half-ulp rounding of a gate near 0.5, and
    such a gate's z is tiny, so two implementations cannot round it apart).
    """
    from scconv_deploy.ties import untie

    for g in (guard, guard / 10, guard / 100):
        for attempt in range(4):
            try:
                return untie(block, random_input(shape, seed + 7919 * attempt), g)
            except ValueError:
                continue
    raise AssertionError(f"no tie-free input of shape {shape} found")


@pytest.fixture
def seed_block():
    """A seed-variant ScConv (C=32) with trained-looking parameters, in eval mode."""
    from scconv_deploy import ScConv

    return randomize_(ScConv(32), seed=0).eval()


@pytest.fixture(autouse=True)
def _package_log_level():
    """Commands run by tests and their module fixtures set the package logger's level (-q, -v): each
    test starts from the default (NOTSET: warnings reach the root logger and caplog)."""
    logger = logging.getLogger("scconv_deploy")
    logger.setLevel(logging.NOTSET)
    yield
    logger.setLevel(logging.NOTSET)


def artefact(name: str) -> Path:
    """A file from ``$SCCONV_TEST_ARTEFACTS``: skip without the variable, fail when it lacks the file."""
    folder = os.environ.get(ARTEFACTS_ENV)
    if not folder:
        pytest.skip(
            f"no PyTorch here to make {name}, and no ${ARTEFACTS_ENV}: run `python tests/artefacts.py DIR` "
            f"where PyTorch is, then set {ARTEFACTS_ENV}=DIR"
        )
    path = Path(folder) / name
    if not path.is_file():
        pytest.fail(f"${ARTEFACTS_ENV}={folder} has no {name}: run `python tests/artefacts.py {folder}`")
    return path


@pytest.fixture(scope="session")
def demo_onnx(tmp_path_factory):
    """Factory: the seed demo checkpoint exported once per session per ``dynamic`` mode (no check)."""
    made: dict[str, Path] = {}

    def make(dynamic: str = "batch") -> Path:
        if dynamic not in made:
            if HAVE_TORCH:
                from artefacts import export_demo

                made[dynamic] = export_demo(tmp_path_factory.mktemp("demo-onnx"), dynamic)
            else:
                made[dynamic] = artefact(f"demo-{dynamic}.onnx")
        return made[dynamic]

    return make


@pytest.fixture(scope="session")
def verified_demo(tmp_path_factory):
    """Factory: the seed demo exported and checked in a precision (fp32, fp16, int8), with golden data."""
    made: dict[str, Path] = {}

    def make(precision: str = "fp32") -> Path:
        if precision not in made:
            if HAVE_TORCH:
                from artefacts import export_verified

                made[precision] = export_verified(tmp_path_factory.mktemp("verified"), precision)
            else:
                made[precision] = artefact(f"verified-{precision}.onnx")
                artefact(f"verified-{precision}.golden.npz")
        return made[precision]

    return make


@pytest.fixture(scope="session")
def demo_golden(tmp_path_factory) -> Path:
    """PyTorch's golden data of the seed demo on 22 real test digits (every one holds a gate tie)."""
    if HAVE_TORCH:
        from artefacts import demo_golden

        return demo_golden(tmp_path_factory.mktemp("demo-golden"))
    return artefact("demo.golden.npz")


@pytest.fixture(scope="session")
def digits_test() -> tuple[np.ndarray, np.ndarray]:
    """The demo's held-out test split as uint8 images (N, 32, 32, 1) and their labels."""
    if HAVE_TORCH:
        from artefacts import digits_images

        return digits_images()
    return np.load(artefact("digits_test.npy")), np.load(artefact("digits_test_labels.npy"))


@pytest.fixture(scope="module")
def onnx_path(demo_onnx):
    """The seed demo exported with a dynamic batch."""
    return demo_onnx()


@pytest.fixture(scope="module")
def model(onnx_path):
    """The seed demo's ONNX file loaded with ``scconv_deploy.runtime`` on the CPU."""
    from scconv_deploy.runtime import load

    with load(onnx_path, device="cpu") as m:
        yield m


@pytest.fixture(scope="session")
def yolo_project(tmp_path_factory):
    """The user's Ultralytics project (``yolo_project.YoloProject``): networks built once, on request."""
    from yolo_project import YoloProject, ultralytics_env

    ultralytics_env(tmp_path_factory.mktemp("ultralytics_config"))
    return YoloProject(tmp_path_factory.mktemp("myproject"))


@pytest.fixture
def gpu(monkeypatch):
    """A CUDA driver stand-in (``trt_standin.FakeDriver``: an H100 with a CUDA 12.8 driver) behind
    ``scconv_deploy.trt.cuda``."""
    from scconv_deploy.trt import cuda as trt_cuda

    from trt_standin import FakeDriver

    driver = FakeDriver()
    monkeypatch.setattr(trt_cuda, "driver_library", lambda: driver)
    return driver


@pytest.fixture
def fresh_tensorrt():
    """TensorRT forgotten before and after the test, so that each test installs its own stand-in."""
    from trt_standin import forget_tensorrt

    forget_tensorrt()
    yield
    forget_tensorrt()
