"""Ultralytics YOLO networks with SCConv end to end: best.pt → scconv-export → verified ONNX → YOLO().

Every export runs as a user runs it: ``scconv-export runs/<name>/weights/best.pt`` from the
project folder, whose ``user_blocks`` module (the pasted SCConv code the pickle refers to) is
importable from nowhere else. YOLOv8n and YOLO11n, seed and HEAD SCConv, in the bottlenecks and
as their own yaml layer (pairwise), at 128² — and at 640², the size the checkpoint is trained for
in real life, once per family. What these exports prove, point by point (issue #12):

1. the current folder is importable for the console script (a subprocess runs it);
2. the Detect head's ``(Tensor, dict)`` output: the ONNX holds the one tensor Ultralytics' own
   exporter writes, ``(N, 4 + classes, anchors)``;
5. an SCConv yaml layer keeps its routing attributes (the network's forward reads them);
6. ``YOLO("best.onnx")`` predicts with the checkpoint's class names (AutoBackend's metadata).

Points 3 (``model.`` prefixes) and 4 (``to_deploy`` on FP16 networks) are specified in
``test_yolo.py``. FP16 and INT8 exports calibrate on a folder of drawn images, letterboxed as
Ultralytics feeds them, and report detection-level agreement beside the gate flips.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch

from scconv_deploy.calibration import LETTERBOX_PAD, load_inputs
from scconv_deploy.cli.export import main
from scconv_deploy.golden import Golden
from scconv_deploy.verify.detection import anchors, postprocess
from scconv_deploy.yolo import deployment_form

from yolo_project import NAMES, Spec, draw_images, image_batch, write_images

SMALL = 128  # most exports: the size the fixtures' statistics come from, quick to check
QUICK = ("--check-samples", "16")  # at SMALL, a quarter of the default (the 640² exports take theirs)
DETECT = [  # YOLOv8 and YOLO11 x seed and HEAD x bottleneck and own layer, pairwise
    Spec("v8", "seed", "bottleneck"),
    Spec("v8", "head", "layer"),
    Spec("11", "head", "bottleneck"),
    Spec("11", "seed", "layer"),
]


def _stem(spec: Spec) -> str:
    return spec.stem


@dataclass(frozen=True)
class Exported:
    code: int
    out: str  # what the command printed
    onnx: Path
    report: dict


def _weights(project, spec: Spec) -> str:
    """best.pt as the project folder names it (runs/<name>/weights/best.pt)."""
    return str(project.trained(spec).best.relative_to(project.root))


@contextlib.contextmanager
def _in_the_project(project):
    """In the project folder, whose ``user_blocks`` is importable from nowhere else (as in a new process)."""
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(project.root)
        mp.delitem(sys.modules, "user_blocks", raising=False)
        mp.setattr(sys, "path", [p for p in sys.path if p != str(project.root)])
        yield


_EXPORTS: dict[tuple, Exported] = {}


def export(project, spec: Spec, size: int = SMALL, *options: str) -> Exported:
    """``scconv-export best.pt --onnx --trust --input-shape 1,3,S,S OPTIONS`` from the project folder
    (in this process), once per arguments."""
    key = (spec, size, options)
    if key not in _EXPORTS:
        project.trained(spec)  # built outside the project's import isolation
        tag = "".join(o for o in options if o in ("fp16", "int8"))
        onnx_path = project.root / "exports" / f"{spec.stem}-{size}{tag}.onnx"
        onnx_path.parent.mkdir(exist_ok=True)
        args = [_weights(project, spec), "--onnx", "--trust", "--input-shape", f"1,3,{size},{size}"]
        out = io.StringIO()
        with _in_the_project(project), contextlib.redirect_stdout(out):
            code = main([*args, *options, "-o", str(onnx_path)])
        report = json.loads(onnx_path.with_suffix(".report.json").read_text()) if code in (0, 1) else {}
        _EXPORTS[key] = Exported(code, out.getvalue(), onnx_path, report)
    return _EXPORTS[key]


@pytest.fixture(scope="module")
def images(tmp_path_factory) -> Path:
    """The user's validation images: 48 drawn images of mixed sizes, PNG and JPEG."""
    return write_images(tmp_path_factory.mktemp("val_images"), 48)


# ---- best.pt to a verified ONNX -----------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("spec", DETECT, ids=_stem)
def test_best_pt_exports_verified_from_the_project_folder(yolo_project, spec):
    result = export(yolo_project, spec, SMALL, *QUICK)
    assert result.code == 0, result.out
    assert "OK: verified against PyTorch" in result.out
    report = result.report
    assert report["verified"] and report["check"]["verification"]["compared"] == report["check"]["samples"]
    assert report["scconv"]["count"] == sum(
        type(m).__name__.endswith("ScConv") for m in yolo_project.trained(spec).model.modules()
    )
    model = onnx.load(str(result.onnx))
    (output,) = model.graph.output  # the Detect head's tensor, not its (tensor, dict)
    dims = [d.dim_param or d.dim_value for d in output.type.tensor_type.shape.dim]
    assert dims == [1, 4 + len(NAMES), anchors(SMALL, SMALL)]  # static, as Ultralytics' exporter's default
    assert report["input"] == {"name": "input", "shape": [1, 3, SMALL, SMALL], "dynamic": "none"}
    meta = {p.key: p.value for p in model.metadata_props}
    assert (meta["task"], meta["stride"], meta["imgsz"]) == ("detect", "32", f"[{SMALL}, {SMALL}]")
    assert meta["names"] == repr(NAMES)


@pytest.mark.slow
def test_at_640_the_console_script_exports_and_verifies_from_the_project_folder(yolo_project):
    """The issue's command in a fresh process: only the current folder makes ``user_blocks`` importable."""
    spec = DETECT[0]
    script = Path(sys.executable).with_name("scconv-export")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    args = [_weights(yolo_project, spec), "--onnx", "--trust", "--input-shape", "1,3,640,640"]
    target = ["-o", "exports/best640.onnx"]
    (yolo_project.root / "exports").mkdir(exist_ok=True)
    run = subprocess.run(
        [str(script), *args, *target], cwd=yolo_project.root, env=env, capture_output=True, text=True
    )
    assert run.returncode == 0, run.stdout + run.stderr
    report = json.loads((yolo_project.root / "exports" / "best640.report.json").read_text())
    assert report["verified"] and report["check"]["samples"] == 8  # the default at 640²
    stages = report["stages"]
    assert {"load", "convert", "export (dynamo)", "golden data", "check", "lint"} <= set(stages)
    assert "stages: load " in run.stdout and f"(total {report['seconds']:.1f} s)" in run.stdout


@pytest.mark.slow
def test_at_640_yolo11_exports_and_verifies(yolo_project):
    result = export(yolo_project, DETECT[2], 640)
    assert result.code == 0, result.out
    assert result.report["verified"] and result.report["input"]["shape"] == [1, 3, 640, 640]


# ---- what Ultralytics does with it --------------------------------------------------------------


@pytest.mark.slow
def test_yolo_predicts_from_the_onnx_with_the_checkpoints_class_names(yolo_project):
    from ultralytics import YOLO

    result = export(yolo_project, DETECT[1], SMALL, *QUICK)
    yolo = YOLO(str(result.onnx))
    assert yolo.task == "detect"
    pictures = [image[..., ::-1] for image in draw_images(3, seed=5)]  # Ultralytics takes BGR arrays
    same_size = [image[..., ::-1] for image in draw_images(2, seed=6, size=(96, 160))]
    predictions = [
        *yolo.predict(pictures, imgsz=SMALL, conf=0.01, verbose=False),
        *yolo.predict(pictures[0], imgsz=SMALL, conf=0.01, verbose=False),  # one image: letterboxed
        *yolo.predict(same_size, imgsz=SMALL, conf=0.01, verbose=False),  # to the input, not to 96 x 128
    ]
    backend = yolo.predictor.model
    assert backend.names == NAMES and backend.stride == 32 and backend.imgsz == [SMALL, SMALL]
    assert [p.names for p in predictions] == [NAMES] * 6
    assert all(len(p.boxes) > 0 for p in predictions)
    assert {NAMES[int(c)] for p in predictions for c in p.boxes.cls} <= set(NAMES.values())


def test_a_dynamic_batch_alone_is_exported_with_a_warning_for_ultralytics_predictor(yolo_project, caplog):
    result = export(yolo_project, DETECT[0], SMALL, *QUICK, "--dynamic", "batch")
    assert result.code == 0 and result.report["input"]["dynamic"] == "batch"
    assert "for YOLO('model.onnx') export with --dynamic none" in caplog.text


def test_our_post_processing_is_ultralytics(yolo_project):
    """The detection measure post-processes raw outputs as Ultralytics' predictor does."""
    from torchvision_cpu import ensure_importable

    ensure_importable()
    from ultralytics.utils.nms import non_max_suppression

    model = deployment_form(yolo_project.trained(DETECT[0]).model)
    with torch.no_grad():
        raw = model(image_batch(4, seed=3, size=SMALL))
    theirs = non_max_suppression(raw, conf_thres=0.25, iou_thres=0.7, max_det=300)
    ours = postprocess(raw.numpy(), conf=0.25, nms_iou=0.7, max_det=300)
    assert sum(len(d) for d in ours) > 0
    for mine, their in zip(ours, theirs, strict=True):
        their = their.numpy()
        order = np.lexsort((mine.boxes[:, 0], -mine.scores))
        their_order = np.lexsort((their[:, 0], -their[:, 4]))
        np.testing.assert_allclose(mine.boxes[order], their[their_order, :4], rtol=1e-5, atol=1e-3)
        np.testing.assert_allclose(mine.scores[order], their[their_order, 4], rtol=1e-6)
        assert mine.classes[order].tolist() == their[their_order, 5].astype(int).tolist()


# ---- reduced precision, calibrated on a folder of images ----------------------------------------


def test_images_are_letterboxed_as_ultralytics_feeds_them(images):
    import cv2
    from ultralytics.data.augment import LetterBox

    files = sorted(images.iterdir())[:6]
    ours, _ = load_inputs(images, (1, 3, SMALL, SMALL), [0.0] * 3, [1.0] * 3, limit=6, resize="letterbox")
    letterbox = LetterBox((SMALL, SMALL), auto=False)
    for mine, path in zip(ours, files, strict=True):
        bgr = cv2.imread(str(path))
        theirs = letterbox(image=bgr)[..., ::-1].transpose(2, 0, 1) / 255.0  # RGB, [0, 1]: the predictor's
        assert np.abs(mine - theirs).max() <= 1.5 / 255  # OpenCV's and PyTorch's bilinear round apart
        border = np.isclose(theirs, LETTERBOX_PAD / 255).all(axis=0)
        assert np.allclose(mine[:, border], LETTERBOX_PAD / 255)
    h, w = cv2.imread(str(files[0])).shape[:2]
    assert h != w  # the drawn images are not square: a border exists


@pytest.mark.slow
def test_fp16_export_passes_and_reports_its_detections_beside_the_gate_flips(yolo_project, images):
    data = ("--calib-data", str(images), "--check-samples", "16")
    result = export(yolo_project, DETECT[1], SMALL, "--precision", "fp16", *data)
    assert result.code == 0, result.out
    checked = Golden.load(result.onnx.with_suffix(".golden.npz")).inputs  # as Ultralytics feeds them
    fed, _ = load_inputs(images, (1, 3, SMALL, SMALL), [0.0] * 3, [1.0] * 3, limit=16, resize="letterbox")
    np.testing.assert_array_equal(checked, fed)
    detection = result.report["precision"]["detection"]
    assert detection["golden"] > 0 and detection["recall"] >= 0.9 and detection["precision"] >= 0.9
    assert result.report["precision"]["emulation_detection"]["golden"] == detection["golden"]
    assert "as deployed, detections (confidence > 0.25" in result.out


@pytest.mark.slow
def test_int8_export_calibrates_on_held_out_letterboxed_images_and_passes(yolo_project, images):
    data = ("--calib-data", str(images), "--check-samples", "16")
    result = export(yolo_project, DETECT[1], SMALL, "--precision", "int8", *data)
    assert result.code == 0, result.out
    report = result.report
    assert report["calibration"]["data"] == f"32 inputs from {images}, after the 16 check inputs"
    assert report["check"]["data"] == f"16 inputs from {images} (held out)"
    assert report["precision"]["detection"]["golden"] > 0
    assert "as deployed, detections (confidence > 0.25" in result.out
    assert "4 output layer(s) kept FP32" in result.out  # three levels' class logits and the DFL


def _float_weights(onnx_path: Path, nodes: list[str]) -> set[str]:
    """The weights of ``nodes`` in an INT8 artefact, asserting that each reads FP32 (no DequantizeLinear)."""
    model = onnx.load(str(onnx_path))
    dequantized = {o for n in model.graph.node if n.op_type == "DequantizeLinear" for o in n.output}
    found = [n for n in model.graph.node if n.name in nodes]
    assert len(found) == len(nodes) and not any(i in dequantized for n in found for i in n.input)
    return {n.input[1] for n in found}


@pytest.mark.slow
def test_int8_keeps_a_detectors_output_layers_fp32_unless_told(yolo_project, images):
    """The layers nearest the outputs — the class-logit convolutions of each level and the DFL box
    convolution, read through a sigmoid and a softmax — stay FP32 by default, which halves the INT8
    output error of this fixture; ``--int8-outputs int8`` quantizes them too."""
    data = ("--calib-data", str(images), "--check-samples", "16", "--precision", "int8")
    kept = export(yolo_project, DETECT[0], SMALL, *data)
    full = export(yolo_project, DETECT[0], SMALL, *data, "--int8-outputs", "int8")
    assert kept.code == 0 and full.code in (0, 1), full.out
    names = _float_weights(kept.onnx, kept.report["calibration"]["float_layers"])
    head = "model.model.22"
    assert names == {f"{head}.cv3.{i}.2.weight" for i in range(3)} | {f"{head}.dfl.conv.weight"}
    assert full.report["calibration"]["float_layers"] == []

    def error(result) -> float:
        return result.report["precision"]["artefact"]["forced"]["outputs"][0]["mean_abs"]

    assert error(kept) < 0.75 * error(full)
