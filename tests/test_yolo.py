"""Ultralytics YOLO networks with SCConv: checkpoints, deployment form, ONNX metadata, conversion.

Everything runs on networks built from Ultralytics' yaml files, with SCConv pasted in by a user
(``yolo_project``), and is checked against the real ``ultralytics`` package: its checkpoint
writer, its exporter's export mode, its ``YOLO("model.onnx")`` predictor, its ``fuse``/``export``.
"""

from __future__ import annotations

import copy
import sys

import numpy as np
import onnx
import pytest
import torch
from torch import nn

from scconv_deploy import CheckpointError, ExportError, deploy_summary, to_deploy
from scconv_deploy.checkpoint import load_checkpoint
from scconv_deploy.yolo import (
    deployment_form,
    describe,
    describe_checkpoint,
    head_of,
    is_training_checkpoint,
    is_yolo_model,
    network_of,
    onnx_metadata,
)

from user_net import UserClassifier
from yolo_project import BN_IMGSZ, NAMES, Spec

DETECT = [  # YOLOv8 and YOLO11 x seed and HEAD x bottleneck and own layer, pairwise
    Spec("v8", "seed", "bottleneck"),
    Spec("v8", "head", "layer"),
    Spec("11", "head", "bottleneck"),
    Spec("11", "seed", "layer"),
]
OTHER_HEADS = [Spec(task=task) for task in ("segment", "pose", "obb", "classify")]


def _stem(spec: Spec) -> str:
    return spec.stem


def _unpickle(path):
    """A checkpoint as Ultralytics' own loader reads it (the user's project is importable here)."""
    return torch.load(path, map_location="cpu", weights_only=False)


def _anchors(h: int, w: int) -> int:
    return sum((h // s) * (w // s) for s in (8, 16, 32))


def _exporter_model(weights, dynamic: bool) -> nn.Module:
    """The network as Ultralytics' ONNX exporter prepares it (loaded by YOLO(), stopped before writing)."""
    from ultralytics import YOLO
    from ultralytics.engine.exporter import Exporter

    exporter = Exporter(overrides={"format": "onnx", "dynamic": dynamic, "imgsz": BN_IMGSZ, "verbose": False})
    exporter.export_onnx = lambda: None
    exporter(model=YOLO(str(weights)).model)
    return exporter.model


# ---- (a) recognition -------------------------------------------------------------------------


def test_training_checkpoints_are_recognised_and_described(yolo_project):
    trained = yolo_project.trained(Spec())
    best, last = _unpickle(trained.best), _unpickle(trained.last)
    assert is_training_checkpoint(best) and is_training_checkpoint(last)
    assert network_of(best) is best["model"] and network_of(last) is last["ema"]
    for ckpt in (best, last):
        info = describe_checkpoint(ckpt)
        assert (info.task, info.names, info.stride, info.imgsz) == ("detect", NAMES, 32, (BN_IMGSZ, BN_IMGSZ))
        assert (info.channels, info.head, info.kpt_shape, info.end2end) == (3, "Detect", None, False)
        assert info.input_shape == (1, 3, BN_IMGSZ, BN_IMGSZ)


@pytest.mark.parametrize("spec", OTHER_HEADS, ids=_stem)
def test_every_head_is_recognised_by_its_structure(yolo_project, spec):
    info = describe(yolo_project.trained(spec).model)
    assert info.task == spec.task and info.names == spec.names
    assert info.kpt_shape == ((17, 3) if spec.task == "pose" else None)


def test_other_networks_are_not_taken_for_ultralytics_ones():
    assert not is_yolo_model(UserClassifier()) and not is_training_checkpoint({"model": UserClassifier()})
    with pytest.raises(ExportError, match="not an Ultralytics model"):
        head_of(UserClassifier())
    with pytest.raises(CheckpointError, match="not an Ultralytics training checkpoint"):
        network_of({"model": UserClassifier(), "epoch": 3})


# ---- loading best.pt / last.pt ------------------------------------------------------------------


@pytest.mark.parametrize("which", ["best", "last"])
def test_best_and_last_load_with_trust_and_record_what_they_are(yolo_project, which):
    trained = yolo_project.trained(Spec())
    ckpt = load_checkpoint(getattr(trained, which), trust=True)
    assert ckpt.layout == {"best": "model/pickle", "last": "ema/pickle"}[which]
    assert {p.dtype for p in ckpt.model.parameters()} == {torch.float32} and not ckpt.model.training
    assert ckpt.meta["input_shape"] == [1, 3, BN_IMGSZ, BN_IMGSZ]
    assert ckpt.meta["class_names"] == ["cat", "dog", "traffic light"]
    assert ckpt.meta["ultralytics"]["task"] == "detect" and ckpt.meta["ultralytics"]["stride"] == 32
    # pre-processing as Ultralytics feeds it: letterboxed RGB in [0, 1]
    assert (ckpt.meta["resize"], ckpt.meta["mean"], ckpt.meta["std"]) == ("letterbox", [0.0] * 3, [1.0] * 3)


def test_without_trust_the_refusal_names_the_class_the_checkpoint_needs(yolo_project):
    trained = yolo_project.trained(Spec())
    for path in (trained.best, trained.last):  # numpy extras are allowed: the network is what is refused
        with pytest.raises(
            CheckpointError, match=r"first it needs is ultralytics\.nn\.tasks\.DetectionModel"
        ):
            load_checkpoint(path)


def test_the_users_code_is_imported_from_the_project_folder(yolo_project, monkeypatch):
    trained = yolo_project.trained(Spec())
    monkeypatch.delitem(sys.modules, "user_blocks")
    monkeypatch.setattr(sys, "path", [p for p in sys.path if p != str(yolo_project.root)])
    with pytest.raises(CheckpointError, match=r"No module named 'user_blocks'.*--import-path"):
        load_checkpoint(trained.best, trust=True)
    ckpt = load_checkpoint(trained.best, trust=True, import_paths=[yolo_project.root])
    assert is_yolo_model(ckpt.model) and "user_blocks" in sys.modules


def test_ultralytics_state_dict_loads_with_its_factory(yolo_project, tmp_path):
    """Its keys start with 'model.', which is the network's own prefix, not a wrapper's."""
    spec = Spec("v8", "head", "layer")
    trained = yolo_project.trained(spec)
    path = tmp_path / "weights.pt"
    torch.save({"model": _unpickle(trained.best)["model"].state_dict()}, path)  # FP16, as saved
    kwargs = {
        "yaml_path": str(yolo_project.yaml(spec)),
        **{k: getattr(spec, k) for k in ("variant", "placement", "task")},
    }
    ckpt = load_checkpoint(path, arch="yolo_project:build_network", arch_kwargs=kwargs)
    for key, value in trained.model.state_dict().items():
        if value.is_floating_point():
            torch.testing.assert_close(ckpt.model.state_dict()[key], value.half().float(), rtol=0, atol=0)


# ---- (b) the deployment form --------------------------------------------------------------------


@pytest.mark.parametrize("spec", [DETECT[0], DETECT[3], *OTHER_HEADS], ids=_stem)
def test_deployment_form_computes_what_ultralytics_exporter_traces(yolo_project, spec):
    trained = yolo_project.trained(spec)
    ours = deployment_form(load_checkpoint(trained.best, trust=True).model)
    theirs = _exporter_model(trained.best, dynamic=True)
    for shape in [(1, 3, 64, 64), (3, 3, 96, 64), (2, 3, 64, 128)]:
        x = torch.rand(shape, generator=torch.Generator().manual_seed(sum(shape)))
        with torch.no_grad():
            got, want = ours(x), theirs(x)
        got, want = (got, want) if isinstance(got, tuple) else ((got,), (want,))
        assert len(got) == len(want)
        for a, b in zip(got, want, strict=True):
            torch.testing.assert_close(a, b, rtol=0, atol=0)
    if spec.task != "classify":
        assert got[0].shape[0] == 2 and got[0].shape[2] == _anchors(64, 128)


@pytest.mark.parametrize("spec", DETECT[:2], ids=_stem)
def test_detection_output_is_boxes_and_class_scores_per_anchor_at_any_batch_and_size(yolo_project, spec):
    deployed = deployment_form(yolo_project.trained(spec).model)
    for n, h, w in [(2, 64, 64), (1, 96, 128), (3, 32, 64)]:
        with torch.no_grad():
            y = deployed(torch.rand(n, 3, h, w))
        assert isinstance(y, torch.Tensor) and y.shape == (n, 4 + len(NAMES), _anchors(h, w))
        assert float(y[:, 4:].min()) >= 0 and float(y[:, 4:].max()) <= 1  # class probabilities


def test_deployment_form_leaves_the_network_untouched(yolo_project):
    model = yolo_project.trained(Spec()).model
    before = copy.deepcopy(model.state_dict())
    deployment_form(model)
    assert not head_of(model).export and all(torch.equal(v, before[k]) for k, v in model.state_dict().items())
    with torch.no_grad():
        assert isinstance(model(torch.rand(1, 3, 64, 64)), tuple)  # still (predictions, raw outputs)


def _export_after_a_run_at_batch_2(model: nn.Module, dynamic: bool) -> torch.export.ExportedProgram:
    """torch.export with a dynamic batch, after an eager run at batch 2 (as the export pipeline does)."""
    from torch.export import Dim

    deployed = to_deploy(deployment_form(model, dynamic=dynamic))
    x = torch.rand(2, 3, 64, 64)
    with torch.no_grad():
        deployed(x)
    return torch.export.export(deployed, (x,), dynamic_shapes=({0: Dim("batch")},), strict=False)


@pytest.mark.slow
def test_torch_export_keeps_the_batch_of_the_deployment_form_symbolic(yolo_project):
    program = _export_after_a_run_at_batch_2(yolo_project.trained(DETECT[1]).model, dynamic=True)
    inputs = program.graph_signature.user_inputs
    images = next(n for n in program.graph.nodes if n.op == "placeholder" and n.name in inputs)
    assert isinstance(images.meta["val"].shape[0], torch.SymInt)


@pytest.mark.slow
def test_a_head_without_dynamic_pins_the_batch_it_last_ran_at(yolo_project):
    """Why ``dynamic=True``: such a head compares its cached input shape, batch included, on each call.

    (torch.onnx.export then re-exports with the batch fixed to 2, silently.)
    """
    with pytest.raises(torch._dynamo.exc.UserError, match="specialized it to be a constant"):
        _export_after_a_run_at_batch_2(yolo_project.trained(DETECT[1]).model, dynamic=False)


# ---- (c) ONNX metadata for Ultralytics' AutoBackend ----------------------------------------------


def _onnx_with_metadata(model: nn.Module, path, shape, dynamic: str, info) -> None:
    deployed = to_deploy(deployment_form(model, dynamic=dynamic != "none"))
    axes = {"none": {}, "batch": {0: "batch"}, "batch+hw": {0: "batch", 2: "height", 3: "width"}}[dynamic]
    torch.onnx.export(
        deployed,
        (torch.rand(shape),),
        str(path),
        dynamo=False,
        input_names=["images"],
        output_names=["output0"],
        dynamic_axes={"images": axes, "output0": {0: "batch", 2: "anchors"}} if axes else None,
        opset_version=17,
    )
    proto = onnx.load(str(path))
    for key, value in onnx_metadata(info, input_shape=shape, dynamic=dynamic).items():
        prop = proto.metadata_props.add()
        prop.key, prop.value = key, value
    onnx.save(proto, str(path))


@pytest.mark.slow
@pytest.mark.parametrize("dynamic", ["none", "batch+hw"])
def test_yolo_predicts_from_our_onnx_with_the_checkpoints_names_task_and_size(
    yolo_project, tmp_path, dynamic
):
    from ultralytics import YOLO

    ckpt = load_checkpoint(yolo_project.trained(Spec()).best, trust=True)
    info = describe(ckpt.model)
    path = tmp_path / "model.onnx"
    _onnx_with_metadata(ckpt.model, path, (1, 3, 64, 64), dynamic, info)
    yolo = YOLO(str(path))
    assert yolo.task == "detect"
    images = [
        np.random.default_rng(i).integers(0, 256, (64 + 32 * i, 64, 3), dtype=np.uint8) for i in range(2)
    ]
    results = yolo.predict(images, imgsz=64, conf=0.001, verbose=False)
    backend = yolo.predictor.model
    assert backend.names == NAMES and backend.stride == 32 and backend.task == "detect"
    assert backend.imgsz == [64, 64] and backend.dynamic == (dynamic == "batch+hw")
    assert [r.names for r in results] == [NAMES, NAMES]
    assert all(set(r.boxes.cls.int().tolist()) <= set(NAMES) for r in results)
    assert sum(len(r.boxes) for r in results) > 0


def test_metadata_values_are_the_python_literals_autobackend_reads():
    import ast

    from scconv_deploy.yolo import YoloInfo

    info = YoloInfo("pose", {0: "person's head"}, 32, (640, 640), 3, "Pose", kpt_shape=(17, 3))
    for dynamic, batch, whole_batches in [("none", 4, False), ("batch", 1, False), ("batch+hw", 1, True)]:
        meta = onnx_metadata(info, input_shape=(4, 3, 320, 256), dynamic=dynamic)
        assert all(isinstance(v, str) for v in meta.values())
        assert int(meta["batch"]) == batch and int(meta["stride"]) == 32 and int(meta["channels"]) == 3
        assert ast.literal_eval(meta["names"]) == {0: "person's head"}
        assert ast.literal_eval(meta["imgsz"]) == [320, 256] and ast.literal_eval(meta["kpt_shape"]) == [
            17,
            3,
        ]
        assert ast.literal_eval(meta["end2end"]) is False and meta["task"] == "pose"
        assert ast.literal_eval(meta["args"])["dynamic"] is whole_batches
    with pytest.raises(ExportError, match="dynamic='hw' is unknown"):
        onnx_metadata(info, input_shape=(1, 3, 64, 64), dynamic="hw")


# ---- to_deploy on Ultralytics networks ----------------------------------------------------------


@pytest.mark.parametrize("spec", DETECT, ids=_stem)
def test_the_fp16_network_in_best_pt_converts_and_stays_fp16(yolo_project, spec):
    held = _unpickle(yolo_project.trained(spec).best)["model"]  # FP16, as Ultralytics saves it
    deployed = to_deploy(held)
    assert deploy_summary(deployed).count == sum(type(m).__name__.endswith("ScConv") for m in held.modules())
    assert {p.dtype for p in deployed.parameters()} == {torch.float16}
    x = torch.rand(2, 3, 64, 64).half()
    with torch.no_grad():
        got, want = deployed(x)[0].float(), held(x)[0].float()
    assert (got - want).abs().max() <= 0.02 * want.abs().max()


@pytest.mark.parametrize("spec", [DETECT[1], DETECT[3]], ids=_stem)
def test_an_scconv_layer_keeps_its_routing_attributes(yolo_project, spec):
    model = yolo_project.trained(spec).model
    layer = next(m for m in model.model if type(m).__name__.endswith("ScConv"))
    deployed = to_deploy(model).model[layer.i]
    assert deploy_summary(deployed).count == 1
    assert (deployed.i, deployed.f, deployed.type, deployed.np) == (layer.i, layer.f, layer.type, layer.np)


@pytest.mark.slow
def test_ultralytics_fuse_and_export_work_on_a_converted_network(yolo_project, tmp_path):
    import onnxruntime as ort
    from ultralytics import YOLO

    trained = yolo_project.trained(Spec("11", "seed", "layer"))
    yolo = YOLO(str(trained.best))
    yolo.model = to_deploy(yolo.model)
    yolo.model.pt_path = str(tmp_path / "converted.pt")  # where the exporter writes
    yolo.fuse()
    exported = yolo.export(format="onnx", imgsz=64, dynamic=True, simplify=False)
    session = ort.InferenceSession(exported, providers=["CPUExecutionProvider"])
    meta = session.get_modelmeta().custom_metadata_map
    assert meta["task"] == "detect" and "traffic light" in meta["names"]
    x = torch.rand(2, 3, 64, 96)
    with torch.no_grad():
        want = deployment_form(to_deploy(trained.model))(x)
    got = session.run(None, {session.get_inputs()[0].name: x.numpy()})[0]
    np.testing.assert_allclose(got, want.numpy(), rtol=1e-3, atol=1e-3)
