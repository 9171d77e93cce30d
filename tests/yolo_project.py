"""A user's Ultralytics project with SCConv, built the way users build it (tests only).

The project folder holds ``user_blocks.py`` — the public SCConv code as users paste it (both
variants: ``SeedScConv`` and ``HeadScConv``, copied from ``public_scconv.py``) — and its model
yaml files, written from Ultralytics' own yolov8/yolo11 yaml (scale n, 3 named classes). SCConv
goes either into the bottlenecks (each ``Bottleneck.cv2`` of C2f/C3k2/C3k, as a user who edited
``Bottleneck`` has it) or in as its own yaml layer ``[-1, 1, SeedScConv, [c]]`` after the
backbone (resolved, as Ultralytics does, in ``ultralytics.nn.tasks``' globals, where a user who
edited their copy of Ultralytics has put it). A few train-mode passes on random images give the
BatchNorm layers statistics (no weights can be downloaded here), the detection head's class scores
are spread the way a trained head's are (a few anchors per image above the predictor's 0.25), and
``best.pt``/``last.pt`` are written by Ultralytics' own trainer code (``BaseTrainer.save_model``,
``strip_optimizer``), so the pickles refer to module ``user_blocks``, exactly as a user's do.

``write_images`` draws the project's images (no images can be downloaded here either): filled
shapes on shaded backgrounds, RGB, of mixed sizes and aspect ratios, as PNG and JPEG files.
"""

from __future__ import annotations

import importlib
import math
import os
import shutil
import sys
import types
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from conftest import randomize_

HERE = Path(__file__).resolve().parent
FAMILIES = {"v8": ("v8", "yolov8"), "11": ("11", "yolo11")}  # family -> (cfg folder, yaml stem)
TASK_SUFFIX = {"detect": "", "segment": "-seg", "pose": "-pose", "obb": "-obb", "classify": "-cls"}
NAMES = {0: "cat", 1: "dog", 2: "traffic light"}
POSE_NAMES = {0: "person"}
VARIANTS = {"seed": "SeedScConv", "head": "HeadScConv"}
PLACEMENTS = ("bottleneck", "layer")
BN_IMGSZ = 64  # the image size the networks record as trained at (small: tests export at it)
#: Image size -> batch of the BatchNorm passes and the head's calibration.
STAT_SIZES = {128: 2}
#: Each BatchNorm leaves its output this many times narrower than its statistics say (see bn_passes).
BN_CONTRACTION = 1.35


@dataclass(frozen=True)
class Spec:
    family: str = "v8"
    variant: str = "seed"
    placement: str = "bottleneck"
    task: str = "detect"

    @property
    def stem(self) -> str:
        stem = FAMILIES[self.family][1]
        return f"{stem}n{TASK_SUFFIX[self.task]}-scconv-{self.variant}-{self.placement}"

    @property
    def names(self) -> dict[int, str]:
        return POSE_NAMES if self.task == "pose" else NAMES


@dataclass(frozen=True)
class Trained:
    """One trained network of the project and its checkpoints."""

    spec: Spec
    model: nn.Module  # FP32, eval mode: the network as trained
    best: Path  # strip_optimizer's file: FP16 network under 'model', 'ema' None
    last: Path  # save_model's file: FP16 network under 'ema', 'model' None, optimizer state


def ultralytics_env(config_dir: Path) -> None:
    """No network, no settings written outside the test's folder, quiet; torchvision importable."""
    os.environ.setdefault("YOLO_OFFLINE", "1")
    os.environ.setdefault("YOLO_VERBOSE", "False")
    os.environ.setdefault("YOLO_CONFIG_DIR", str(config_dir))
    pytest.importorskip("ultralytics", reason="the Ultralytics tests need the dev extra (ultralytics)")
    from torchvision_cpu import ensure_importable

    ensure_importable()


class YoloProject:
    """The user's project folder; builds each network once, on first request."""

    def __init__(self, root: Path):
        self.root = root
        shutil.copy(HERE / "public_scconv.py", root / "user_blocks.py")
        sys.path.insert(0, str(root))
        self.user_blocks = importlib.import_module("user_blocks")
        self._trained: dict[Spec, Trained] = {}

    def trained(self, spec: Spec) -> Trained:
        if spec not in self._trained:
            self._trained[spec] = self._train(spec)
        return self._trained[spec]

    def _train(self, spec: Spec) -> Trained:
        model = self._build(spec)
        seed = zlib.crc32(spec.stem.encode())
        bn_passes(model, seed=seed)
        if spec.task == "detect":
            trained_looking_head(model, seed=seed)
        best, last = save_like_trainer(model, self.root / "runs" / spec.stem / "weights", spec)
        return Trained(spec, model.eval(), best, last)

    def _build(self, spec: Spec) -> nn.Module:
        from ultralytics.utils import YAML

        cfg = base_config(spec)
        if spec.placement == "layer":
            cfg = with_layer_after_backbone(cfg, VARIANTS[spec.variant], backbone_channels(cfg))
        YAML.save(self.yaml(spec), cfg)
        return build_network(str(self.yaml(spec)), spec.variant, spec.placement, spec.task)

    def yaml(self, spec: Spec) -> Path:
        return self.root / f"{spec.stem}.yaml"


def build_network(yaml_path: str, variant: str, placement: str, task: str) -> nn.Module:
    """The network of a project yaml, with fresh weights (also an ``arch`` factory for state dicts)."""
    from ultralytics.nn import tasks

    block = getattr(importlib.import_module("user_blocks"), VARIANTS[variant])
    model_class = {
        "detect": tasks.DetectionModel,
        "segment": tasks.SegmentationModel,
        "pose": tasks.PoseModel,
        "obb": tasks.OBBModel,
        "classify": tasks.ClassificationModel,
    }[task]
    torch.manual_seed(0)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(tasks, VARIANTS[variant], block, raising=False)
        model = model_class(yaml_path, verbose=False)
    if placement == "bottleneck":
        paste_into_bottlenecks(model, block)
    for i, m in enumerate(m for m in model.modules() if isinstance(m, block)):
        randomize_(m, seed=i)  # trained-looking norm scales and biases
    return model


def base_config(spec: Spec) -> dict:
    """Ultralytics' own yaml for the family and task, with scale n and our class count."""
    import ultralytics
    from ultralytics.utils import YAML

    folder, stem = FAMILIES[spec.family]
    path = (
        Path(ultralytics.__file__).parent / "cfg" / "models" / folder / f"{stem}{TASK_SUFFIX[spec.task]}.yaml"
    )
    cfg = YAML.load(path)
    cfg = {k: v for k, v in cfg.items() if k != "yaml_file"}
    cfg["nc"] = len(spec.names)
    return cfg


def backbone_channels(cfg: dict) -> int:
    """Output channels of the backbone's last layer at scale n (Ultralytics' width scaling)."""
    _, width, max_channels = cfg["scales"]["n"]
    channels = min(cfg["backbone"][-1][3][0], max_channels) * width
    return int(math.ceil(channels / 8) * 8)


def with_layer_after_backbone(cfg: dict, class_name: str, channels: int) -> dict:
    """``cfg`` with ``[-1, 1, class_name, [channels]]`` after the backbone; later layers read its output."""
    p = len(cfg["backbone"])

    def shifted(f):
        if isinstance(f, list):
            return [shifted(x) for x in f]
        return f + 1 if f >= p - 1 else f

    head = [[shifted(f), n, m, args] for f, n, m, args in cfg["head"]]
    return {**cfg, "backbone": [*cfg["backbone"], [-1, 1, class_name, [channels]]], "head": head}


def paste_into_bottlenecks(model: nn.Module, block: type) -> None:
    """The user's edit of ``Bottleneck``: its second convolution becomes SCConv of the output width.

    Where a bottleneck narrows (C3k2's inner ``Bottleneck(c, c)`` halves the width), its first
    convolution is widened to the output width, as SCConv keeps its channel count.
    """
    for m in list(model.modules()):
        if type(m).__name__ == "Bottleneck":
            first, width = m.cv1.conv, m.cv2.conv.out_channels
            if first.out_channels != width:
                m.cv1 = type(m.cv1)(first.in_channels, width, first.kernel_size[0], 1)
            m.cv2 = block(width)


def bn_passes(model: nn.Module, seed: int, passes: int = 2) -> None:
    """A few train-mode forward passes on drawn images: BatchNorm running statistics, trained-looking.

    The statistics are the passes' own (cumulative average): with Ultralytics' momentum of 0.03,
    a few passes leave them near their initial values, every layer shrinks its input, and the
    head returns the same output for every image (nothing a check compares would then depend on
    the input). With the passes' exact statistics a random network is chaotic instead: rounding at
    its first layer moves its outputs by up to 10 % of their range at 640² (a plain YOLO11n as
    much as one with SCConv), which no FP32 artefact could match and no trained network does.
    So each BatchNorm leaves its output ``BN_CONTRACTION`` times narrower than its statistics
    say: the network still answers to its input (its detections differ per image) while FP32
    rounding stays at ~1e-5 of the outputs' range, as in a trained network.
    """
    norms = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    momenta = [m.momentum for m in norms]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None
    model.train()
    with torch.no_grad():
        for i in range(passes):
            for size, n in STAT_SIZES.items():
                model(image_batch(n, seed + i, size))
    model.eval()
    for m, momentum in zip(norms, momenta, strict=True):
        m.momentum = momentum
        m.running_var.mul_(BN_CONTRACTION**2)


#: A trained-looking head: class logits' mean and spread over anchors (sigmoid(-3 + 1.9) = 0.25: about
#: 3 % of the anchors score above the predictor's threshold in each class), and the spread of the box
#: distributions' logits (DFL: a trained head spreads a side's mass over a few neighbouring bins).
CLASS_LOGIT_MEAN, CLASS_LOGIT_STD, BOX_LOGIT_STD = -3.0, 1.0, 0.5


def trained_looking_head(model: nn.Module, seed: int) -> None:
    """Scale the detection head's last convolutions so that their logits on drawn images look trained.

    A fresh head scores every anchor near 0 (no detection would pass a threshold), and random
    box convolutions give box-distribution logits tens of units apart: a distribution that sharp
    turns its expected bin into an argmax, and the box into a discontinuous function of the input.
    Each level's last convolutions are rescaled on drawn images (letterboxed as Ultralytics
    feeds them) to the logit statistics above.
    """
    head = model.model[-1]
    batches = [image_batch(n, seed, size) for size, n in STAT_SIZES.items()]
    for branch, target_mean, target_std in (
        (head.cv2, None, BOX_LOGIT_STD),
        (head.cv3, CLASS_LOGIT_MEAN, CLASS_LOGIT_STD),
    ):
        for level in branch:
            conv = level[-1]
            logits: list[torch.Tensor] = []
            hook = conv.register_forward_hook(
                lambda m, a, out, logits=logits: logits.append(out.transpose(0, 1))
            )
            model.eval()
            with torch.no_grad():
                for x in batches:
                    model(x)
                hook.remove()
                values = torch.cat([out.reshape(out.shape[0], -1) for out in logits], 1)
                if target_mean is None:  # box distributions: one scale for the level, centres kept
                    values = values.reshape(1, -1)
                mean, std = values.mean(dim=1), values.std(dim=1)
                k = target_std / std
                centre = mean if target_mean is None else torch.full_like(mean, target_mean)
                conv.weight.mul_(k.view(-1, 1, 1, 1))
                conv.bias.copy_((conv.bias - mean) * k + centre)


def image_batch(n: int, seed: int, size: int) -> torch.Tensor:
    """``n`` drawn images of mixed sizes, letterboxed to ``size``² by Ultralytics: network input."""
    from ultralytics.data.augment import LetterBox

    letterbox = LetterBox((size, size), auto=False)
    images = np.stack([letterbox(image=image) for image in draw_images(n, seed)])
    return torch.from_numpy(images).permute(0, 3, 1, 2).contiguous().float() / 255


def draw_images(n: int, seed: int, size: tuple[int, int] | None = None) -> list[np.ndarray]:
    """``n`` RGB images (H, W, 3) uint8: filled shapes on shaded backgrounds, of ``size`` (H, W) or mixed."""
    from PIL import Image, ImageDraw

    rng = np.random.default_rng(seed)
    images = []
    for _ in range(n):
        h, w = size or (int(rng.integers(48, 160)), int(rng.integers(48, 160)))
        ramp = np.linspace(0, 1, w)[None, :, None] * rng.uniform(-80, 80, 3)
        background = np.clip(rng.uniform(40, 215, 3) + ramp + rng.normal(0, 6, (h, w, 3)), 0, 255)
        image = Image.fromarray(np.broadcast_to(background, (h, w, 3)).astype(np.uint8))
        draw = ImageDraw.Draw(image)
        for _ in range(int(rng.integers(1, 5))):
            x0, y0 = rng.uniform(0, w * 0.8), rng.uniform(0, h * 0.8)
            x1, y1 = x0 + rng.uniform(0.1, 0.5) * w, y0 + rng.uniform(0.1, 0.5) * h
            colour = tuple(int(c) for c in rng.integers(0, 256, 3))
            shape = ("rectangle", "ellipse", "polygon")[int(rng.integers(3))]
            if shape == "polygon":
                draw.polygon([(x0, y1), ((x0 + x1) / 2, y0), (x1, y1)], fill=colour)
            else:
                getattr(draw, shape)([x0, y0, x1, y1], fill=colour)
        images.append(np.asarray(image))
    return images


def write_images(folder: Path, n: int, seed: int = 0) -> Path:
    """``n`` drawn images of mixed sizes in ``folder``, PNG and JPEG (what a user's val folder holds)."""
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    for i, image in enumerate(draw_images(n, seed)):
        suffix = ".jpg" if i % 2 else ".png"
        Image.fromarray(image).save(folder / f"image_{i:03d}{suffix}", quality=95)
    return folder


def save_like_trainer(model: nn.Module, weights: Path, spec: Spec) -> tuple[Path, Path]:
    """best.pt and last.pt as Ultralytics' trainer writes them at the end of training.

    ``BaseTrainer.save_model`` runs on a stand-in holding what it reads; ``strip_optimizer``
    then turns best.pt into the final file (last.pt stays as an interrupted run leaves it).
    """
    from ultralytics.cfg import get_cfg
    from ultralytics.engine.trainer import BaseTrainer
    from ultralytics.utils.torch_utils import ModelEMA, strip_optimizer

    args = get_cfg(
        overrides={"model": f"{spec.stem}.yaml", "data": "data.yaml", "imgsz": BN_IMGSZ, "task": spec.task}
    )
    model.nc, model.names, model.args = len(spec.names), dict(spec.names), args  # set_model_attributes
    ema = ModelEMA(model)
    ema.updates = 3
    fitness = np.float64(0.25)  # the validator's fitness is a numpy scalar
    trainer = types.SimpleNamespace(
        ema=ema,
        model=model,
        epoch=0,
        best_fitness=fitness,
        fitness=fitness,
        stopper=types.SimpleNamespace(best_fitness=fitness, best_epoch=0),
        optimizer=torch.optim.SGD(model.parameters(), lr=0.01),
        scaler=torch.amp.GradScaler("cpu", enabled=False),
        args=args,
        metrics={"metrics/mAP50(B)": np.float64(0.1), "val/box_loss": np.float64(1.5)},
        read_results_csv=lambda: {"epoch": [1.0], "metrics/mAP50(B)": [0.1]},
        wdir=weights,
        last=weights / "last.pt",
        best=weights / "best.pt",
        save_period=-1,
    )
    BaseTrainer.save_model(trainer)
    strip_optimizer(trainer.best)
    return trainer.best, trainer.last
