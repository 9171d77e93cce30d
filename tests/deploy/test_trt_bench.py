"""The latency harness and ``scconv-trt bench`` of an ONNX file (ONNX Runtime on the CPU; no TensorRT)."""

from __future__ import annotations

import json

import pytest
from onnx import helper

from scconv_deploy.trt import measure

from trt_standin import run_cli, save, tiny_model


@pytest.fixture(scope="module")
def demo(demo_onnx):
    return demo_onnx("batch")


# ---- bench -----------------------------------------------------------------------------------------


def test_onnx_bench_prints_a_table_and_writes_json(demo, tmp_path, capsys):
    out_json = tmp_path / "bench.json"
    code, out, _ = run_cli(
        capsys,
        "bench",
        demo,
        "--batch-sizes",
        "1,4",
        "--iterations",
        "3",
        "--warmup",
        "1",
        "--json",
        out_json,
    )
    assert code == 0
    lines = out.splitlines()
    assert "onnxruntime-cpu" in lines[0] and "sample 1x32x32" in lines[0]
    assert lines[1].split() == ["batch", "p50", "ms", "p90", "ms", "p99", "ms", "mean", "ms", "samples/s"]
    assert [line.split()[0] for line in lines[2:4]] == ["1", "4"]
    result = json.loads(out_json.read_text())
    assert result["backend"] == "onnxruntime-cpu" and [r["batch"] for r in result["rows"]] == [1, 4]
    for row in result["rows"]:
        assert 0 < row["p50_ms"] <= row["p90_ms"] <= row["p99_ms"] and row["iterations"] == 3
        assert row["throughput"] == pytest.approx(row["batch"] / row["mean_ms"] * 1e3)


def test_bench_refuses_batch_sizes_a_static_onnx_cannot_take(tmp_path, capsys):
    path = save(tiny_model([helper.make_node("Relu", ["x"], ["y"])]), tmp_path / "static.onnx")
    code, _, err = run_cli(capsys, "bench", path, "--batch-sizes", "1,8")
    assert code == 2 and "static batch of 1" in err


def test_the_harness_warms_up_then_interleaves_batch_sizes():
    calls: list[int] = []

    def timer(size: int):
        return lambda: calls.append(size) or size / 1000

    rows = measure({1: timer(1), 8: timer(8), 32: timer(32)}, iterations=3, warmup=2)
    assert calls[:6] == [1, 1, 8, 8, 32, 32]
    assert calls[6:] == [1, 8, 32, 8, 32, 1, 32, 1, 8]  # each round starts one size later
    assert [(r.batch, r.p50_ms, r.throughput) for r in rows] == [
        (1, 1.0, 1000.0),
        (8, 8.0, 1000.0),
        (32, 32.0, 1000.0),
    ]
