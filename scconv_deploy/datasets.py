"""The demo data set: scikit-learn's bundled handwritten digits, shipped with the package.

1,797 grey-scale 8×8 images of the digits 0–9 (UCI "Optical Recognition of Handwritten Digits",
as bundled by scikit-learn), stored in ``scconv_deploy/data/digits.npz`` with a fixed, stratified
train / val / test split (70 / 10 / 20 %, seed 0), so the demo model, its tests and calibration
need neither scikit-learn nor a download. Images come back upscaled (bilinear) to 32×32, scaled
to [0, 1], shape (N, 1, 32, 32), float32; normalisation is the caller's (the demo checkpoint
records its mean/std).
"""

from __future__ import annotations

from importlib import resources

import numpy as np
import torch
import torch.nn.functional as F

SPLITS = ("train", "val", "test")
CLASS_NAMES = [str(d) for d in range(10)]


def _npz() -> np.lib.npyio.NpzFile:
    return np.load(resources.files("scconv_deploy") / "data" / "digits.npz")


def load_digits(split: str, size: int = 32) -> tuple[np.ndarray, np.ndarray]:
    """(images (N, 1, size, size) float32 in [0, 1], labels (N,) int64) of one split."""
    if split not in SPLITS:
        raise ValueError(f"split={split!r} is unknown: use one of {', '.join(SPLITS)}")
    with _npz() as data:
        keep = data["split"] == SPLITS.index(split)
        images = data["images"][keep].astype(np.float32) / 16.0
        labels = data["labels"][keep].astype(np.int64)
    x = torch.from_numpy(images)[:, None]
    if size != 8:
        x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False)
    return x.numpy(), labels


def make_digits_npz(path) -> None:
    """Write the npz from scikit-learn's bundled copy (needs scikit-learn)."""
    from sklearn.datasets import load_digits as sk_digits

    bunch = sk_digits()
    images = bunch.images.astype(np.uint8)  # values 0..16
    labels = bunch.target.astype(np.uint8)
    rng = np.random.default_rng(0)
    split = np.zeros(len(labels), dtype=np.uint8)
    for digit in range(10):
        idx = rng.permutation(np.flatnonzero(labels == digit))
        n_test, n_val = round(0.2 * len(idx)), round(0.1 * len(idx))
        split[idx[:n_test]] = 2
        split[idx[n_test : n_test + n_val]] = 1
    np.savez_compressed(path, images=images, labels=labels, split=split)


def save_digits_images(split: str, path) -> int:
    """Write one split as uint8 images (N, 32, 32, 1), ready for ``--calib-data``; return N."""
    x, _ = load_digits(split)
    images = np.round(x[:, 0, :, :, None] * 255).astype(np.uint8)
    np.save(path, images)
    return len(images)


if __name__ == "__main__":
    import argparse

    parser = argparse.ArgumentParser(description="Write a split of the demo digits as uint8 images (.npy).")
    parser.add_argument("output", help="e.g. digits_test.npy")
    parser.add_argument("--split", choices=SPLITS, default="test")
    args = parser.parse_args()
    print(f"wrote {save_digits_images(args.split, args.output)} images to {args.output}")
