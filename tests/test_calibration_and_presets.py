"""Check inputs come from real data in the forms users have; presets are validated TOML."""

import numpy as np
import pytest

from scconv_deploy.calibration import load_inputs
from scconv_deploy.errors import ExportError
from scconv_deploy.presets import load_preset

SHAPE = (1, 1, 32, 32)


def test_float_arrays_shaped_like_the_input_are_used_as_is(tmp_path):
    x = np.random.default_rng(0).standard_normal((5, 1, 32, 32)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    got, desc = load_inputs(tmp_path / "x.npy", SHAPE, mean=[0.5], std=[0.2])
    assert np.array_equal(got, x) and "5 inputs" in desc


def test_uint8_images_are_scaled_resized_and_normalised(tmp_path):
    images = np.full((3, 16, 16), 255, dtype=np.uint8)
    np.save(tmp_path / "img.npy", images)
    got, _ = load_inputs(tmp_path / "img.npy", SHAPE, mean=[0.5], std=[0.25])
    assert got.shape == (3, 1, 32, 32) and np.allclose(got, (1.0 - 0.5) / 0.25)


def test_image_folders_are_read_with_pillow(tmp_path):
    from PIL import Image

    for i in range(2):
        Image.fromarray(np.full((8, 8, 3), 64 * i, dtype=np.uint8)).save(tmp_path / f"{i}.png")
    got, _ = load_inputs(tmp_path, (1, 3, 8, 8), mean=None, std=None)
    assert got.shape == (2, 3, 8, 8) and np.allclose(got[1], 64 / 255)


def test_images_of_any_size_are_brought_to_the_input_one_by_one(tmp_path):
    from PIL import Image

    Image.fromarray(np.full((8, 16, 3), 255, dtype=np.uint8)).save(tmp_path / "wide.png")
    Image.fromarray(np.full((32, 8, 3), 0, dtype=np.uint8)).save(tmp_path / "tall.png")
    stretched, _ = load_inputs(tmp_path, (1, 3, 8, 8), mean=[0.0] * 3, std=[1.0] * 3)
    assert stretched.shape == (2, 3, 8, 8)
    assert np.allclose(stretched[0], 0.0) and np.allclose(stretched[1], 1.0)  # sorted: tall, wide


def test_letterboxing_keeps_the_aspect_ratio_and_pads_with_grey(tmp_path):
    wide = np.full((2, 8, 16, 3), 255, dtype=np.uint8)  # fits 8x8 as 4 rows of white, centred
    np.save(tmp_path / "wide.npy", wide)
    x, _ = load_inputs(tmp_path / "wide.npy", (1, 3, 8, 8), mean=[0.0] * 3, std=[1.0] * 3, resize="letterbox")
    grey = 114 / 255
    assert np.allclose(x[:, :, :2], grey) and np.allclose(x[:, :, 6:], grey)
    assert np.allclose(x[:, :, 2:6], 1.0)
    with pytest.raises(ExportError, match="resize='crop' is unknown"):
        load_inputs(tmp_path / "wide.npy", (1, 3, 8, 8), resize="crop")


def test_limit_caps_the_number_of_inputs(tmp_path):
    np.save(tmp_path / "x.npy", np.zeros((10, 1, 32, 32), np.float32))
    assert len(load_inputs(tmp_path / "x.npy", SHAPE, limit=4)[0]) == 4


def test_without_data_random_inputs_are_used_and_said(caplog):
    x, desc = load_inputs(None, SHAPE, limit=3)
    assert x.shape == (3, 1, 32, 32) and "random" in desc and "not representative" in caplog.text


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (np.zeros((2, 3, 32, 32), np.float32), "neither model inputs"),
        (np.zeros((2, 32, 32, 3), np.uint8), None),  # RGB images for a grey network: averaged, fine
        (np.zeros((0, 1, 32, 32), np.float32), "is empty"),
    ],
)
def test_unusable_arrays_are_refused_with_the_reason(tmp_path, content, message):
    np.save(tmp_path / "x.npy", content)
    if message is None:
        assert load_inputs(tmp_path / "x.npy", SHAPE)[0].shape == (2, 1, 32, 32)
        return
    with pytest.raises(ExportError, match=message):
        load_inputs(tmp_path / "x.npy", SHAPE)


def test_pickled_npy_is_never_unpickled(tmp_path):
    np.save(tmp_path / "x.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(ExportError, match="not a readable"):
        load_inputs(tmp_path / "x.npy", SHAPE)


def test_presets_accept_cli_option_names_with_dashes_or_underscores(tmp_path):
    p = tmp_path / "p.toml"
    p.write_text('dynamic = "none"\ncheck-samples = 8\ntie_guard = 1\n')
    assert load_preset(p) == {"dynamic": "none", "check_samples": 8, "tie_guard": 1}


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("opset = '18'\n", "wrong type"),
        ("simplify = 1\n", "wrong type"),
        ("a = [\n", "not valid TOML"),
        ("threads = 2\n", "unknown key 'threads'"),
    ],
)
def test_bad_presets_are_refused_naming_the_key(tmp_path, text, message):
    p = tmp_path / "p.toml"
    p.write_text(text)
    with pytest.raises(ExportError, match=message):
        load_preset(p)


def test_shipped_presets_load():
    from pathlib import Path

    root = Path(__file__).resolve().parents[1] / "export"
    assert load_preset(root / "onnx-static.toml")["dynamic"] == "none"
    assert load_preset(root / "onnx-dynamic.toml")["dynamic"] == "batch+hw"
