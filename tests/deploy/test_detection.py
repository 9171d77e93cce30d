"""Detection-level agreement: a detector artefact's boxes after post-processing against PyTorch's.

Raw outputs here are built by hand, ``(N, 4 + classes, anchors)`` as Ultralytics' detection heads
export them; ``tests/test_yolo_export.py`` compares the post-processing with Ultralytics' own.
"""

from __future__ import annotations

import numpy as np
import pytest

from scconv_deploy.verify.detection import (
    anchors,
    box_iou,
    detection_agreement,
    is_detection_output,
    nms,
    postprocess,
)

CLASSES = 3


def raw(boxes: list[tuple[float, float, float, float, int, float]], n_anchors: int = 12) -> np.ndarray:
    """One image's raw output: (cx, cy, w, h, class, score) per anchor; other anchors score 0.01."""
    out = np.zeros((1, 4 + CLASSES, n_anchors), np.float32)
    out[0, :4] = 10.0
    out[0, 4:] = 0.01
    for a, (cx, cy, w, h, cls, score) in enumerate(boxes):
        out[0, :4, a] = cx, cy, w, h
        out[0, 4 + cls, a] = score
    return out


SCENE = [
    (50, 50, 20, 20, 0, 0.9),  # a cat
    (52, 51, 20, 20, 0, 0.8),  # the same cat again: NMS keeps the first
    (120, 80, 30, 10, 1, 0.6),  # a dog
    (200, 30, 16, 40, 2, 0.4),  # a traffic light
    (52, 51, 20, 20, 1, 0.3),  # a dog where the cat is: another class, kept
]


def test_postprocess_keeps_the_best_class_above_the_threshold_and_suppresses_per_class():
    (dets,) = postprocess(raw(SCENE), conf=0.25, nms_iou=0.7)
    assert dets.scores.tolist() == pytest.approx([0.9, 0.6, 0.4, 0.3])
    assert dets.classes.tolist() == [0, 1, 2, 1]
    np.testing.assert_allclose(dets.boxes[0], [40, 40, 60, 60])  # centre and size to corners
    (few,) = postprocess(raw(SCENE), conf=0.5, nms_iou=0.7)
    assert len(few) == 2


def test_nms_and_iou():
    boxes = np.array([[0, 0, 10, 10], [1, 1, 11, 11], [20, 20, 30, 30]], float)
    assert box_iou(boxes[:1], boxes).round(3).tolist() == [[1.0, 0.681, 0.0]]
    assert nms(boxes, np.array([0.5, 0.9, 0.7]), 0.5).tolist() == [1, 2]


def test_identical_outputs_agree_completely():
    agreement = detection_agreement(raw(SCENE), raw(SCENE))
    assert (agreement.golden, agreement.artefact, agreement.found, agreement.confirmed) == (4, 4, 4, 4)
    assert agreement.recall == agreement.precision == 1.0
    assert agreement.score_error_max == 0.0 and agreement.iou_min == 1.0


def test_a_lost_box_lowers_recall_and_a_new_one_precision():
    lost = [b if b[4] != 2 else (*b[:5], 0.05) for b in SCENE]  # the traffic light is gone
    agreement = detection_agreement(raw(SCENE), raw(lost))
    assert (agreement.found, agreement.golden, agreement.recall) == (3, 4, 0.75)
    assert agreement.precision == 1.0
    extra = [*SCENE, (300, 300, 20, 20, 2, 0.7)]
    agreement = detection_agreement(raw(SCENE), raw(extra))
    assert agreement.recall == 1.0 and (agreement.confirmed, agreement.artefact) == (4, 5)


def test_a_moved_box_or_another_class_is_not_the_same_detection():
    moved = [(b[0] + 15, *b[1:]) if b[4] == 1 and b[5] == 0.6 else b for b in SCENE]  # IoU 1/3
    assert detection_agreement(raw(SCENE), raw(moved)).found == 3
    relabelled = [(*b[:4], 2, b[5]) if b[5] == 0.6 else b for b in SCENE]
    assert detection_agreement(raw(SCENE), raw(relabelled)).found == 3


def test_a_score_that_crosses_the_threshold_by_less_than_the_margin_is_the_same_box():
    crossed = [(*b[:5], 0.24) if b[4] == 2 else b for b in SCENE]  # 0.4 -> 0.24, under conf 0.25
    near = [(*b[:5], 0.26) if b[4] == 2 else b for b in SCENE]
    base = detection_agreement(raw(near), raw(crossed), margin=0.05)
    assert base.recall == 1.0 and base.score_error_max == pytest.approx(0.02)
    strict = detection_agreement(raw(near), raw(crossed), margin=0.0)
    assert strict.recall == 0.75


def test_no_detections_anywhere_is_said_not_scored():
    empty = raw([])
    agreement = detection_agreement(empty, empty)
    assert agreement.recall is None and agreement.precision is None
    assert "none above confidence" in agreement.line()


def test_a_detector_is_known_by_its_metadata_or_its_output_shape():
    assert anchors(640, 640) == 8400 and anchors(100, 60) == 13 * 8 + 7 * 4 + 4 * 2
    assert is_detection_output({"task": "detect"}, (1, 7, 5), (1, 3, 64, 64))
    assert not is_detection_output({"task": "segment"}, (1, 39, 84), (1, 3, 64, 64))
    assert is_detection_output({}, (2, 84, 8400), (2, 3, 640, 640))
    assert not is_detection_output({}, (2, 84, 8000), (2, 3, 640, 640))
    assert not is_detection_output({}, (2, 10), (2, 3, 32, 32))  # a classifier
