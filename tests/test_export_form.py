"""The export form computes the reference function: tightly on tie-free inputs, in both gate forms,
and — in the exact form — exactly at ties (the fast form's ties: ``test_gate_forms``)."""

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from scconv_deploy import ExportScConv, ExportSRU, ScConv
from scconv_deploy.modules.gate_forms import GATE_FORMS
from scconv_deploy.ties import gate_margins, untie

from conftest import input_shapes, random_input, randomize_, scconv_kwargs, tie_free_input

GUARD = 1e-5  # tie-free: every gate value at least this far from the threshold


def assert_tight(actual, expected):
    """Equal up to float32 re-association: 2e-6 relative to the output's scale."""
    scale = expected.abs().max().item() + 1e-30
    err = (actual - expected).abs().max().item()
    assert err <= 2e-6 * scale, f"max abs error {err:.3g} at output scale {scale:.3g}"


def _pair(kw, seed, gates):
    ref = randomize_(ScConv(**kw), seed).eval()
    return ref, ExportScConv.from_reference(ref, gates=gates).eval()


@given(kw=scconv_kwargs(), data=st.data(), seed=st.integers(0, 2**16), gates=st.sampled_from(GATE_FORMS))
def test_export_form_equals_reference_on_tie_free_inputs(kw, data, seed, gates):
    ref, exp = _pair(kw, seed, gates)
    x = tie_free_input(ref, data.draw(input_shapes(kw["op_channel"], kw["group_num"])), seed, GUARD)
    with torch.no_grad():
        # same gate decisions on both sides of the comparison ...
        assert torch.equal(gate_margins(exp, x) >= 0, gate_margins(ref, x) >= 0)
        # ... and the same outputs
        assert_tight(exp(x), ref(x))


@pytest.mark.parametrize("gates", GATE_FORMS)
@pytest.mark.parametrize("gate", ["hard", "soft"])
@pytest.mark.parametrize("torch_gn", [False, True])
def test_exact_ties_fall_as_in_pytorch(gate, torch_gn, gates):
    """Channels whose gate sits exactly on t (weight and bias 0 -> z = 0 = logit(t), r = 0.5 = t):
    both forms decide these as PyTorch does (the fast form differs only where sigmoid rounds)."""
    ref = randomize_(ScConv(16, group_num=4, gate=gate, torch_gn=torch_gn), seed=7).eval()
    with torch.no_grad():
        ref.SRU.gn.weight[:3] = 0.0
        ref.SRU.gn.bias[:3] = 0.0
    exp = ExportScConv.from_reference(ref, gates=gates).eval()
    x = random_input((2, 16, 5, 6), seed=8)
    tied = gate_margins(ref, x) == 0
    assert tied[:, :3].all() and tied.sum() == tied[:, :3].numel()  # ties only where we put them
    channel = torch.arange(16).reshape(1, -1, 1, 1)
    x = untie(ref, x, GUARD, where=channel >= 3)
    with torch.no_grad():
        assert (gate_margins(ref, x)[:, :3] == 0).all()
        assert_tight(exp.SRU(x), ref.SRU(x))
        assert_tight(exp(x), ref(x))


def _gate_weights(module: torch.nn.Module, r: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(w1, w2) the SRU applies for gate values r, read back from its output with x = 1, halves apart."""
    module.gate_values = lambda x: r  # drive the gate directly
    ones = torch.ones_like(r)
    x1_a = module(torch.cat([ones[:, :1], 0 * ones[:, 1:]], dim=1))  # x = (1, 0): out = (w1_a, w2_a)
    return x1_a[:, :1], x1_a[:, 1:]


@pytest.mark.parametrize("t", [0.5, 0.3, 0.62])
@pytest.mark.parametrize("gate", ["hard", "soft"])
def test_gate_arithmetic_matches_the_comparison_at_and_around_the_threshold(t, gate):
    """r == float32(t) and its float32 neighbours, through the float-only gate of the exact form."""
    ref = ScConv(2, group_num=1, gate_treshold=t, gate=gate, squeeze_radio=1, group_size=1).SRU.eval()
    exp = ExportSRU.from_reference(ref, gates="exact").eval()
    t32 = np.float32(t)
    values = [np.nextafter(t32, np.float32(0)), t32, np.nextafter(t32, np.float32(1)), 0.0, 1.0, 0.25, 0.75]
    r = torch.tensor(np.array(values, dtype=np.float32)).reshape(1, 1, -1, 1).repeat(1, 2, 1, 1)
    with torch.no_grad():
        for got, want in zip(_gate_weights(exp, r), _gate_weights(ref, r), strict=True):
            assert torch.equal(got, want)
    # and the comparisons really are >= (hard) and strict > (soft) at r == t:
    w1_at_t = _gate_weights(ref, r)[0][0, 0, 1, 0].item()
    assert w1_at_t == (1.0 if gate == "hard" else float(t32))


@pytest.mark.parametrize("gates", GATE_FORMS)
def test_parameter_only_quantities_are_precomputed(seed_block, gates):
    exp = ExportScConv.from_reference(seed_block, gates=gates)
    sru = exp.SRU
    assert not list(sru.parameters()), "the export SRU holds folded constants, not parameters"
    gamma = seed_block.SRU.gn.gamma.detach().reshape(-1)
    w = gamma / sum(gamma)
    assert torch.equal(sru.scale, gamma * w)
    assert torch.equal(sru.shift, seed_block.SRU.gn.beta.detach().reshape(-1) * w)
    if gates == "fast":  # and the decision margin's affine, -k·scale and k·(logit(t) - shift)
        k = sru.margin_scale
        assert torch.equal(sru.decision_weight, (-k * sru.scale.double()).float())
        assert torch.equal(sru.decision_bias, (k * (0.0 - sru.shift.double())).float())  # logit(0.5) = 0


@pytest.mark.parametrize("gates", GATE_FORMS)
def test_export_form_is_independent_of_its_source(seed_block, gates):
    exp = ExportScConv.from_reference(seed_block, gates=gates).eval()
    x = untie(seed_block, random_input((1, 32, 8, 8), 2), GUARD)
    before = exp(x)
    with torch.no_grad():
        for p in seed_block.parameters():
            p.add_(1.0)
    assert torch.equal(exp(x), before)


@pytest.mark.parametrize("gates", GATE_FORMS)
def test_unbiased_norm_follows_the_spatial_size(seed_block, gates):
    """The seed norm's correction sqrt((n-1)/n) depends on H*W: very small maps show it most."""
    exp = ExportScConv.from_reference(seed_block, gates=gates).eval()
    for shape in [(2, 32, 1, 1), (1, 32, 2, 1), (1, 32, 3, 40)]:
        x = untie(seed_block, random_input(shape, 3), GUARD)
        with torch.no_grad():
            assert_tight(exp(x), seed_block(x))


@pytest.mark.parametrize("gates", GATE_FORMS)
def test_all_constant_groups_stay_finite_as_in_the_seed_norm(seed_block, gates):
    """A group of zeros (e.g. dead ReLU channels) normalises to 0 in the seed norm, not NaN."""
    exp = ExportScConv.from_reference(seed_block, gates=gates).eval()
    x = random_input((1, 32, 4, 4), 4)
    x[:, :2] = 0.0  # group 0 of 16 groups (2 channels each)
    x = untie(seed_block, x, GUARD, where=torch.arange(32).reshape(1, -1, 1, 1) >= 2)
    with torch.no_grad():
        out = exp(x)
        assert torch.isfinite(out).all()
        assert_tight(out, seed_block(x))
