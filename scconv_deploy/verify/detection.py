"""Detection-level agreement of a detector artefact with PyTorch: the same boxes, classes and scores?

Element-wise tolerances say how far an artefact's raw output moved; a detector's user sees its
detections. This module post-processes a detector's raw output — ``(N, 4 + classes, anchors)``:
box centre x, centre y, width and height in input pixels, then one score per class, as
Ultralytics' detection heads export it — the way Ultralytics' predictor does: the best class of
each anchor, a confidence threshold (``conf``, strictly above), boxes to corners, greedy
non-maximum suppression per class (``nms_iou``), at most ``max_det`` detections per image. It does
so for the golden outputs and for an artefact's, and matches the two: a golden detection is
*found* when an artefact detection of the same class overlaps it with IoU ≥ ``match_iou``
(greedy, by falling golden score; each artefact detection is used once), and an artefact
detection is *confirmed* when PyTorch has such a detection.

Scores next to the confidence threshold are a detector's ties: PyTorch's 0.251 and an FP16
engine's 0.249 are the same box on either side of the threshold. So a golden detection is looked
for among the artefact's boxes scored above ``conf - margin``, and an artefact detection among
PyTorch's above ``conf - margin`` (``margin`` = 0: the strict reading). Lower-scored boxes never
suppress higher-scored ones in greedy NMS, so looking further down adds boxes without changing
those above ``conf``. Swaps inside NMS (two same-class boxes overlapping by more than
``nms_iou`` whose order flips) are matched as long as ``match_iou`` ≤ ``nms_iou``.

Reported: recall (golden detections found), precision (artefact detections confirmed), and the
score error and IoU of the found pairs. Numpy only: it runs where the artefacts run.

The precision check reports it and holds nothing to it (README, "Ultralytics YOLO", has the
measurements): it is taken as deployed, where gate flips at ties are legitimate and rounding
moves boxes across the cut-offs — FP16 artefacts that pass every check lose 0.3-1.0 % of the
fixtures' detections — and it does not order artefacts as their arithmetic does (INT8 artefacts
with half the output error find up to 1 % fewer of PyTorch's boxes; ``benchmarks/yolo_precision.py``).
The verdict stays the decision-forced comparison of every output.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass

import numpy as np

from ..golden import Golden
from .compare import Run

DETECT_TASK = "detect"  # the task Ultralytics' AutoBackend metadata gives detectors
STRIDES = (8, 16, 32)  # the detection head's levels (P3-P5), for recognising the output by its shape
#: Ultralytics' predictor defaults: confidence threshold, NMS IoU, detections per image, boxes into NMS.
CONF, NMS_IOU, MAX_DET, MAX_NMS = 0.25, 0.7, 300, 30_000
MATCH_IOU = 0.5  # a found detection overlaps its golden twin at least this much (same class)
MARGIN = 0.05  # score distance from ``conf`` inside which a box may fall on either side of it


@dataclass(frozen=True)
class Detections:
    """One image's detections, by falling score."""

    boxes: np.ndarray  # (k, 4) x1, y1, x2, y2 in input pixels
    scores: np.ndarray  # (k,)
    classes: np.ndarray  # (k,) class index

    def __len__(self) -> int:
        return len(self.scores)

    def above(self, threshold: float) -> Detections:
        keep = self.scores > threshold
        return Detections(self.boxes[keep], self.scores[keep], self.classes[keep])


def anchors(height: int, width: int, strides: Sequence[int] = STRIDES) -> int:
    """A detection head's anchors at an input of ``height`` × ``width`` (stride-2 convolutions round up)."""
    return sum(-(-height // s) * -(-width // s) for s in strides)


def is_detection_output(
    metadata: Mapping[str, str], output_shape: Sequence[int], input_shape: Sequence[int]
) -> bool:
    """Whether an output is a detector's ``(N, 4 + classes, anchors)``: the model's metadata says its task
    is detection (Ultralytics' ``task`` key), or the shape does (anchors of the P3-P5 levels for the
    input's height and width)."""
    if len(output_shape) != 3 or output_shape[1] < 5:
        return False
    task = metadata.get("task")
    if task is not None:
        return task == DETECT_TASK
    return len(input_shape) == 4 and output_shape[2] == anchors(int(input_shape[2]), int(input_shape[3]))


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of every box in ``a`` (k, 4) with every box in ``b`` (m, 4), corners format: (k, m)."""
    a, b = a.astype(np.float64), b.astype(np.float64)
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.prod(np.clip(rb - lt, 0, None), axis=2)
    area_a = np.prod(np.clip(a[:, 2:] - a[:, :2], 0, None), axis=1)
    area_b = np.prod(np.clip(b[:, 2:] - b[:, :2], 0, None), axis=1)
    union = area_a[:, None] + area_b[None, :] - inter
    return np.where(union > 0, inter / np.where(union > 0, union, 1), 0.0)


def nms(boxes: np.ndarray, scores: np.ndarray, iou: float) -> np.ndarray:
    """Greedy non-maximum suppression: indices of the kept boxes, by falling score."""
    order = np.argsort(-scores, kind="stable")
    keep = []
    while len(order):
        best, order = order[0], order[1:]
        keep.append(best)
        if len(order):
            order = order[box_iou(boxes[best][None], boxes[order])[0] <= iou]
    return np.asarray(keep, dtype=np.int64)


def postprocess(
    prediction: np.ndarray,
    *,
    conf: float = CONF,
    nms_iou: float = NMS_IOU,
    max_det: int = MAX_DET,
) -> list[Detections]:
    """Each image's detections in a raw ``(N, 4 + classes, anchors)`` output (see the module docstring)."""
    if prediction.ndim != 3 or prediction.shape[1] < 5:
        raise ValueError(f"a detector's output is (N, 4 + classes, anchors); got {prediction.shape}")
    results = []
    for image in prediction.astype(np.float32, copy=False):
        cls_scores = image[4:]
        classes = cls_scores.argmax(axis=0)
        scores = cls_scores[classes, np.arange(cls_scores.shape[1])]
        candidates = np.flatnonzero(scores > conf)
        if len(candidates) > MAX_NMS:
            candidates = candidates[np.argsort(-scores[candidates], kind="stable")[:MAX_NMS]]
        cx, cy, w, h = image[:4, candidates].astype(np.float64)
        boxes = np.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], axis=1)
        scores, classes = scores[candidates].astype(np.float64), classes[candidates]
        # class-wise NMS in one pass: each class's boxes moved to a region of their own
        offset = classes[:, None] * (float(np.abs(boxes).max(initial=0.0)) * 2 + 1)
        keep = nms(boxes + offset, scores, nms_iou)[:max_det]
        results.append(Detections(boxes[keep], scores[keep], classes[keep]))
    return results


def _match(wanted: Detections, offered: Detections, iou: float) -> list[tuple[int, int, float]]:
    """Greedy same-class matching: (index in wanted, index in offered, IoU) for each wanted box found."""
    if not len(wanted) or not len(offered):
        return []
    ious = box_iou(wanted.boxes, offered.boxes)
    ious[wanted.classes[:, None] != offered.classes[None, :]] = -1.0
    used = np.zeros(len(offered), dtype=bool)
    pairs = []
    for i in np.argsort(-wanted.scores, kind="stable"):
        row = np.where(used, -1.0, ious[i])
        j = int(row.argmax())
        if row[j] >= iou:
            used[j] = True
            pairs.append((int(i), j, float(row[j])))
    return pairs


@dataclass(frozen=True)
class DetectionAgreement:
    """How an artefact's detections compare with PyTorch's on the same inputs (see the module docstring)."""

    samples: int
    conf: float
    margin: float
    nms_iou: float
    match_iou: float
    golden: int  # PyTorch's detections (score above conf)
    artefact: int  # the artefact's detections
    found: int  # golden detections the artefact has (its boxes above conf - margin)
    confirmed: int  # artefact detections PyTorch has (its boxes above conf - margin)
    score_error_max: float  # |score difference| over the found pairs
    score_error_mean: float
    iou_min: float  # IoU of the found pairs
    iou_mean: float

    @property
    def recall(self) -> float | None:
        return self.found / self.golden if self.golden else None

    @property
    def precision(self) -> float | None:
        return self.confirmed / self.artefact if self.artefact else None

    def to_dict(self) -> dict:
        return {**asdict(self), "recall": self.recall, "precision": self.precision}

    def line(self) -> str:
        if not self.golden and not self.artefact:
            return (
                f"detections: none above confidence {self.conf:g} on {self.samples} sample(s), in PyTorch "
                f"or the artefact (nothing to compare at this threshold)"
            )

        def share(n: int, of: int) -> str:
            return f"{n / of:.1%} ({n}/{of})" if of else "- (0)"

        return (
            f"detections (confidence > {self.conf:g}, NMS IoU {self.nms_iou:g}; same class, IoU >= "
            f"{self.match_iou:g}): recall {share(self.found, self.golden)}, precision "
            f"{share(self.confirmed, self.artefact)}; found pairs: score error max "
            f"{self.score_error_max:.3g}, mean {self.score_error_mean:.2g}, IoU min {self.iou_min:.3f}, "
            f"mean {self.iou_mean:.4f}"
        )


def detection_agreement(
    golden: np.ndarray,
    artefact: np.ndarray,
    *,
    conf: float = CONF,
    margin: float = MARGIN,
    nms_iou: float = NMS_IOU,
    match_iou: float = MATCH_IOU,
    max_det: int = MAX_DET,
) -> DetectionAgreement:
    """Compare the detections in two raw detector outputs of the same inputs (golden first)."""
    if golden.shape != artefact.shape:
        raise ValueError(f"outputs of shapes {golden.shape} and {artefact.shape} are not of the same inputs")
    low = max(conf - margin, 0.0)
    options = {"conf": low, "nms_iou": nms_iou, "max_det": max_det}
    ref_all, art_all = postprocess(golden, **options), postprocess(artefact, **options)
    n_ref = n_art = found = confirmed = 0
    score_errors: list[float] = []
    ious: list[float] = []
    for ref, art in zip(ref_all, art_all, strict=True):
        ref_hi, art_hi = ref.above(conf), art.above(conf)
        n_ref, n_art = n_ref + len(ref_hi), n_art + len(art_hi)
        pairs = _match(ref_hi, art, match_iou)
        found += len(pairs)
        confirmed += len(_match(art_hi, ref, match_iou))
        score_errors += [abs(float(ref_hi.scores[i] - art.scores[j])) for i, j, _ in pairs]
        ious += [iou for _, _, iou in pairs]
    return DetectionAgreement(
        samples=len(golden),
        conf=conf,
        margin=margin,
        nms_iou=nms_iou,
        match_iou=match_iou,
        golden=n_ref,
        artefact=n_art,
        found=found,
        confirmed=confirmed,
        score_error_max=max(score_errors, default=0.0),
        score_error_mean=float(np.mean(score_errors)) if score_errors else 0.0,
        iou_min=min(ious, default=1.0),
        iou_mean=float(np.mean(ious)) if ious else 1.0,
    )


def detector_agreement(
    golden: Golden, run: Run, metadata: Mapping[str, str], **options: float
) -> DetectionAgreement | None:
    """``detection_agreement`` of a run's first output with the golden one, where that output is a
    detector's (``is_detection_output``); ``None`` for any other network. ``options`` go to
    ``detection_agreement``."""
    if not golden.outputs or not run.outputs:
        return None
    if not is_detection_output(metadata, golden.outputs[0].shape, golden.inputs.shape):
        return None
    return detection_agreement(golden.outputs[0], run.outputs[0], **options)
