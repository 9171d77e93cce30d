"""Check and calibration inputs: real data from .npy/.npz files or image folders, or random inputs.

Arrays are read without pickle. A float array shaped like the model input (N, C, H, W) is taken
as already pre-processed. A uint8 array of images, (N, H, W) or (N, H, W, C), and image files
(PNG/JPEG/BMP, needs Pillow: ``pip install 'scconv-deploy[images]'``) are pre-processed like the
demo model: scaled to [0, 1], resized to H×W, then normalised with the checkpoint's mean/std.
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


def _images_to_input(images: np.ndarray, shape: Sequence[int], mean, std) -> np.ndarray:
    _, c, h, w = shape
    x = torch.from_numpy(images.astype(np.float32) / 255.0)
    x = x[..., None] if x.ndim == 3 else x
    x = x.permute(0, 3, 1, 2)
    if x.shape[1] != c:
        if x.shape[1] == 1:
            x = x.expand(-1, c, -1, -1)
        elif c == 1:
            x = x.mean(dim=1, keepdim=True)
        else:
            raise ExportError(f"images have {x.shape[1]} channels, the network takes {c}")
    if tuple(x.shape[2:]) != (h, w):
        x = F.interpolate(x, size=(h, w), mode="bilinear", align_corners=False)
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


def _read_images(paths: list[Path]) -> np.ndarray:
    try:
        from PIL import Image
    except ImportError as err:
        raise DependencyError("reading images needs Pillow: pip install 'scconv-deploy[images]'") from err
    arrays = [np.asarray(Image.open(p).convert("RGB")) for p in paths]
    if len({a.shape for a in arrays}) > 1:
        size = arrays[0].shape[:2][::-1]
        arrays = [np.asarray(Image.open(p).convert("RGB").resize(size)) for p in paths]
    return np.stack(arrays)


def load_inputs(
    source: str | Path | None,
    input_shape: Sequence[int],
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
    limit: int = 64,
    seed: int = 0,
) -> tuple[np.ndarray, str]:
    """(inputs (N, C, H, W) float32, a description of where they came from), at most ``limit``."""
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
        parts = [_to_input(a, path, shape, mean, std) for a in arrays]
        if images:
            parts.append(_images_to_input(_read_images(images), shape, mean, std))
        x = np.concatenate(parts)
    else:
        x = _to_input(_read_array(path), path, shape, mean, std)
    x = np.ascontiguousarray(x[:limit], dtype=np.float32)
    if not len(x):
        raise ExportError(f"calibration data {path} is empty")
    return x, f"{len(x)} inputs from {path}"


def _to_input(a: np.ndarray, path: Path, shape: tuple[int, ...], mean, std) -> np.ndarray:
    if a.dtype == np.uint8 and a.ndim in (3, 4):
        return _images_to_input(a, shape, mean, std)
    if np.issubdtype(a.dtype, np.floating) and a.ndim == 4 and a.shape[1:] == shape[1:]:
        return a.astype(np.float32)
    expected = "×".join(map(str, shape[1:]))
    raise ExportError(
        f"calibration data {path}: array {a.dtype} {a.shape} is neither model inputs (float, N×{expected}) "
        f"nor uint8 images (N×H×W[×C])"
    )
