"""Check and calibration inputs: real data from .npy/.npz files or image folders, or random inputs.

Arrays are read without pickle. A float array shaped like the model input (N, C, H, W) is taken
as already pre-processed. A uint8 array of images, (N, H, W) or (N, H, W, C), and image files
(PNG/JPEG/BMP, read as RGB; needs Pillow: ``pip install 'scconv-deploy[images]'``) are brought
to the input's H×W one by one, then scaled to [0, 1] and normalised with the checkpoint's mean/std.
How an image is brought to size follows the network (``resize``):

* ``"stretch"`` — resized to H×W (bilinear), as the demo models were trained;
* ``"letterbox"`` — as Ultralytics feeds its detectors: scaled by one factor to fit inside H×W
  (bilinear, rounded to 8 bits like OpenCV's resize), centred, and padded with grey (114).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from .errors import DependencyError, ExportError

logger = logging.getLogger(__name__)

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp"}


RESIZE_MODES = ("stretch", "letterbox")
LETTERBOX_PAD = 114  # Ultralytics' grey border


def _letterbox(image: torch.Tensor, h: int, w: int) -> torch.Tensor:
    """One image (C, H0, W0), values 0..255, fitted into H×W as Ultralytics' LetterBox does."""
    h0, w0 = image.shape[1:]
    r = min(h / h0, w / w0)
    new_h, new_w = max(round(h0 * r), 1), max(round(w0 * r), 1)
    if (new_h, new_w) != (h0, w0):
        image = F.interpolate(image[None], size=(new_h, new_w), mode="bilinear", align_corners=False)[0]
        image = image.round().clamp(0, 255)  # OpenCV resizes 8-bit images to 8 bits
    dh, dw = (h - new_h) / 2, (w - new_w) / 2
    top, left = round(dh - 0.1), round(dw - 0.1)
    canvas = torch.full((image.shape[0], h, w), float(LETTERBOX_PAD))
    canvas[:, top : top + new_h, left : left + new_w] = image
    return canvas


def _fit(image: torch.Tensor, h: int, w: int, resize: str) -> torch.Tensor:
    """One image (C, H0, W0) brought to H×W (see the module docstring)."""
    if resize == "letterbox":
        return _letterbox(image, h, w)
    if tuple(image.shape[1:]) == (h, w):
        return image
    return F.interpolate(image[None], size=(h, w), mode="bilinear", align_corners=False)[0]


def _images_to_input(
    images: Sequence[np.ndarray], shape: Sequence[int], mean, std, resize: str = "stretch"
) -> np.ndarray:
    """uint8 images, each (H, W) or (H, W, C) of any size, → model inputs (N, C, H, W)."""
    _, c, h, w = shape
    fitted = []
    for image in images:
        x = torch.from_numpy(np.array(image, dtype=np.float32))  # a copy: PIL arrays are read-only
        x = (x[..., None] if x.ndim == 2 else x).permute(2, 0, 1)
        if x.shape[0] != c:
            if x.shape[0] == 1:
                x = x.expand(c, -1, -1)
            elif c == 1:
                x = x.mean(dim=0, keepdim=True)
            else:
                raise ExportError(f"images have {x.shape[0]} channels, the network takes {c}")
        fitted.append(_fit(x, h, w, resize))
    x = torch.stack(fitted) / 255.0
    if mean is not None and std is not None:
        x = (x - torch.tensor(mean).view(1, -1, 1, 1)) / torch.tensor(std).view(1, -1, 1, 1)
    else:
        logger.warning(
            "images are scaled to [0, 1] but not normalised: nothing records the network's mean/std; "
            "pass --mean and --std if it was trained on normalised inputs"
        )
    return x.contiguous().numpy()


def _read_array(path: Path) -> np.ndarray:
    try:
        data = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as err:
        raise ExportError(f"{path} is not a readable .npy/.npz array: {err}") from err
    if isinstance(data, np.lib.npyio.NpzFile):
        with data:
            if not data.files:
                raise ExportError(f"{path} holds no array")
            return data["inputs"] if "inputs" in data.files else data[data.files[0]]
    return data


def _read_images(paths: list[Path]) -> list[np.ndarray]:
    try:
        from PIL import Image
    except ImportError as err:
        raise DependencyError("reading images needs Pillow: pip install 'scconv-deploy[images]'") from err
    images = []
    for path in paths:
        with Image.open(path) as image:
            images.append(np.asarray(image.convert("RGB")))
    return images


def load_inputs(
    source: str | Path | None,
    input_shape: Sequence[int],
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
    limit: int = 64,
    seed: int = 0,
    resize: str = "stretch",
) -> tuple[np.ndarray, str]:
    """(inputs (N, C, H, W) float32, a description of where they came from), at most ``limit``.

    ``resize`` says how images are brought to the input's size: "stretch" or "letterbox" (see
    the module docstring).
    """
    if resize not in RESIZE_MODES:
        raise ExportError(f"resize={resize!r} is unknown: use one of {', '.join(RESIZE_MODES)}")
    shape = tuple(int(d) for d in input_shape)
    if source is None:
        logger.warning(
            "no calibration data given: checking on random inputs (gate statistics are not representative)"
        )
        gen = np.random.default_rng(seed)
        return gen.standard_normal((limit, *shape[1:]), dtype=np.float32), f"{limit} random normal inputs"
    path = Path(source)
    if not path.exists():
        raise ExportError(f"calibration data {path}: no such file or directory")
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES | {".npy", ".npz"})
        if not files:
            raise ExportError(f"calibration data {path}: no .npy/.npz or image files in the directory")
        arrays = [_read_array(p) for p in files if p.suffix in {".npy", ".npz"}]
        images = [p for p in files if p.suffix.lower() in IMAGE_SUFFIXES][:limit]
        parts = [_to_input(a[:limit], path, shape, mean, std, resize) for a in arrays]
        if images:
            parts.append(_images_to_input(_read_images(images), shape, mean, std, resize))
        x = np.concatenate(parts)
    else:
        x = _to_input(_read_array(path)[:limit], path, shape, mean, std, resize)
    x = np.ascontiguousarray(x[:limit], dtype=np.float32)
    if not len(x):
        raise ExportError(f"calibration data {path} is empty")
    return x, f"{len(x)} inputs from {path}"


def _to_input(a: np.ndarray, path: Path, shape: tuple[int, ...], mean, std, resize: str) -> np.ndarray:
    if a.dtype == np.uint8 and a.ndim in (3, 4):
        return _images_to_input(a, shape, mean, std, resize)
    if np.issubdtype(a.dtype, np.floating) and a.ndim == 4 and a.shape[1:] == shape[1:]:
        return a.astype(np.float32)
    expected = "×".join(map(str, shape[1:]))
    raise ExportError(
        f"calibration data {path}: array {a.dtype} {a.shape} is neither model inputs (float, N×{expected}) "
        f"nor uint8 images (N×H×W[×C])"
    )
