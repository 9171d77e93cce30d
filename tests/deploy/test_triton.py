"""Triton model repositories: config.pbtxt checked with Triton's own schema, dims from the model, atomic."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path
from types import ModuleType

import onnx
import pytest

import scconv_deploy
from scconv_deploy.cli.triton import main
from scconv_deploy.errors import ExportError
from scconv_deploy.triton import model_config_schema, parse_config, write_triton_repository

ROOT = Path(__file__).resolve().parents[1]
DEMO = ROOT / "models" / "scconv_cnn_digits_seed.pt"
CLASSES = [str(d) for d in range(10)]


def _parsed(repo) -> object:
    return parse_config(repo.config_path.read_text())


def _dims(tensors) -> list[list[int]]:
    return [list(t.dims) for t in tensors]


def _leftovers(directory: Path) -> list[str]:
    return [p.name for p in directory.iterdir() if p.name.startswith(".")]


def test_repository_for_the_demo_model(onnx_path, tmp_path):
    repo = write_triton_repository(onnx_path, tmp_path / "repo", name="digits")
    assert repo.model_dir == tmp_path / "repo" / "digits" and repo.schema_checked
    assert sorted(p.relative_to(repo.model_dir).as_posix() for p in repo.model_dir.rglob("*")) == [
        "1",
        "1/model.onnx",
        "config.pbtxt",
        "labels.txt",
    ]
    assert repo.model_path.read_bytes() == onnx_path.read_bytes()
    assert (repo.model_dir / "labels.txt").read_text().split() == CLASSES
    config = _parsed(repo)
    schema = model_config_schema()
    assert (config.name, config.platform, config.max_batch_size) == ("digits", "onnxruntime_onnx", 8)
    assert [(t.name, t.data_type) for t in config.input] == [("input", schema.TYPE_FP32)]
    assert _dims(config.input) == [[1, 32, 32]] and _dims(config.output) == [[10]]  # no batch dimension
    assert config.output[0].label_filename == "labels.txt"
    assert config.HasField("dynamic_batching") and [g.count for g in config.instance_group] == [1]
    assert _leftovers(tmp_path / "repo") == []


@pytest.mark.parametrize(
    ("dynamic", "max_batch", "inputs", "outputs"),
    [
        ("none", 0, [[1, 1, 32, 32]], [[1, 10]]),  # fixed batch: Triton must not batch, dims are whole
        ("batch+hw", 8, [[1, -1, -1]], [[10]]),
    ],
)
def test_dims_follow_the_export(demo_onnx, tmp_path, dynamic, max_batch, inputs, outputs):
    repo = write_triton_repository(demo_onnx(dynamic), tmp_path, name="m")
    config = _parsed(repo)
    assert (
        config.max_batch_size == max_batch
        and _dims(config.input) == inputs
        and _dims(config.output) == outputs
    )
    assert config.HasField("dynamic_batching") == (max_batch > 0)


def test_batch_size_batching_and_instances_as_asked(onnx_path, tmp_path, demo_onnx):
    config = _parsed(write_triton_repository(onnx_path, tmp_path, "a", max_batch_size=32, instance_count=2))
    assert config.max_batch_size == 32 and [g.count for g in config.instance_group] == [2]
    config = _parsed(write_triton_repository(onnx_path, tmp_path, "b", max_batch_size=0))
    assert _dims(config.input) == [[-1, 1, 32, 32]] and not config.HasField("dynamic_batching")
    config = _parsed(write_triton_repository(onnx_path, tmp_path, "c", dynamic_batching=False))
    assert config.max_batch_size == 8 and not config.HasField("dynamic_batching")
    static = demo_onnx("none")
    with pytest.raises(ExportError, match=r"max_batch_size 4: demo-none\.onnx has a fixed batch dimension"):
        write_triton_repository(static, tmp_path, "d", max_batch_size=4)
    with pytest.raises(ExportError, match="max_batch_size -1"):
        write_triton_repository(onnx_path, tmp_path, "e", max_batch_size=-1)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a", "b", "c"]


def test_a_directory_in_the_way_is_refused_unless_overwrite(onnx_path, tmp_path):
    first = write_triton_repository(onnx_path, tmp_path, "m")
    (first.model_dir / "mine.txt").write_text("keep me")
    with pytest.raises(ExportError, match="already exists: pass overwrite=True"):
        write_triton_repository(onnx_path, tmp_path, "m", max_batch_size=4)
    assert (first.model_dir / "mine.txt").exists() and _parsed(first).max_batch_size == 8
    second = write_triton_repository(onnx_path, tmp_path, "m", max_batch_size=4, overwrite=True)
    assert _parsed(second).max_batch_size == 4 and not (second.model_dir / "mine.txt").exists()
    assert _leftovers(tmp_path) == []
    (tmp_path / "file").write_text("")
    with pytest.raises(ExportError, match="exists and is not a directory"):
        write_triton_repository(onnx_path, tmp_path, "file", overwrite=True)


def test_nothing_is_half_written_on_failure(onnx_path, tmp_path, monkeypatch):
    first = write_triton_repository(onnx_path, tmp_path, "m")

    def broken_copy(src, dst, **kwargs):
        Path(dst).write_bytes(b"half")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(shutil, "copyfile", broken_copy)
    with pytest.raises(ExportError, match="No space left on device"):
        write_triton_repository(onnx_path, tmp_path, "new")
    with pytest.raises(ExportError, match="No space left on device"):
        write_triton_repository(onnx_path, tmp_path, "m", max_batch_size=2, overwrite=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m"]  # no "new", no temp or backup folders
    assert _parsed(first).max_batch_size == 8 and first.model_path.read_bytes() == onnx_path.read_bytes()


def test_the_schema_rejects_what_triton_would(onnx_path, tmp_path):
    with pytest.raises(ExportError, match="does not parse with Triton's model-config schema"):
        parse_config('name: "m"\nmax_batch_size: 8\nbatch_size: 4\n')
    with pytest.raises(ExportError, match="does not parse"):
        parse_config('name: "m"\ninput [ { name: "x" data_type: TYPE_FLOAT32 dims: [ 1 ] } ]\n')
    with pytest.raises(ExportError, match=r"models, not '\.pt'"):
        write_triton_repository(DEMO, tmp_path)


@pytest.fixture
def engine_files(tmp_path, onnx_path, monkeypatch):
    """A plan and its sidecar (as scconv_deploy.trt writes it), with the trt layer's read_sidecar."""
    plan = tmp_path / "digits.plan"
    plan.write_bytes(b"engine bytes")
    metadata = {p.key: p.value for p in onnx.load(onnx_path).metadata_props}
    sidecar = {
        "profiles": [{"input": {"min": [1, 1, 32, 32], "opt": [8, 1, 32, 32], "max": [16, 1, 32, 32]}}],
        "inputs": {"input": {"dtype": "float32", "dims": ["batch", 1, 32, 32]}},
        "outputs": ["output"],
        "onnx": {"file": str(onnx_path), "metadata": metadata},
    }
    (tmp_path / "digits.plan.json").write_text(json.dumps(sidecar))
    layer = ModuleType("scconv_deploy.trt")
    layer.read_sidecar = lambda path: (
        json.loads(Path(f"{path}.json").read_text()) if Path(f"{path}.json").exists() else None
    )
    monkeypatch.setitem(sys.modules, "scconv_deploy.trt", layer)
    monkeypatch.setattr(scconv_deploy, "trt", layer, raising=False)
    return plan


def test_an_engine_repository_from_its_sidecar(engine_files, tmp_path):
    repo = write_triton_repository(engine_files, tmp_path / "repo")
    config = _parsed(repo)
    assert (config.name, config.platform, config.max_batch_size) == ("digits", "tensorrt_plan", 16)
    assert _dims(config.input) == [[1, 32, 32]] and len(config.output) == 0  # outputs: Triton's auto-complete
    assert [g.kind for g in config.instance_group] == [model_config_schema().ModelInstanceGroup.KIND_GPU]
    assert repo.model_path.name == "model.plan" and repo.model_path.read_bytes() == b"engine bytes"
    with pytest.raises(ExportError, match="exceeds the engine profile's largest batch 16"):
        write_triton_repository(engine_files, tmp_path / "repo", "big", max_batch_size=32)
    Path(f"{engine_files}.json").unlink()
    config = _parsed(write_triton_repository(engine_files, tmp_path / "repo", "bare"))
    assert config.max_batch_size == 0 and len(config.input) == 0  # all left to Triton's auto-complete


def test_cli_writes_and_refuses_with_one_line(onnx_path, tmp_path, capsys):
    assert main([str(onnx_path), str(tmp_path), "--name", "digits", "--max-batch-size", "4"]) == 0
    assert "digits: config.pbtxt (checked with Triton's schema), 1/model.onnx" in capsys.readouterr().out
    assert main([str(onnx_path), str(tmp_path), "--name", "digits"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("scconv-triton: error: ") and "already exists" in err and "\n" not in err
    assert (
        main([str(onnx_path), str(tmp_path), "--name", "digits", "--overwrite", "--no-dynamic-batching"]) == 0
    )
    assert "dynamic_batching" not in (tmp_path / "digits" / "config.pbtxt").read_text()
