"""Reading torch files: harmless training extras load without trust; refusals say what the file needs."""

import argparse
import os
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from scconv_deploy import CheckpointError
from scconv_deploy.checkpoint import load_checkpoint
from scconv_deploy.torch_file import importable, read_torch_file

from public_scconv import SeedScConv

ARCH, KWARGS = "public_scconv:SeedScConv", {"op_channel": 16, "group_num": 4}


def _read(path, trust=False, **kw):
    return read_torch_file(path, trust=trust, map_location="cpu", **kw)


def test_training_extras_load_without_trust(tmp_path):
    net = SeedScConv(**KWARGS)
    path = tmp_path / "train.pt"
    torch.save(
        {
            "state_dict": net.state_dict(),
            "args": argparse.Namespace(lr=0.1, out=Path("runs/exp1"), sizes=[224, 256]),
            "best_acc": np.float64(0.93),
            "epoch": np.int64(7),
            "history": np.array([0.5, 0.7], dtype=np.float32),
            "settings": {"amp": True, "seed": 0},
        },
        path,
    )
    obj, pickled = _read(path)
    assert not pickled
    assert obj["args"] == argparse.Namespace(lr=0.1, out=Path("runs/exp1"), sizes=[224, 256])
    assert obj["best_acc"] == np.float64(0.93) and obj["epoch"] == 7
    assert obj["history"].tolist() == [0.5, 0.699999988079071]
    ckpt = load_checkpoint(path, arch=ARCH, arch_kwargs=KWARGS)
    assert ckpt.layout == "state_dict/state_dict"


@pytest.mark.parametrize(
    ("extra", "named"),
    [
        (nn.Conv2d(1, 1, 1), "torch.nn.modules.conv.Conv2d"),
        (os.system, f"{os.system.__module__}.system"),
        (np.array([1, "a"], dtype=object), "ObjectDType"),
    ],
    ids=["a-module", "a-function", "an-object-array"],
)
def test_a_file_holding_python_objects_is_refused_naming_what_it_needs(tmp_path, extra, named):
    path = tmp_path / "objects.pt"
    torch.save({"state_dict": SeedScConv(**KWARGS).state_dict(), "extra": extra}, path)
    with pytest.raises(CheckpointError) as info:
        _read(path)
    message = str(info.value)
    assert message.startswith(f"{path} holds pickled Python objects") and named in message
    assert "trust=True" in message and "corrupt" not in message and "\n" not in message


@pytest.fixture
def project(tmp_path, monkeypatch):
    """A pickle of a class from a user's folder that is not on the import path."""
    folder = tmp_path / "myproject"
    folder.mkdir()
    (folder / "my_layers.py").write_text("import torch\n\n\nclass Scale(torch.nn.Linear):\n    pass\n")
    monkeypatch.syspath_prepend(str(folder))
    import my_layers

    path = tmp_path / "net.pt"
    torch.save(my_layers.Scale(2, 2), path)
    monkeypatch.delitem(sys.modules, "my_layers")
    monkeypatch.setattr(sys, "path", [p for p in sys.path if p != str(folder)])
    return folder, path


def test_classes_of_a_trusted_pickle_are_imported_from_the_given_folders(project):
    folder, path = project
    with pytest.raises(CheckpointError, match=r"No module named 'my_layers'.*--import-path DIR"):
        _read(path, trust=True)
    path_before = list(sys.path)
    obj, pickled = _read(path, trust=True, import_paths=[folder])
    assert pickled and type(obj).__name__ == "Scale"
    assert sys.path == path_before  # the folder was importable only while unpickling
    assert load_checkpoint(path, trust=True, import_paths=[folder]).layout == "pickle"


def test_an_import_path_that_is_not_a_folder_is_refused(tmp_path):
    with pytest.raises(CheckpointError, match="is not a folder"), importable([tmp_path / "missing"]):
        pass
