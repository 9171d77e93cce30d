"""Shared fixtures: hypothesis profiles, SCConv configuration strategies, realistic parameters."""

from __future__ import annotations

import os

import pytest
import torch
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

from scconv_deploy.modules.config import GATES, cru_channels

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


def randomize_(module: torch.nn.Module, seed: int) -> torch.nn.Module:
    """Give every parameter a trained-looking random value (norm scales around 1, biases around 0)."""
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


def random_input(shape, seed: int) -> torch.Tensor:
    return torch.randn(shape, generator=torch.Generator().manual_seed(seed))


def tie_free_input(block: torch.nn.Module, shape, seed: int, guard: float) -> torch.Tensor:
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


@pytest.fixture(scope="session")
def demo_onnx(tmp_path_factory):
    """Factory: the seed demo checkpoint exported once per session per ``dynamic`` mode (no check)."""
    from pathlib import Path

    from scconv_deploy.onnx_export import export_onnx

    demo = Path(__file__).resolve().parents[1] / "models" / "scconv_cnn_digits_seed.pt"
    made: dict[str, Path] = {}

    def make(dynamic: str = "batch") -> Path:
        if dynamic not in made:
            path = tmp_path_factory.mktemp("demo-onnx") / f"demo-{dynamic}.onnx"
            export_onnx(demo, path, exporter="legacy", dynamic=dynamic, check=False)
            made[dynamic] = path
        return made[dynamic]

    return make


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
