"""The artefacts the deployment-side tests run on, made where PyTorch is: ``python tests/artefacts.py DIR``.

The demo checkpoint exported as scconv-export writes it (dynamic batch, batch+hw, and a static
batch; verified FP32, FP16 and INT8 files with their golden data; PyTorch's golden data of the
plain export on real test digits) and the demo's held-out test images as uint8 with their labels.
The test suite makes them
itself where PyTorch is installed; a deployment host without it reads them from
``$SCCONV_TEST_ARTEFACTS=DIR`` (see tests/conftest.py and .ci/run).
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
DEMO = ROOT / "models" / "scconv_cnn_digits_seed.pt"
DYNAMIC_MODES = ("batch", "batch+hw", "none")


#: The plain demo artefacts have exact gates (the default), whose ties ONNX Runtime's sigmoid takes
#: differently from PyTorch's: the divergence the tests of decisions as deployed need (with fast
#: gates, ONNX Runtime decides every gate of these digits as PyTorch does).
DEMO_GATES = "exact"


def export_demo(folder: Path, dynamic: str = "batch") -> Path:
    """The seed demo in export form (exact gates), legacy exporter, unchecked:
    ``folder/demo-{dynamic}.onnx``."""
    from scconv_deploy.onnx_export import export_onnx

    path = Path(folder) / f"demo-{dynamic}.onnx"
    export_onnx(DEMO, path, exporter="legacy", dynamic=dynamic, gates=DEMO_GATES, check=False)
    return path


VERIFIED_PRECISIONS = ("fp32", "fp16", "int8")


def export_verified(folder: Path, precision: str = "fp32") -> Path:
    """The seed demo exported and checked as scconv-export does by default (dynamo exporter, 32 held-out
    test images; INT8 calibrated on the validation split): ``folder/verified-{precision}.onnx`` and
    its golden data ``verified-{precision}.golden.npz``."""
    from scconv_deploy.onnx_export import export_onnx

    folder = Path(folder)
    test, val = folder / "verified-test.npy", folder / "verified-val.npy"
    np.save(test, digits_images("test")[0])
    np.save(val, digits_images("val")[0])
    path = folder / f"verified-{precision}.onnx"
    result = export_onnx(
        DEMO, path, precision=precision, check_data=test, check_samples=32, calib_data=val, calib_samples=128
    )
    if not result.ok:
        raise RuntimeError(f"the {precision} demo did not pass its own check: {result.report_path}")
    return path


GOLDEN_SAMPLES = 22


def demo_golden(folder: Path) -> Path:
    """PyTorch's golden data of the demo's export form (exact gates) on 22 test digits:
    ``folder/demo.golden.npz``.

    The same for every ``dynamic`` mode (inputs 1 x 32 x 32); every sample holds a gate tie.
    """
    from scconv_deploy.checkpoint import load_checkpoint
    from scconv_deploy.convert import to_deploy
    from scconv_deploy.datasets import load_digits
    from scconv_deploy.tap import make_golden

    ckpt = load_checkpoint(DEMO)
    images, _ = load_digits("test")
    mean, std = (np.float32(ckpt.meta[k][0]) for k in ("mean", "std"))
    x = ((images[:GOLDEN_SAMPLES] - mean) / std).astype(np.float32)
    path = Path(folder) / "demo.golden.npz"
    make_golden(to_deploy(ckpt.model.eval(), gates=DEMO_GATES), x, ["output"]).save(path)
    return path


def digits_images(split: str = "test") -> tuple[np.ndarray, np.ndarray]:
    """uint8 images (N, 32, 32, 1), as ``--calib-data`` takes them, and labels (N,)."""
    from scconv_deploy.datasets import load_digits

    x, labels = load_digits(split)
    return np.round(x[:, 0, :, :, None] * 255).astype(np.uint8), labels


def main(folder: str) -> None:
    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    for dynamic in DYNAMIC_MODES:
        print(f"wrote {export_demo(out, dynamic)}")
    for precision in VERIFIED_PRECISIONS:
        path = export_verified(out, precision)
        print(f"wrote {path}, {path.with_suffix('.golden.npz')}")
    print(f"wrote {demo_golden(out)}")
    images, labels = digits_images()
    np.save(out / "digits_test.npy", images)
    np.save(out / "digits_test_labels.npy", labels)
    print(f"wrote {out / 'digits_test.npy'}, {out / 'digits_test_labels.npy'} ({len(images)} images)")


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: python tests/artefacts.py DIR")
    main(sys.argv[1])
