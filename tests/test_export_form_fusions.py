"""Each fusion of the export form computes exactly what it replaces; the block's graph stays small."""

import io

import numpy as np
import onnx
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from scconv_deploy import VARIANTS, ExportCRU, ExportScConv, ScConv
from scconv_deploy.modules.export_form import (
    MIN_GROUP_WIDTH,
    append_identity,
    dense_weight,
    merge_pointwise_into_centre,
    merges_pointwise,
    softmax_fuse,
    step,
    swap_halves_index,
    unbiased_correction,
)
from scconv_deploy.ties import gate_margins, untie

from conftest import random_input, randomize_, tie_free_input

pytestmark = pytest.mark.filterwarnings(
    "ignore::DeprecationWarning", "ignore::UserWarning", "ignore::torch.jit.TracerWarning"
)

GUARD = 1e-5


def assert_tight(actual: torch.Tensor, expected: torch.Tensor) -> None:
    """Equal up to float32 re-association: 2e-6 relative to the output's scale (as test_export_form)."""
    scale = expected.abs().max().item() + 1e-30
    err = (actual - expected).abs().max().item()
    assert err <= 2e-6 * scale, f"max abs error {err:.3g} at output scale {scale:.3g}"


def _conv(in_ch: int, out_ch: int, k: int, groups: int = 1, bias: bool = False, seed: int = 0) -> nn.Conv2d:
    torch.manual_seed(seed)
    return nn.Conv2d(in_ch, out_ch, k, padding=k // 2, groups=groups, bias=bias).eval()


def test_step_is_the_strict_comparison_with_zero_for_every_float_in_the_gate_range():
    """Ceil(d) == [d > 0] on (-1, 1): at 0, -0, the smallest subnormals and next to +-1."""
    f32 = np.float32
    special = [0.0, -0.0, 1e-45, -1e-45, 1.2e-38, -1.2e-38, 6e-8, -6e-8, 0.5, -0.5]
    special += [np.nextafter(f32(1), f32(0)), np.nextafter(f32(-1), f32(0))]
    rng = np.random.default_rng(0)
    d = np.concatenate([np.array(special, dtype=f32), rng.uniform(-1, 1, 10_000).astype(f32)])
    d = torch.from_numpy(d)
    assert torch.equal(step(d), (d > 0).float())


@pytest.mark.parametrize("t", [0.5, 0.3, 0.62, 1e-3])
def test_gate_differences_keep_their_sign_at_and_next_to_the_threshold(t):
    """t - r and r - t are exact in sign for r == t and its float32 neighbours, so step decides exactly."""
    t32 = np.float32(t)
    r = np.array(
        [np.nextafter(t32, np.float32(0)), t32, np.nextafter(t32, np.float32(1)), 0.0, 1.0], np.float32
    )
    r = torch.from_numpy(r)
    assert torch.equal(step(t32.item() - r), (r < t32.item()).float())
    assert torch.equal(step(r - t32.item()), (r > t32.item()).float())


@pytest.mark.parametrize("channels", [2, 6, 64])
def test_swap_is_one_gather_that_exchanges_the_halves(channels):
    x = random_input((2, channels, 3, 4), 1)
    a, b = torch.split(x, channels // 2, dim=1)
    assert torch.equal(torch.index_select(x, 1, swap_halves_index(channels)), torch.cat([b, a], dim=1))


@pytest.mark.parametrize(("in_ch", "out_ch", "groups", "k"), [(16, 64, 2, 3), (8, 16, 4, 5), (6, 12, 1, 3)])
def test_dense_weight_is_the_grouped_conv(in_ch, out_ch, groups, k):
    gwc = _conv(in_ch, out_ch, k, groups, bias=True)
    u = random_input((2, in_ch, 7, 5), 2)
    with torch.no_grad():
        assert_tight(F.conv2d(u, dense_weight(gwc), gwc.bias, padding=k // 2), gwc(u))


@pytest.mark.parametrize(("in_ch", "out_ch", "groups", "k"), [(16, 64, 2, 3), (8, 16, 4, 5), (6, 12, 1, 1)])
def test_pointwise_merged_into_the_centre_tap_is_gwc_plus_pwc1(in_ch, out_ch, groups, k):
    gwc, pwc = _conv(in_ch, out_ch, k, groups, bias=True, seed=1), _conv(in_ch, out_ch, 1, seed=2)
    merged = merge_pointwise_into_centre(gwc, pwc)
    assert merged.groups == 1 and merged.kernel_size == (k, k) and merged.padding == (k // 2, k // 2)
    u = random_input((2, in_ch, 6, 9), 3)
    with torch.no_grad():
        assert_tight(merged(u), gwc(u) + pwc(u))


def test_pointwise_is_merged_only_where_the_groups_are_narrow():
    assert merges_pointwise(_conv(16, 64, 3, groups=2))  # 8 channels per group: the C=64 stage
    assert merges_pointwise(_conv(32, 64, 3, groups=1))  # already dense: merging is free
    assert not merges_pointwise(_conv(2 * MIN_GROUP_WIDTH, 128, 3, groups=2))  # C=128 and wider


def test_identity_rows_append_the_input_exactly():
    """cat([PWC2(v), v]) as one conv: PWC2's rows as before, the identity rows copy v bit for bit."""
    pwc2 = _conv(16, 48, 1, seed=4)
    fused = append_identity(pwc2)
    v = random_input((2, 16, 5, 5), 5)
    with torch.no_grad():
        out = fused(v)
        assert_tight(out[:, :48], pwc2(v))
        assert torch.equal(out[:, 48:], v)


def test_softmax_fuse_is_the_reference_concat_scale_split_add():
    y1, y2 = random_input((2, 8, 4, 5), 6), random_input((2, 8, 4, 5), 7)
    out = torch.cat([y1, y2], dim=1)
    out = torch.softmax(F.adaptive_avg_pool2d(out, 1), dim=1) * out
    want = out[:, :8] + out[:, 8:]
    assert_tight(softmax_fuse(y1, y2, 8), want)


@pytest.mark.parametrize("shape", [(1, 8, 1, 2), (2, 8, 5, 7), (1, 8, 56, 56)])
@pytest.mark.parametrize("group_size", [1, 2, 3, 4])
def test_unbiased_correction_is_sqrt_of_n_minus_one_over_n(shape, group_size):
    n = group_size * shape[2] * shape[3]
    want = np.sqrt(np.float64(n - 1) / n)
    got = unbiased_correction(torch.zeros(shape), group_size).item()
    assert abs(got - want) <= 2e-7 * want + 1e-12


@pytest.mark.parametrize("channels", [32, 64, 128])
@pytest.mark.parametrize("variant", ["seed", "head"])
def test_fused_cru_equals_the_reference_cru(channels, variant):
    """Merged (C <= 64: narrow groups) and unmerged (C = 128) GWC paths alike."""
    ref = randomize_(ScConv(channels, **VARIANTS[variant]), seed=channels).eval()
    cru = ExportCRU.from_reference(ref.CRU).eval()
    assert (cru.PWC1 is None) == merges_pointwise(ref.CRU.GWC)
    x = random_input((2, channels, 9, 7), 8)
    with torch.no_grad():
        assert_tight(cru(x), ref.CRU(x))


@pytest.mark.parametrize("channels", [32, 128])
@pytest.mark.parametrize("variant", ["seed", "head"])
def test_fused_block_equals_the_reference_on_tie_free_inputs(channels, variant):
    ref = randomize_(ScConv(channels, **VARIANTS[variant]), seed=3).eval()
    exp = ExportScConv.from_reference(ref).eval()
    x = tie_free_input(ref, (2, channels, 8, 6), seed=9, guard=GUARD)
    with torch.no_grad():
        assert torch.equal(gate_margins(exp, x) >= 0, gate_margins(ref, x) >= 0)
        assert_tight(exp(x), ref(x))


@pytest.mark.parametrize("gate", ["hard", "soft"])
def test_split_by_gate_is_exactly_the_reference_masking_at_ties(gate):
    """x1, x2 from the float-only masks equal w1 * x, w2 * x of the reference bit for bit, r == t included."""
    ref = randomize_(ScConv(16, group_num=4, gate=gate), seed=7).eval()
    with torch.no_grad():
        ref.SRU.gn.weight[:4] = 0.0  # gates of channels 0-3 sit exactly on t = 0.5
        ref.SRU.gn.bias[:4] = 0.0
    exp = ExportScConv.from_reference(ref).eval()
    x = untie(ref, random_input((2, 16, 5, 6), 8), GUARD, where=torch.arange(16).reshape(1, -1, 1, 1) >= 4)
    with torch.no_grad():
        r = ref.SRU.gate_values(x)
        assert (r[:, :4] == 0.5).all()
        t = ref.SRU.gate_treshold
        if gate == "hard":
            w1, w2 = (r >= t).float(), (r < t).float()
        else:
            w1 = torch.where(r > t, torch.ones_like(r), r)
            w2 = torch.where(r > t, torch.zeros_like(r), r)
        x1, x2 = exp.SRU.split_by_gate(x, r)
        assert torch.equal(x1, w1 * x) and torch.equal(x2, w2 * x)
        assert_tight(exp(x), ref(x))


def _legacy_nodes(module: nn.Module, channels: int) -> dict[str, int]:
    buf = io.BytesIO()
    torch.onnx.export(
        module,
        (torch.randn(1, channels, 16, 16),),
        buf,
        dynamo=False,
        input_names=["x"],
        dynamic_axes={"x": {0: "N", 2: "H", 3: "W"}},
    )
    ops: dict[str, int] = {}
    for node in onnx.load_from_string(buf.getvalue()).graph.node:
        ops[node.op_type] = ops.get(node.op_type, 0) + 1
    return ops


#: Ops of one seed block (C=64, legacy exporter, opset 20), Constant nodes aside, by gate form:
#: seed correction sqrt(1 - Reciprocal(H·W)·(1/group_size)) — Shape, Gather, Shape, Gather, Mul,
#: Cast, Reciprocal, Mul, Sub, Sqrt, Mul (scale) (11; a Div there is folded away by onnxslim, see
#: ``unbiased_correction``); group norm — Reshape, InstanceNormalization, Shape, Reshape, the bare
#: norm's unit Mul and zero Add (which onnxslim and ONNX Runtime drop), BatchNormalization (the
#: folded affine in one pass, ``channel_affine``) (7); gate — exact: Sigmoid, Sub, Ceil (3), fast:
#: Ceil (1); gating — Mul, Sub, Gather, Add (4); CRU — Split, 2 squeeze Conv, merged GWC+PWC1
#: Conv, PWC2|identity Conv, 2 GlobalAveragePool, Concat, Softmax, Split, Mul, Mul, Add (13).
SEED_BLOCK_OPS = {"exact": 38, "fast": 36}


@pytest.mark.parametrize("gates", sorted(SEED_BLOCK_OPS))
def test_node_count_of_one_block_does_not_grow(gates):
    """Regression guard (before this work: 38 ops in the exact form, the only one)."""
    block = ExportScConv.from_reference(randomize_(ScConv(64), seed=0).eval(), gates=gates).eval()
    ops = _legacy_nodes(block, 64)
    assert sum(n for op, n in ops.items() if op != "Constant") <= SEED_BLOCK_OPS[gates], ops
    assert "Sign" not in ops and "Concat" in ops and ops["Concat"] == 1  # only the pooled (N, 2C, 1, 1) one
    assert ops["Cast"] == 1  # H·W to float; no no-op casts around the fast gate's float32 decision
    assert ops.get("Sigmoid", 0) == (gates == "exact")  # the fast gate decides without it
    assert ops["BatchNormalization"] == 1 and ops["Reciprocal"] == 1  # one-pass affine; slim-safe correction
