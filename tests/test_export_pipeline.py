"""export_onnx end to end: every sample verified on networks where every sample holds a tie, both
exporters (the default first), tampering caught, specialised axes and exporter failures refused,
normalisation asked for, progress reported by named stages."""

import json
import logging
from pathlib import Path

import numpy as np
import onnx
import pytest

from scconv_deploy.checkpoint import save_checkpoint
from scconv_deploy.cli.export import main
from scconv_deploy.errors import ExportError
from scconv_deploy.golden import Golden
from scconv_deploy.onnx_export import export_onnx
from scconv_deploy.pipeline.options import default_check_samples
from scconv_deploy.verify import verify_onnx

import tamper
from user_net import tie_net

ROOT = Path(__file__).resolve().parents[1]
DEMOS = {v: ROOT / "models" / f"scconv_cnn_digits_{v}.pt" for v in ("seed", "head")}


@pytest.fixture(scope="module")
def tie_checkpoint(tmp_path_factory) -> Path:
    """A user's network in which every sample holds exact gate ties (see user_net.TieNet)."""
    return save_checkpoint(
        tie_net(),
        tmp_path_factory.mktemp("tie") / "tie.pt",
        arch="user_net:tie_net",
        input_shape=[1, 3, 16, 16],
    )


@pytest.fixture(scope="module")
def digits_images(tmp_path_factory) -> Path:
    from scconv_deploy.datasets import save_digits_images

    path = tmp_path_factory.mktemp("digits") / "digits_test.npy"
    save_digits_images("test", path)
    return path


@pytest.fixture(scope="module", params=["seed", "head", "tie"])
def exported(request, tmp_path_factory, tie_checkpoint, digits_images):
    """The seed demo, the head demo and the tie network, exported and checked with the defaults."""
    out = tmp_path_factory.mktemp(request.param) / f"{request.param}.onnx"
    source = tie_checkpoint if request.param == "tie" else DEMOS[request.param]
    data = None if request.param == "tie" else digits_images
    result = export_onnx(source, out, calib_data=data, check_samples=32)
    return result, onnx.load(out), Golden.load(out.with_suffix(".golden.npz"))


def test_every_sample_is_compared_although_every_sample_holds_a_tie(exported):
    result, _, golden = exported
    assert golden.tie_samples().all()  # the data a check that sets ties aside would compare nothing of
    assert result.verified, result.verification.reasons
    assert result.verification.compared == golden.samples == 32


TAMPERS = {
    "output + 1e-3 of max|y|": lambda m, g: tamper.shift_output(m, 1e-3 * float(np.abs(g.outputs[0]).max())),
    "last conv x 1.02": lambda m, g: tamper.scale_last_conv(m, 1.02),
    "first SRU norm shift + 0.01": lambda m, g: tamper.shift_sru_norm(m, 0.01, 0, g),
    "last SRU norm shift + 0.01": lambda m, g: tamper.shift_sru_norm(m, 0.01, -1, g),
}


@pytest.mark.parametrize("how", TAMPERS)
def test_a_slightly_changed_artefact_fails(exported, how):
    _, model, golden = exported
    result = verify_onnx(TAMPERS[how](model, golden), golden)
    assert not result.passed and result.compared == golden.samples, how


@pytest.mark.parametrize("exporter", ["dynamo", "legacy"])
def test_both_exporters_verify_with_dynamic_batch_and_size(tmp_path, tie_checkpoint, exporter):
    result = export_onnx(
        tie_checkpoint, tmp_path / "t.onnx", exporter=exporter, dynamic="batch+hw", check_samples=8
    )
    assert result.verified, result.verification.reasons
    assert [o["shape"] for o in result.check.other_sizes] == [[4, 3, 48, 48]]
    dims = result.artefact.graph.input[0].type.tensor_type.shape.dim
    assert all(d.dim_param for i, d in enumerate(dims) if i != 1)


@pytest.mark.parametrize("exporter", ["dynamo", "legacy"])
def test_the_seed_norm_correction_follows_a_dynamic_height_and_width(tmp_path, digits_images, exporter):
    # The correction sqrt(1 - 1/n) depends on H·W; a simplifier that folds it to a constant leaves
    # every decision within the tie guard but moves the gate values by ~1e-4 at another size.
    result = export_onnx(
        DEMOS["seed"],
        tmp_path / "s.onnx",
        exporter=exporter,
        dynamic="batch+hw",
        calib_data=digits_images,
        check_samples=8,
    )
    assert result.verified, result.verification.reasons
    other = result.check.other_sizes[0]
    assert other["passed"] and other["gate_error"] is not None and other["gate_error"] < 1e-6
    assert max(e.mean_abs for e in result.verification.forced.gate_errors) < 1e-6


@pytest.mark.parametrize("exporter", ["dynamo", "legacy"])
def test_a_dynamic_axis_the_exporter_specialised_is_refused(tmp_path, capsys, exporter):
    ckpt = save_checkpoint(
        __import__("user_net").fixed_batch_net(), tmp_path / "f.pt", arch="user_net:fixed_batch_net"
    )
    code = main([str(ckpt), "--onnx", "--input-shape", "1,3,8,8", "--exporter", exporter, "--no-check"])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1, err
    assert "specialised" in err and "batch" in err
    assert not (tmp_path / "f.onnx").exists()


def test_an_exporter_failure_names_its_real_cause(tmp_path, capsys):
    ckpt = save_checkpoint(
        __import__("user_net").data_dependent_net(), tmp_path / "d.pt", arch="user_net:data_dependent_net"
    )
    assert main([str(ckpt), "--onnx", "--input-shape", "1,8,8,8"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "data-dependent" in err and "--exporter legacy" in err, err


def test_images_without_a_known_normalisation_get_a_warning_and_mean_std_fix_it(
    tmp_path, digits_images, caplog
):
    import torch

    ckpt = torch.load(DEMOS["seed"], weights_only=True)
    del ckpt["meta"]["mean"], ckpt["meta"]["std"]
    bare = tmp_path / "bare.pt"
    torch.save(ckpt, bare)
    with caplog.at_level(logging.WARNING, logger="scconv_deploy"):
        export_onnx(bare, tmp_path / "a.onnx", calib_data=digits_images, check_samples=8)
    assert "not normalised" in caplog.text and "--mean and --std" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="scconv_deploy"):
        result = export_onnx(
            bare, tmp_path / "b.onnx", calib_data=digits_images, check_samples=8, mean="0.5", std="0.25"
        )
    assert "not normalised" not in caplog.text
    meta = {p.key: p.value for p in result.artefact.metadata_props}
    assert json.loads(meta["mean"]) == [0.5] and json.loads(meta["std"]) == [0.25]
    inputs = result.check.golden.inputs
    assert inputs.min() >= (0 - 0.5) / 0.25 - 1e-6 and inputs.max() <= (1 - 0.5) / 0.25 + 1e-6


def test_mean_and_std_come_together(tmp_path):
    with pytest.raises(ExportError, match="--mean and --std together"):
        export_onnx(DEMOS["seed"], tmp_path / "x.onnx", mean="0.5")


def test_a_network_without_scconv_blocks_is_verified_too(tmp_path):
    """Its plain twin, say, to compare with: nothing to decide, every output compared."""
    from scconv_deploy.models import create

    ckpt = save_checkpoint(create("cnn"), tmp_path / "plain.pt", arch="cnn", input_shape=[1, 3, 32, 32])
    result = export_onnx(ckpt, tmp_path / "plain.onnx", check_samples=8)
    assert result.verified and result.network.summary.count == 0
    assert result.verification.compared == 8 and result.verification.gates_compared == 0


def test_pytorch_keeps_its_threads_after_an_export(tmp_path, tie_checkpoint):
    """Conversion probes run single-threaded (tiny tensors); the caller's setting comes back."""
    import torch

    before = torch.get_num_threads()
    export_onnx(tie_checkpoint, tmp_path / "t.onnx", check=False)
    assert torch.get_num_threads() == before


def test_the_check_sample_count_follows_the_input_size():
    assert default_check_samples((1, 1, 32, 32)) == 64
    assert default_check_samples((1, 3, 224, 224)) == 26
    assert default_check_samples((1, 3, 640, 640)) == 8


class Recorder:
    def __init__(self):
        self.events = []

    def start(self, name, total):
        self.events.append(("start", name, total))

    def advance(self, name, done):
        self.events.append(("advance", name, done))

    def end(self, name, seconds, ok):
        self.events.append(("end", name, ok))


def test_stages_are_named_timed_and_count_their_work(tmp_path, tie_checkpoint):
    recorder = Recorder()
    result = export_onnx(tie_checkpoint, tmp_path / "t.onnx", check_samples=20, listener=recorder)
    started = [e[1] for e in recorder.events if e[0] == "start"]
    assert started[:4] == ["load", "convert", "data", "export (dynamo)"]
    assert {"golden data", "check", "lint", "write"} <= set(started)
    golden_done = sum(e[2] for e in recorder.events if e[0] == "advance" and e[1] == "golden data")
    assert ("start", "golden data", 20) in recorder.events and golden_done == 20
    assert set(result.report["stages"]) >= {"load", "export (dynamo)", "golden data", "check"}


def test_quiet_and_json_runs_write_nothing_to_stderr(tmp_path, tie_checkpoint, capsys):
    assert main([str(tie_checkpoint), "--onnx", "-o", str(tmp_path / "t.onnx"), "--json"]) == 0
    out, err = capsys.readouterr()
    assert err == "" and json.loads(out)["verified"]


@pytest.mark.parametrize("gates, sigmoids", [("fast", 0), ("exact", 3)])
def test_the_gate_form_is_chosen_on_the_command_line_and_recorded(tmp_path, digits_images, gates, sigmoids):
    """Fast hard gates decide without the sigmoid; exact ones keep it (and PyTorch's tie rounding).
    Both are verified on every sample; the ONNX metadata says which form it holds."""
    out = tmp_path / f"{gates}.onnx"
    argv = [
        str(DEMOS["seed"]),
        "--onnx",
        "-o",
        str(out),
        "--gates",
        gates,
        "--calib-data",
        str(digits_images),
    ]
    assert main([*argv, "--check-samples", "16", "-q"]) == 0
    model = onnx.load(out)
    assert {p.key: p.value for p in model.metadata_props}["scconv.gates"] == gates
    assert sum(n.op_type == "Sigmoid" for n in model.graph.node) == sigmoids  # the seed demo: 3 hard gates


def test_an_unknown_gate_form_is_refused_before_any_work(tmp_path, capsys):
    with pytest.raises(ExportError, match="gates='sharp' is unknown: use one of exact, fast"):
        export_onnx(DEMOS["seed"], tmp_path / "x.onnx", gates="sharp")
    assert not list(tmp_path.iterdir())
