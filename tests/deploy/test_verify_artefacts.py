"""scconv-verify on a deployment host: ONNX artefacts of every precision against their golden data,
without PyTorch; a file changed a little fails; golden data of another model is refused."""

from __future__ import annotations

import json
import shutil

import numpy as np
import onnx
import pytest

from scconv_deploy.cli.verify import main
from scconv_deploy.golden import Golden
from scconv_deploy.verify import verify_file

import tamper


@pytest.mark.parametrize("precision", ["fp32", "fp16", "int8"])
def test_every_precision_verifies_on_every_golden_sample(verified_demo, precision, capsys):
    path = verified_demo(precision)
    assert main([str(path), "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["passed"] and result["precision"] == precision
    assert result["compared"] == result["samples"] == 32  # every sample, decisions forced
    golden = Golden.load(path.with_suffix(".golden.npz"))
    assert golden.tie_samples().all()  # the data a check setting ties aside would compare none of


def test_int8_is_judged_with_qdq_semantics_and_this_cpus_kernels_are_a_note(verified_demo):
    result, _ = verify_file(verified_demo("int8"))
    assert result.passed
    (note,) = [n for n in result.notes if "int8 kernels on this CPU" in n]
    assert "flags" in note  # which CPU the note is about


@pytest.mark.parametrize(
    "how",
    ["output", "conv", "sru", "sru-hair"],
    ids=["output + 1e-3 of max", "last conv x 1.02", "SRU norm shift + 0.01", "SRU norm shift + 2e-5"],
)
def test_a_slightly_changed_fp32_file_fails_with_exit_1(verified_demo, tmp_path, how, capsys):
    path = verified_demo("fp32")
    golden = Golden.load(path.with_suffix(".golden.npz"))
    model = onnx.load(path)
    changed = {
        "output": lambda: tamper.shift_output(model, 1e-3 * float(np.abs(golden.outputs[0]).max())),
        "conv": lambda: tamper.scale_last_conv(model, 1.02),
        "sru": lambda: tamper.shift_sru_norm(model, 0.01, 1, golden),
        # Moves r by at most 5e-6: every flip it causes is a tie, so only the gate values tell.
        "sru-hair": lambda: tamper.shift_sru_norm(model, 2e-5, 1, golden),
    }[how]()
    bad = tmp_path / "changed.onnx"
    onnx.save(changed, bad)
    assert main([str(bad), "--golden", str(path.with_suffix(".golden.npz")), "-q"]) == 1
    out = capsys.readouterr().out
    assert "verification FAILED" in out and "32/32 samples compared" in out
    if how == "sru-hair":  # every gate it flips is a tie: the values alone fail it
        assert "gate values of features" in out and "computed differently from PyTorch" not in out
        # A user who accepts that much gate error says so; the outputs are still held.
        golden_file = str(path.with_suffix(".golden.npz"))
        assert main([str(bad), "--golden", golden_file, "-q", "--gate-atol", "1e-5"]) == 0


def test_bad_input_is_one_line_and_exit_2(verified_demo, tmp_path, capsys):
    path = verified_demo("fp32")
    assert main([str(tmp_path / "missing.onnx")]) == 2
    assert capsys.readouterr().err.count("\n") == 1
    lonely = tmp_path / "lonely.onnx"
    shutil.copy(path, lonely)
    assert main([str(lonely)]) == 2  # no golden data beside it
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--golden FILE" in err
    other = Golden.load(path.with_suffix(".golden.npz"))
    other.meta["source.sha256"] = "0" * 64
    other.save(tmp_path / "other.golden.npz")
    assert main([str(path), "--golden", str(tmp_path / "other.golden.npz")]) == 2
    assert "checkpoint sha256 000000000000" in capsys.readouterr().err
