"""model.pt: our format round-trips; common layouts load; pickles need trust; bad files fail clearly."""

import pickle
import sys
from collections import OrderedDict

import pytest
import torch
from torch import nn

from scconv_deploy import CheckpointError
from scconv_deploy.checkpoint import FORMAT, build_architecture, load_checkpoint, save_checkpoint

from public_scconv import SeedScConv

ARCH = "public_scconv:SeedScConv"  # a user's own network factory, "module:callable"
KWARGS = {"op_channel": 16, "group_num": 4}


class Pickled(nn.Module):
    """A module class importable from the tests, for whole-module pickles."""

    def __init__(self):
        super().__init__()
        self.block = SeedScConv(16, group_num=4)

    def forward(self, x):
        return self.block(x)


@pytest.fixture
def model():
    torch.manual_seed(0)
    return SeedScConv(**KWARGS).eval()


@pytest.fixture
def x():
    return torch.randn(2, 16, 6, 6, generator=torch.Generator().manual_seed(1))


def test_round_trip_gives_identical_outputs_and_keeps_metadata(tmp_path, model, x):
    path = save_checkpoint(
        model,
        tmp_path / "m.pt",
        arch=ARCH,
        arch_kwargs=KWARGS,
        input_shape=[1, 16, 6, 6],
        mean=[0.5],
        std=[0.25],
        class_names=["a", "b"],
        notes="unit test",
    )
    ckpt = load_checkpoint(path)
    with torch.no_grad():
        assert torch.equal(ckpt.model(x), model(x))
    assert (ckpt.layout, ckpt.arch, ckpt.arch_kwargs) == ("scconv-deploy", ARCH, KWARGS)
    assert ckpt.meta["input_shape"] == [1, 16, 6, 6] and ckpt.meta["class_names"] == ["a", "b"]
    assert ckpt.meta["toolkit_version"] and len(ckpt.sha256) == 64
    assert not ckpt.model.training


def test_our_format_is_a_plain_weights_only_dict(tmp_path, model):
    path = save_checkpoint(model, tmp_path / "m.pt", arch=ARCH, arch_kwargs=KWARGS)
    raw = torch.load(path, weights_only=True)
    assert raw["format"] == FORMAT and raw["format_version"] == 1
    assert raw["arch"] == {"name": ARCH, "kwargs": KWARGS}
    assert set(raw["state_dict"]) == set(model.state_dict())


def test_save_needs_an_architecture_it_can_record(tmp_path, model):
    with pytest.raises(CheckpointError, match="pass arch="):
        save_checkpoint(model, tmp_path / "m.pt")
    assert not list(tmp_path.iterdir())


def test_save_refuses_non_plain_metadata_and_leaves_nothing(tmp_path, model):
    with pytest.raises(CheckpointError, match=r"meta\.mean is a Tensor"):
        save_checkpoint(model, tmp_path / "m.pt", arch=ARCH, arch_kwargs=KWARGS, mean=torch.zeros(3))
    assert not list(tmp_path.iterdir())


def test_save_into_a_missing_directory_fails_clearly(tmp_path, model):
    with pytest.raises(CheckpointError, match="does not exist"):
        save_checkpoint(model, tmp_path / "nope" / "m.pt", arch=ARCH, arch_kwargs=KWARGS)


def test_save_failing_midway_leaves_no_partial_file(tmp_path, model, monkeypatch):
    def broken_save(obj, f):
        with open(f, "wb") as out:
            out.write(b"partial")
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", broken_save)
    with pytest.raises(OSError, match="disk full"):
        save_checkpoint(model, tmp_path / "m.pt", arch=ARCH, arch_kwargs=KWARGS)
    assert not list(tmp_path.iterdir())


@pytest.mark.parametrize(
    ("wrap", "layout"),
    [
        (lambda sd: sd, "state_dict"),
        (lambda sd: {"model": sd, "epoch": 3}, "model/state_dict"),
        (lambda sd: {"state_dict": {f"module.{k}": v for k, v in sd.items()}}, "state_dict/state_dict"),
        (lambda sd: {"ema": sd, "model": None}, "ema/state_dict"),
    ],
    ids=["bare", "model-key", "state_dict-key+module-prefix", "ema-key"],
)
def test_weights_in_common_layouts_load_with_an_architecture(tmp_path, model, x, wrap, layout):
    path = tmp_path / "w.pt"
    torch.save(wrap(OrderedDict(model.state_dict())), path)
    ckpt = load_checkpoint(path, arch=ARCH, arch_kwargs=KWARGS)
    assert ckpt.layout == layout
    with torch.no_grad():
        assert torch.equal(ckpt.model(x), model(x))


@pytest.mark.parametrize(
    ("arch", "prefix"),
    [
        ("user_net:Layered", ""),  # 'model.' is the network's own
        ("user_net:Layered", "module."),  # DataParallel around it: only 'module.' goes
        ("user_net:Layered", "_orig_mod."),  # torch.compile around it
        (ARCH, "module.model."),  # a wrapper's 'model.' inside DataParallel: both go
    ],
    ids=["own-model-prefix", "dataparallel", "compiled", "wrapped-twice"],
)
def test_prefixes_are_stripped_only_where_that_makes_the_keys_fit(tmp_path, arch, prefix):
    net = build_architecture(arch, KWARGS if arch == ARCH else None)
    path = tmp_path / "w.pt"
    torch.save({f"{prefix}{k}": v for k, v in net.state_dict().items()}, path)
    ckpt = load_checkpoint(path, arch=arch, arch_kwargs=KWARGS if arch == ARCH else None)
    for key, value in net.state_dict().items():
        assert torch.equal(ckpt.model.state_dict()[key], value), key


def test_bare_weights_without_an_architecture_ask_for_one(tmp_path, model):
    path = tmp_path / "w.pt"
    torch.save(model.state_dict(), path)
    with pytest.raises(CheckpointError, match="arch=") as info:
        load_checkpoint(path)
    assert str(path) in str(info.value)


def test_weights_that_do_not_fit_the_architecture_are_reported(tmp_path, model):
    path = tmp_path / "w.pt"
    torch.save(model.state_dict(), path)
    with pytest.raises(CheckpointError, match="do not fit"):
        load_checkpoint(path, arch=ARCH, arch_kwargs={"op_channel": 32, "group_num": 4})


@pytest.mark.parametrize("wrapper", [None, "model", "ema"])
def test_pickled_modules_are_refused_without_trust_and_load_with_it(tmp_path, x, wrapper):
    net = Pickled().eval()
    path = tmp_path / "full.pt"
    torch.save(net if wrapper is None else {wrapper: net}, path)
    with pytest.raises(CheckpointError, match="trust=True") as info:
        load_checkpoint(path)
    assert "\n" not in str(info.value) and str(path) in str(info.value)
    ckpt = load_checkpoint(path, trust=True)
    assert ckpt.layout == ("pickle" if wrapper is None else f"{wrapper}/pickle")
    with torch.no_grad():
        assert torch.equal(ckpt.model(x), net(x))


def test_trusted_pickle_of_code_that_is_not_importable_fails_clearly(tmp_path, monkeypatch):
    (tmp_path / "ephemeral_net.py").write_text("import torch\nclass Net(torch.nn.Linear):\n    pass\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    import ephemeral_net

    path = tmp_path / "full.pt"
    torch.save(ephemeral_net.Net(2, 2), path)
    monkeypatch.delitem(sys.modules, "ephemeral_net")
    (tmp_path / "ephemeral_net.py").unlink()
    with pytest.raises(CheckpointError, match="not importable here"):
        load_checkpoint(path, trust=True)


def _truncated(tmp_path, model):
    good = save_checkpoint(model, tmp_path / "good.pt", arch=ARCH, arch_kwargs=KWARGS)
    return good.read_bytes()[: good.stat().st_size // 2]


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (None, "no such file"),
        ("dir", "is a directory"),
        (b"", "is empty"),
        (b"not a checkpoint at all", "not a PyTorch checkpoint"),
        (bytes(range(256)), "not a PyTorch checkpoint"),
        ("truncated", "corrupt or truncated"),
        (pickle.dumps({"a": 1}, protocol=4), "plain pickle: unpickling it runs code"),
    ],
    ids=["missing", "directory", "empty", "text", "random-bytes", "truncated", "raw-pickle"],
)
def test_malformed_files_fail_with_one_line_naming_the_file(tmp_path, model, make, message):
    path = tmp_path / "bad.pt"
    if make == "dir":
        path.mkdir()
    elif make == "truncated":
        path.write_bytes(_truncated(tmp_path, model))
    elif make is not None:
        path.write_bytes(make)
    with pytest.raises(CheckpointError, match=message) as info:
        load_checkpoint(path, arch=ARCH, arch_kwargs=KWARGS)
    assert str(path) in str(info.value) and "\n" not in str(info.value)


@pytest.mark.parametrize(
    ("obj", "message"),
    [
        ([1, 2, 3], "holds a list"),
        ({"optimizer": {"lr": 0.1}, "epoch": 3}, "unknown checkpoint layout"),
        ({"format": FORMAT, "format_version": 99}, "format version 99"),
        ({"format": FORMAT, "format_version": 1, "arch": {"name": ARCH}}, "lacks 'arch' or 'state_dict'"),
    ],
    ids=["list", "unknown-dict", "newer-format", "incomplete-format"],
)
def test_files_that_are_not_networks_fail_clearly(tmp_path, obj, message):
    path = tmp_path / "other.pt"
    torch.save(obj, path)
    with pytest.raises(CheckpointError, match=message):
        load_checkpoint(path, arch=ARCH, arch_kwargs=KWARGS)


def test_an_architecture_that_cannot_be_imported_is_reported(tmp_path, model):
    path = tmp_path / "w.pt"
    torch.save(model.state_dict(), path)
    with pytest.raises(CheckpointError, match="cannot be imported"):
        load_checkpoint(path, arch="no_such_pkg:Net")


def test_a_registry_model_records_its_architecture_by_itself(tmp_path):
    from scconv_deploy.models import create

    net = create("scconv_cnn", in_chans=1, num_classes=7, variant="head").eval()
    ckpt = load_checkpoint(save_checkpoint(net, tmp_path / "cnn.pt"))
    assert (ckpt.arch, ckpt.arch_kwargs) == (
        "scconv_cnn",
        {"in_chans": 1, "num_classes": 7, "variant": "head"},
    )
    x = torch.randn(2, 1, 32, 32)
    with torch.no_grad():
        assert torch.equal(ckpt.model(x), net(x))
