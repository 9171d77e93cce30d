"""The export form exports with both torch exporters to a clean, dynamic-shape ONNX graph."""

import io

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from torch.export import Dim

from scconv_deploy import ScConv, to_deploy

from conftest import randomize_, tie_free_input
from onnx_graph import COMPARISON_OPS, bool_tensors, non_constant_bounds, op_histogram

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning", "ignore::UserWarning")

GUARD = 1e-5
VARIANTS = {
    "hard/custom-gn": {"gate": "hard", "torch_gn": False, "group_num": 16},
    "soft/nn-gn": {"gate": "soft", "torch_gn": True, "group_num": 4},
    "hard/nn-gn": {"gate": "hard", "torch_gn": True, "group_num": 8},
    "soft/custom-gn": {"gate": "soft", "torch_gn": False, "group_num": 8},
}
CASES = [(v, "dynamo") for v in VARIANTS] + [("hard/custom-gn", "legacy"), ("soft/nn-gn", "legacy")]


def export(module: torch.nn.Module, example: torch.Tensor, exporter: str) -> onnx.ModelProto:
    if exporter == "dynamo":
        dims = {0: Dim("N"), 2: Dim("H", min=2), 3: Dim("W", min=2)}
        program = torch.onnx.export(
            module, (example,), dynamo=True, dynamic_shapes={"x": dims}, external_data=False, verbose=False
        )
        return program.model_proto
    buf = io.BytesIO()
    torch.onnx.export(
        module,
        (example,),
        buf,
        dynamo=False,
        input_names=["x"],
        output_names=["y"],
        dynamic_axes={"x": {0: "N", 2: "H", 3: "W"}, "y": {0: "N", 2: "H", 3: "W"}},
    )
    return onnx.load_from_string(buf.getvalue())


@pytest.fixture(scope="module", params=CASES, ids=[f"{v}-{e}" for v, e in CASES])
def exported(request):
    variant, exporter = request.param
    reference = randomize_(ScConv(32, **VARIANTS[variant]), seed=11).eval()
    model = export(to_deploy(reference), torch.randn(2, 32, 8, 8), exporter)
    return reference, model


def test_graph_has_no_boolean_tensor(exported):
    assert bool_tensors(exported[1]) == []


def test_graph_has_no_comparison_op(exported):
    assert not COMPARISON_OPS & set(op_histogram(exported[1]))


def test_every_split_and_slice_bound_is_a_constant(exported):
    assert non_constant_bounds(exported[1]) == []


def test_graph_is_valid_onnx(exported):
    onnx.checker.check_model(exported[1], full_check=True)


def test_one_file_serves_several_batch_and_spatial_sizes(exported):
    reference, model = exported
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    for i, shape in enumerate([(2, 32, 8, 8), (1, 32, 5, 11), (4, 32, 16, 3)]):
        x = tie_free_input(reference, shape, seed=100 + i, guard=GUARD)
        (got,) = session.run(None, {name: x.numpy()})
        with torch.no_grad():
            want = reference(x).numpy()
        assert got.shape == want.shape
        np.testing.assert_allclose(got, want, rtol=0, atol=2e-6 * np.abs(want).max())


def test_naive_export_of_the_reference_has_what_the_export_form_removes():
    """The counterfactual: exporting the reference directly yields bool tensors and comparisons."""
    reference = randomize_(ScConv(32), seed=11).eval()
    model = export(reference, torch.randn(2, 32, 8, 8), "legacy")
    assert bool_tensors(model)
    assert COMPARISON_OPS & set(op_histogram(model))
