"""The two gate forms: the fast hard gate decides ``z < logit(t)`` without the sigmoid, differs from the
exact form only where float32 sigmoid rounds ``z`` onto the threshold, and its decision margin is
read back as gate values and decisions exactly as it decided."""

import math

import numpy as np
import pytest
import torch

from scconv_deploy import VARIANTS, ConfigError, ExportScConv, ExportSRU, ScConv, to_deploy
from scconv_deploy.modules.gate_forms import NORMALISED_BOUND, decision_scale, fast_decision, step
from scconv_deploy.tap import GateTap, gate_specs, make_golden
from scconv_deploy.ties import gate_margins

from conftest import random_input, randomize_, tie_free_input


def _seed_sru(channels=16, group_num=4, t=0.5, seed=3):
    ref = randomize_(ScConv(channels, group_num=group_num, gate_treshold=t), seed).SRU.eval()
    return (
        ref,
        ExportSRU.from_reference(ref, gates="fast").eval(),
        ExportSRU.from_reference(ref, gates="exact"),
    )


def _mask(sru: ExportSRU, x: torch.Tensor) -> torch.Tensor:
    seen = []
    hook = sru.mask_probe.register_forward_hook(lambda m, a, out: seen.append(out))
    with torch.no_grad():
        sru(x)
    hook.remove()
    return seen[0]


@pytest.mark.parametrize("t", [0.5, 0.3, 0.62])
def test_the_decision_margin_is_logit_t_minus_z_scaled_by_a_power_of_two(t):
    _, fast, exact = _seed_sru(t=t)
    x = random_input((2, 16, 6, 5), 1)
    with torch.no_grad():
        q = fast.decision_margin(x).double()
        want = fast.margin_scale * (
            math.log(np.float32(t) / (1 - np.float32(t))) - exact.double().gate_input(x.double())
        )
    assert math.log2(fast.margin_scale).is_integer()
    assert torch.allclose(q, want, rtol=1e-5, atol=1e-6 * fast.margin_scale)


def test_the_fast_gate_decides_by_the_sign_of_the_margin():
    _, fast, _ = _seed_sru()
    x = random_input((2, 16, 6, 5), 2)
    with torch.no_grad():
        q = fast.decision_margin(x)
    assert torch.equal(_mask(fast, x), (q > 0).float())  # [z < logit(t)] = [r < t]


def test_the_forms_differ_only_where_sigmoid_rounds_z_onto_the_threshold():
    """Gates with a tiny norm weight sit within float32 rounding of t for every input: the exact form
    takes r == 0.5 as r >= t, the fast form the sign of z; every other gate is decided alike."""
    ref, fast, exact = _seed_sru(seed=5)
    with torch.no_grad():
        ref.gn.weight[:4] = 1e-6  # channels 0-3: |z| ~ 1e-12, sigmoid(z) rounds to exactly 0.5
    fast, exact = ExportSRU.from_reference(ref, gates="fast"), ExportSRU.from_reference(ref, gates="exact")
    x = random_input((2, 16, 6, 5), 3)
    differ = _mask(fast, x) != _mask(exact, x)
    r = exact.gate_values(x)
    assert differ.any()
    assert (r[differ] == 0.5).all()  # a tie in the exact form's own arithmetic
    with torch.no_grad():
        z = exact.gate_input(x)
    assert torch.equal(differ, (r == 0.5) & (z < 0))  # the fast form decides those ties by sign


def test_the_margin_keeps_the_step_exact_for_the_largest_normalised_values():
    """One element far from the rest of its group reaches the largest |normalised value|, sqrt(n - 1)."""
    _, fast, _ = _seed_sru(channels=8, group_num=1)
    x = torch.zeros(1, 8, 64, 64)
    x[0, 0, 0, 0] = 1e6
    with torch.no_grad():
        q = fast.decision_margin(x)
    assert q.abs().max() < 0.5
    assert torch.equal(_mask(fast, x), step(q))


def test_the_margin_scale_covers_the_bound_and_refuses_what_float32_cannot_hold():
    gain, shift = (
        torch.tensor([0.02, -3.0], dtype=torch.float64),
        torch.tensor([0.1, 2.0], dtype=torch.float64),
    )
    k = decision_scale(gain, shift, 0.0)
    bound = 3.0 * NORMALISED_BOUND + 2.0
    assert k * bound <= 0.5 < 2 * k * bound  # the largest power of two that keeps |q| <= 1/2
    with pytest.raises(ConfigError, match="not finite"):
        decision_scale(torch.tensor([math.inf]), shift[:1], 0.0)
    with pytest.raises(ConfigError, match="gates='exact'"):
        fast_decision(torch.tensor([1e33]), torch.tensor([0.0]), 0.5)


def test_gate_specs_read_a_decision_margin_as_gate_values_and_decisions():
    ref = randomize_(ScConv(16, group_num=4), seed=4).eval()
    deployed = to_deploy(ref, gates="fast")
    x = tie_free_input(ref, (2, 16, 6, 5), 5, 1e-5)
    spec = gate_specs(deployed)[0]
    with torch.no_grad():
        _, q, mask = GateTap(deployed, masks=True)(x)
        r = deployed.SRU.gate_values(x)
    assert spec.fast and spec.margin_scale == deployed.SRU.margin_scale
    np.testing.assert_allclose(spec.values(q.numpy()), r.numpy(), rtol=0, atol=2e-7)
    assert np.array_equal(spec.decide(q.numpy()), spec.decisions(mask.numpy()))


@pytest.mark.parametrize("gates", ["exact", "fast"])
def test_golden_decisions_are_the_masks_the_export_form_applied(gates):
    """Even at ties: structural ties (tiny norm weights) in every sample, decided by each form its way."""
    ref = randomize_(ScConv(16, group_num=4), seed=6).eval()
    with torch.no_grad():
        ref.SRU.gn.weight[:2] = 1e-6
    deployed = to_deploy(ref, gates=gates)
    x = random_input((3, 16, 5, 4), 7).numpy()
    golden = make_golden(deployed, x, ["output"])
    with torch.no_grad():
        _, _, mask = GateTap(deployed, masks=True)(torch.from_numpy(x))
    spec = golden.gates[0]
    assert np.array_equal(golden.decisions[0], spec.decisions(mask.numpy()))
    assert golden.ties[0][:, :2].all()  # margins are |r - t|: those gates are ties in either form


def test_a_soft_gate_has_one_form():
    head = randomize_(ScConv(16, **VARIANTS["head"]), seed=8).eval()
    deployed = to_deploy(head, gates="fast")
    assert deployed.SRU.gates == "exact" and deployed.SRU.margin_scale == 0.0
    assert not gate_specs(deployed)[0].fast


def test_with_gates_switches_the_form_on_the_same_constants():
    _, fast, exact = _seed_sru()
    switched = exact.with_gates("fast")
    assert switched.gates == "fast" and torch.equal(switched.decision_weight, fast.decision_weight)
    assert fast.with_gates("fast") is fast and torch.equal(switched.with_gates("exact").scale, exact.scale)


def test_an_unknown_gate_form_is_refused():
    with pytest.raises(ConfigError, match="'exact', 'fast'"):
        to_deploy(ScConv(16), gates="quick")
    with pytest.raises(ConfigError, match="gates="):
        ExportScConv.from_reference(ScConv(16), gates="sigmoid-free")


def test_the_exact_gate_is_the_default():
    deployed = to_deploy(ScConv(16))
    assert deployed.SRU.gates == "exact" and gate_margins(deployed, random_input((1, 16, 4, 4), 9)).shape
