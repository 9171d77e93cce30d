"""The shipped demo models: small, loadable safely, and as accurate as their cards say."""

import re
from pathlib import Path

import numpy as np
import pytest
import torch

from scconv_deploy import deploy_summary, to_deploy
from scconv_deploy.checkpoint import load_checkpoint
from scconv_deploy.datasets import load_digits

MODELS = Path(__file__).resolve().parents[1] / "models"
VARIANTS = {"seed": "hard/custom-gn", "head": "soft/nn-gn"}


@pytest.fixture(scope="module", params=sorted(VARIANTS))
def demo(request):
    path = MODELS / f"scconv_cnn_digits_{request.param}.pt"
    ckpt = load_checkpoint(path)  # our format: weights-only, no trust needed
    x, y = load_digits("test")
    mean, std = ckpt.meta["mean"][0], ckpt.meta["std"][0]
    return request.param, path, ckpt, torch.from_numpy((x - mean) / std), torch.from_numpy(y)


def _card_accuracy(path: Path) -> float:
    card = path.with_suffix(".md").read_text()
    match = re.search(r"held-out test accuracy\*\* \| \*\*([\d.]+)%", card)
    assert match, "the card states the held-out accuracy"
    return float(match.group(1)) / 100


def test_checkpoint_is_small_and_describes_its_input(demo):
    _, path, ckpt, _, _ = demo
    assert path.stat().st_size < 5e6
    assert ckpt.meta["input_shape"] == [1, 1, 32, 32]
    assert ckpt.meta["class_names"] == [str(d) for d in range(10)]


def test_held_out_accuracy_is_what_the_card_states(demo):
    _, path, ckpt, x, y = demo
    with torch.no_grad():
        acc = float((ckpt.model(x).argmax(1) == y).float().mean())
    assert acc == pytest.approx(_card_accuracy(path), abs=0.5 / len(y))
    assert acc == pytest.approx(ckpt.meta["accuracy"]["test_accuracy"], abs=1e-9)
    assert acc >= 0.95


def test_demo_model_holds_the_variant_its_name_says(demo):
    variant, _, ckpt, x, _ = demo
    deployed = to_deploy(ckpt.model)
    assert deploy_summary(deployed).variants == {VARIANTS[variant]: 3}
    with torch.no_grad():
        agree = (deployed(x).argmax(1) == ckpt.model(x).argmax(1)).float().mean().item()
    assert agree == 1.0


def test_data_split_is_fixed_and_disjoint():
    sizes = [len(load_digits(s)[1]) for s in ("train", "val", "test")]
    assert sizes == [1259, 179, 359]
    assert np.bincount(load_digits("test")[1]).min() >= 35  # stratified
