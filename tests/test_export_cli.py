"""scconv-export: checkpoint -> verified ONNX + golden data + report, atomically, with clear errors."""

import json
import sys
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from torch import nn

from scconv_deploy.checkpoint import save_checkpoint
from scconv_deploy.cli.export import main
from scconv_deploy.cli.verify import main as verify_main
from scconv_deploy.datasets import save_digits_images
from scconv_deploy.golden import Golden
from scconv_deploy.models import create

import tamper
from conftest import randomize_
from user_net import UserClassifier

ROOT = Path(__file__).resolve().parents[1]
DEMO = ROOT / "models" / "scconv_cnn_digits_seed.pt"


@pytest.fixture(scope="module")
def digits_npy(tmp_path_factory):
    path = tmp_path_factory.mktemp("data") / "digits_test.npy"
    save_digits_images("test", path)
    return path


@pytest.fixture(scope="module")
def demo_export(tmp_path_factory, digits_npy):
    out = tmp_path_factory.mktemp("demo") / "demo.onnx"
    code = main(
        [
            str(DEMO),
            "--onnx",
            "-o",
            str(out),
            "--calib-data",
            str(digits_npy),
            "--check-samples",
            "96",
            "--json",
            "-q",
        ]
    )
    return code, out


def _files(directory: Path) -> set[str]:
    return {p.name for p in directory.iterdir()}


def test_demo_export_passes_and_writes_three_files(demo_export):
    code, out = demo_export
    assert code == 0
    assert _files(out.parent) == {"demo.onnx", "demo.golden.npz", "demo.report.json"}


def test_report_holds_errors_gates_graph_and_lint(demo_export):
    report = json.loads(demo_export[1].with_suffix(".report.json").read_text())
    check = report["check"]["verification"]
    assert report["ok"] and report["verified"] and check["passed"] and check["real_flips"] == 0
    assert check["compared"] == check["samples"] == 96  # every sample, with PyTorch's decisions fed in
    assert check["forced"]["gates"] == 96 * (32 * 32 * 32 + 64 * 16 * 16 + 128 * 8 * 8)
    assert check["forced"]["outputs"][0]["max_scaled"] < 1e-5
    assert report["graph"]["nodes"] > 0 and report["graph"]["ops"]["Ceil"] == 3  # one exact step per gate
    assert report["lint"]["ok"] and report["lint"]["findings"] == []
    assert report["scconv"] == {
        "count": 3,
        "variants": {"hard/custom-gn": 3},
        "blocks": report["scconv"]["blocks"],
    }
    assert {"load", "export (dynamo)", "golden data", "check", "lint"} <= set(report["stages"])


def test_onnx_metadata_describes_source_and_input(demo_export):
    model = onnx.load(demo_export[1])
    meta = {p.key: p.value for p in model.metadata_props}
    assert meta["arch"] == "scconv_cnn" and json.loads(meta["scconv.variants"]) == {"hard/custom-gn": 3}
    assert len(meta["source.sha256"]) == 64 and json.loads(meta["input.shape"]) == [1, 1, 32, 32]
    assert json.loads(meta["class_names"])[:2] == ["0", "1"] and "mean" in meta and meta["opset"] == "18"
    assert [o.name for o in model.graph.output] == ["output"]  # gate outputs stay in the debug graph


def test_one_file_serves_several_batch_sizes(demo_export):
    session = ort.InferenceSession(str(demo_export[1]), providers=["CPUExecutionProvider"])
    golden = Golden.load(demo_export[1].with_suffix(".golden.npz"))
    for n in (1, 5, 17):
        (y,) = session.run(None, {"input": golden.inputs[:n]})
        assert y.shape == (n, 10)


def test_golden_data_checks_the_artefact_and_catches_tampering(demo_export, capsys):
    """scconv-verify: the ONNX file against its golden data; a file changed a little fails."""
    out = demo_export[1]
    assert verify_main([str(out), "-q"]) == 0
    golden = Golden.load(out.with_suffix(".golden.npz"))
    scale = float(np.abs(golden.outputs[0]).max())
    model = onnx.load(out)
    for tampered in (
        tamper.shift_output(model, 1e-3 * scale),
        tamper.scale_last_conv(model, 1.02),
        tamper.shift_sru_norm(model, 0.01, 1, golden),
    ):
        bad = out.with_name("tampered.onnx")
        onnx.save(tampered, bad)
        capsys.readouterr()
        assert verify_main([str(bad), "--golden", str(out.with_suffix(".golden.npz")), "--json"]) == 1
        result = json.loads(capsys.readouterr().out)
        assert not result["passed"] and result["compared"] == golden.samples


def test_verify_refuses_golden_data_of_another_model_with_exit_2(demo_export, tmp_path, capsys):
    other = tmp_path / "other.golden.npz"
    golden = Golden.load(demo_export[1].with_suffix(".golden.npz"))
    golden.gates = golden.gates[:1]
    golden.decisions, golden.classes = golden.decisions[:1], golden.classes[:1]
    golden.save(other)
    assert verify_main([str(demo_export[1]), "--golden", str(other)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "golden data" in err


def test_registry_network_with_dynamic_batch_and_size(tmp_path):
    net = create("scconv_resnet50", num_classes=7).eval()
    ckpt = save_checkpoint(net, tmp_path / "r50.pt", input_shape=[1, 3, 64, 64])
    out = tmp_path / "r50.onnx"
    code = main(
        [
            str(ckpt),
            "--onnx",
            "-o",
            str(out),
            "--dynamic",
            "batch+hw",
            "--exporter",
            "legacy",
            "--check-samples",
            "4",
            "-q",
        ]
    )
    assert code == 0
    report = json.loads(out.with_suffix(".report.json").read_text())
    assert report["scconv"]["count"] == 13 and report["lint"]["ok"]
    assert [c["shape"] for c in report["check"]["other_sizes"]] == [[4, 3, 96, 96]]
    assert all(c["passed"] and c["compared"] == 4 for c in report["check"]["other_sizes"])


def test_pickled_user_network_needs_trust(tmp_path, capsys):
    net = randomize_(UserClassifier(), seed=4).eval()
    path = tmp_path / "user.pt"
    torch.save(net, path)
    out = tmp_path / "user.onnx"
    args = [str(path), "--onnx", "-o", str(out), "--input-shape", "1,3,16,16", "--exporter", "legacy"]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--trust" in err and "runs code" in err
    assert _files(tmp_path) == {"user.pt"}
    assert main([*args, "--trust", "--check-samples", "8", "-q"]) == 0
    report = json.loads(out.with_suffix(".report.json").read_text())
    assert report["scconv"]["variants"] == {"hard/custom-gn": 1, "soft/nn-gn": 1}
    assert report["check"]["verification"]["passed"]


@pytest.mark.parametrize(
    ("setup", "extra", "message"),
    [
        ("missing", [], "no such file"),
        ("corrupt", [], "corrupt or truncated"),
        ("demo", ["--input-shape", "1,3,32,32"], "does not fit the network"),
        ("demo", ["--input-shape", "1,x,32,32"], "not a list of integers"),
        ("demo", ["-o", "/nonexistent-dir/out.onnx"], "does not exist"),
        ("demo", ["--preset", "PRESET"], "unknown key 'batch_size'"),
        ("demo", ["--calib-data", "NOFILE"], "no such file"),
        ("demo", ["--gate-atol=-1e-6"], "gate_atol=-1e-06 must not be negative"),
    ],
    ids=[
        "missing-file",
        "corrupt-file",
        "channel-mismatch",
        "bad-shape",
        "unwritable-dir",
        "unknown-preset-key",
        "missing-calib",
        "negative-gate-tolerance",
    ],
)
def test_bad_input_is_one_line_exit_2_and_no_files(tmp_path, capsys, setup, extra, message):
    src = tmp_path / "in.pt"
    if setup == "demo":
        src.write_bytes(DEMO.read_bytes())
    elif setup == "corrupt":
        src.write_bytes(DEMO.read_bytes()[:5000])
    preset = tmp_path / "p.toml"
    preset.write_text("batch_size = 4\n")
    extra = [
        str(preset) if a == "PRESET" else str(tmp_path / "none.npy") if a == "NOFILE" else a for a in extra
    ]
    before = _files(tmp_path)
    code = main([str(src), "--onnx", "--exporter", "legacy", *extra])
    err = capsys.readouterr().err
    assert code == 2
    assert message in err and err.count("\n") == 1, err
    assert _files(tmp_path) == before  # nothing written, no temp files left


def test_preset_sets_options_and_flags_override_it(tmp_path):
    src = tmp_path / "demo.pt"
    src.write_bytes(DEMO.read_bytes())
    code = main(
        [
            str(src),
            "--onnx",
            "--preset",
            str(ROOT / "export" / "onnx-static.toml"),
            "--exporter",
            "legacy",
            "--check-samples",
            "4",
            "-q",
        ]
    )
    assert code == 0
    model = onnx.load(tmp_path / "demo.onnx")
    dims = [d.dim_value for d in model.graph.input[0].type.tensor_type.shape.dim]
    assert dims == [1, 1, 32, 32]  # static: the preset's dynamic = "none"
    report = json.loads((tmp_path / "demo.report.json").read_text())
    assert report["export"]["exporter"] == "legacy"  # the flag beat the preset's "dynamo"


def test_help_shows_examples(capsys):
    with pytest.raises(SystemExit):
        main(["--help"])
    assert "examples:" in capsys.readouterr().out


def test_failed_check_exits_1_and_keeps_files_for_inspection(tmp_path, monkeypatch, capsys):
    import scconv_deploy.verify.ort_check as check

    real_run = check.run_batched
    monkeypatch.setattr(  # ONNX Runtime computing the first output 0.5 too high
        check,
        "run_batched",
        lambda *a, **k: [o + 0.5 if i == 0 else o for i, o in enumerate(real_run(*a, **k))],
    )
    src = tmp_path / "demo.pt"
    src.write_bytes(DEMO.read_bytes())
    assert main([str(src), "--onnx", "--exporter", "legacy", "--check-samples", "8"]) == 1
    assert capsys.readouterr().out.rstrip().endswith("FAILED")
    assert {"demo.onnx", "demo.golden.npz", "demo.report.json"} <= _files(tmp_path)
    report = json.loads((tmp_path / "demo.report.json").read_text())
    assert not report["ok"] and report["check"]["verification"]["forced"]["outputs"][0]["max_abs"] >= 0.5


def test_no_check_ends_with_not_verified(tmp_path, capsys):
    src = tmp_path / "demo.pt"
    src.write_bytes(DEMO.read_bytes())
    assert main([str(src), "--onnx", "--exporter", "legacy", "--no-check"]) == 0
    out = capsys.readouterr().out
    assert out.rstrip().endswith("not verified (--no-check)") and "OK" not in out
    assert _files(tmp_path) == {"demo.pt", "demo.onnx", "demo.report.json"}


def test_an_internal_error_exits_3_naming_the_step(tmp_path, monkeypatch, capsys):
    import scconv_deploy.pipeline.check as check

    def broken(*args, **kwargs):
        raise RuntimeError("something no input explains")

    monkeypatch.setattr(check, "conversion_error", broken)
    src = tmp_path / "demo.pt"
    src.write_bytes(DEMO.read_bytes())
    assert main([str(src), "--onnx", "--exporter", "legacy", "--check-samples", "4"]) == 3
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "step 'original network'" in err and "something no input explains" in err
    assert _files(tmp_path) == {"demo.pt"}
    assert main([str(src), "--onnx", "--exporter", "legacy", "--check-samples", "4", "-v"]) == 3
    assert "Traceback" in capsys.readouterr().err


def test_triton_repository_is_written_for_a_verified_export(tmp_path):
    from scconv_deploy.triton import parse_config

    src = tmp_path / "demo.pt"
    src.write_bytes(DEMO.read_bytes())
    repo = tmp_path / "repo"
    args = [
        str(src),
        "--onnx",
        "--exporter",
        "legacy",
        "--check-samples",
        "8",
        "--triton-repo",
        str(repo),
        "-q",
    ]
    assert main(args) == 0
    config = parse_config((repo / "demo" / "config.pbtxt").read_text())
    assert config.platform == "onnxruntime_onnx" or config.backend == "onnxruntime"
    assert (repo / "demo" / "1" / "model.onnx").read_bytes() == (tmp_path / "demo.onnx").read_bytes()


def test_plots_show_gate_margins_and_errors(tmp_path):
    src = tmp_path / "demo.pt"
    src.write_bytes(DEMO.read_bytes())
    plots = tmp_path / "plots"
    args = [str(src), "--onnx", "--exporter", "legacy", "--check-samples", "8", "--plots", str(plots), "-q"]
    assert main(args) == 0
    assert sorted(p.name for p in plots.iterdir()) == ["demo.errors.png", "demo.gate_margins.png"]
    assert all(p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" for p in plots.iterdir())


@pytest.fixture
def user_project(tmp_path, monkeypatch):
    """A whole pickled network whose SCConv class lives in the user's project folder only."""
    folder = tmp_path / "myproject"
    folder.mkdir()
    (folder / "pasted_scconv.py").write_text((Path(__file__).parent / "public_scconv.py").read_text())
    monkeypatch.syspath_prepend(str(folder))
    import pasted_scconv

    net = nn.Sequential(nn.Conv2d(3, 16, 3, padding=1), pasted_scconv.SeedScConv(16, group_num=4))
    torch.save(randomize_(net, seed=8).eval(), folder / "net.pt")
    monkeypatch.delitem(sys.modules, "pasted_scconv")
    monkeypatch.setattr(sys, "path", [p for p in sys.path if p != str(folder)])
    return folder


def test_classes_are_imported_from_the_current_folder_or_import_paths(
    user_project, tmp_path, monkeypatch, capsys
):
    args = ["--onnx", "--trust", "--input-shape", "1,3,16,16", "--exporter", "legacy", "--no-check", "-q"]
    net = str(user_project / "net.pt")
    monkeypatch.chdir(tmp_path)  # elsewhere: the project must be named
    assert main([net, *args, "-o", str(tmp_path / "a.onnx")]) == 2
    err = capsys.readouterr().err
    assert "No module named 'pasted_scconv'" in err and "--import-path DIR" in err and err.count("\n") == 1
    assert main([net, *args, "-o", str(tmp_path / "b.onnx"), "--import-path", str(user_project)]) == 0
    monkeypatch.delitem(sys.modules, "pasted_scconv")  # as in a new process
    monkeypatch.chdir(user_project)  # the user's project, as with `python -m`
    assert main(["net.pt", *args, "-o", str(tmp_path / "c.onnx")]) == 0
    assert (tmp_path / "b.onnx").exists() and (tmp_path / "c.onnx").exists()
    assert str(user_project) not in sys.path
