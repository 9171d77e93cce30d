"""``scconv-trt inspect`` without TensorRT: the inspector's JSON of TensorRT 10 and 11, the report."""

from __future__ import annotations

import json

import pytest
from test_trt_engines import sidecar_for

from scconv_deploy.trt import layer_info, sidecar_summary
from scconv_deploy.trt.inspect import EngineReport


@pytest.fixture(scope="module")
def demo(demo_onnx):
    return demo_onnx("batch")


def test_inspector_layers_of_tensorrt_10_and_11():
    trt10 = {
        "Name": "conv1",
        "LayerType": "CaskConvolution",
        "Outputs": [{"Name": "t", "Format/Datatype": "Channel major FP16 format where channel % 8 == 0"}],
        "TacticName": "sm90_xmma_fprop",
    }
    trt11 = {
        "Name": "sru",
        "LayerType": "PointWiseV2",
        "Outputs": [{"Name": "t", "Datatype": "Float", "Format": "Linear"}],
    }
    assert layer_info(trt10).output_dtypes == ("FP16",)
    assert layer_info(trt10).tactic == "sm90_xmma_fprop"
    assert layer_info(trt11).output_dtypes == ("FP32",) and layer_info(trt11).type == "PointWiseV2"
    assert layer_info("conv1 + relu1").name == "conv1 + relu1"  # built without detailed profiling


def test_sidecar_summary_and_engine_report_describe_an_engine(demo):
    sidecar = sidecar_for(demo, b"plan")
    text = sidecar_summary(sidecar)
    assert "built with TensorRT 10.8.0.43 on NVIDIA H100 80GB HBM3 (sm_90)" in text
    assert "profile input: min 1x1x32x32, opt 1x1x32x32, max 8x1x32x32" in text
    assert "precision FP32 (weights 100% float32" in text and "verification: not run at build" in text
    layers = [
        layer_info({"Name": f"l{i}", "LayerType": "Conv", "Outputs": [{"Format/Datatype": "FP32"}]})
        for i in range(3)
    ]
    spec = {"min": [1, 1, 32, 32], "opt": [1, 1, 32, 32], "max": [8, 1, 32, 32], "dtype": "float32"}
    report = EngineReport("m.plan", {"input": spec}, {"output": [1, 10]}, layers, 3 << 20, sidecar)
    described = report.describe(layers=True)
    assert (
        "m.plan: 3 layers, device memory 3.0 MiB" in described
        and "layer output precisions: 3 FP32" in described
    )
    assert "    l2  [Conv]  FP32" in described and "sidecar:" in described
    assert json.loads(json.dumps(report.to_dict()))["counts"]["layer_types"] == {"Conv": 3}
