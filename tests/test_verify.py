"""Decision-aware comparison: every sample is compared once decisions are forced; ties explain flips,
never unchecked outputs; a check that compared nothing never passes."""

import numpy as np
import pytest

from scconv_deploy.gates import GateSpec
from scconv_deploy.golden import GATE_VALUE_SAMPLE, Golden, gate_value_index, margin_classes, margin_edges
from scconv_deploy.verify import Run, compare, tolerance_for
from scconv_deploy.verify.tolerance import channel_scale

N = 6


@pytest.fixture
def golden(tmp_path):
    """Two blocks (hard, soft); every sample holds a tie in block 0 at element 0; others clear."""
    rng = np.random.default_rng(0)
    margins_b0 = rng.uniform(0.2, 0.4, (N, 2, 4, 4)).astype(np.float32)
    margins_b0[:, 0, 0, 0] = 1e-7  # a tie in every sample, as on real seed-variant networks
    margins_b1 = rng.uniform(0.2, 0.4, (N, 2, 2, 2)).astype(np.float32)
    margins_b1[1, 1, 1, 1] = 5e-3  # one gate of sample 1 decided by a hair, but not a tie
    edges = margin_edges(1e-4)
    g = Golden(
        inputs=rng.standard_normal((N, 2, 4, 4)).astype(np.float32),
        outputs=[rng.standard_normal((N, 3)).astype(np.float32) * 4],
        output_names=["output"],
        gates=[GateSpec("b0.SRU", "hard", 0.5), GateSpec("b1.SRU", "soft", 0.5)],
        decisions=[rng.random((N, 2, 4, 4)) > 0.5, rng.random((N, 2, 2, 2)) > 0.5],
        classes=[margin_classes(margins_b0, edges), margin_classes(margins_b1, edges)],
        margins=np.stack([margins_b0.reshape(N, -1).min(1), margins_b1.reshape(N, -1).min(1)], axis=1),
    )
    g.save(tmp_path / "g.npz")
    return Golden.load(tmp_path / "g.npz")  # and the file format round-trips


def _masks(golden, flip=()):
    """The artefact's own masks reproducing the golden decisions, with (block, index) flipped."""
    decisions = [d.copy() for d in golden.decisions]
    for block, index in flip:
        decisions[block][index] = not decisions[block][index]
    return [spec.mask(d) for spec, d in zip(golden.gates, decisions, strict=True)]


def _outputs(golden, shift=0.0, sample=slice(None)):
    out = golden.outputs[0].copy()
    out[sample] += shift
    return [out]


def test_forced_run_compares_every_sample_even_when_every_sample_holds_a_tie(golden):
    assert golden.tie_samples().all()
    result = compare(golden, forced=Run(golden.outputs, _masks(golden)))
    assert result.passed and result.compared == N and result.forced.flipped == 0


@pytest.mark.parametrize(
    "tamper", [lambda o: o + 5.0, lambda o: o * 1.1, lambda o: o + 1e-3 * np.abs(o).max()]
)
def test_wrong_outputs_fail_although_every_sample_holds_a_tie(golden, tamper):
    result = compare(golden, forced=Run([tamper(golden.outputs[0])], _masks(golden)))
    assert not result.passed and "beyond tolerance" in result.reasons[0]


def _with_gate_values(golden):
    """``golden`` holding PyTorch's gate values (blocks this small keep every one, flattened)."""
    assert golden.gate_values is None  # the fixture's file was written without them
    golden.gate_values = [np.full(d.size, 0.75, np.float32) for d in golden.decisions]
    return golden


def _gates(golden, drift=0.0, block=0, where=(1, 0, 1, 1)):
    """The gate tensors of a run: PyTorch's values, with ``drift`` added at ``where`` of ``block``."""
    gates = [v.reshape(d.shape).copy() for v, d in zip(golden.gate_values, golden.decisions, strict=True)]
    gates[block][where] += drift
    return gates


def test_golden_files_keep_the_gate_values_at_a_fixed_random_selection(golden, tmp_path):
    golden = _with_gate_values(golden)
    golden.save(tmp_path / "v.npz")
    assert all(
        np.array_equal(a, b)
        for a, b in zip(Golden.load(tmp_path / "v.npz").gate_values, golden.gate_values, strict=True)
    )
    assert gate_value_index(GATE_VALUE_SAMPLE) is None  # small blocks: every value
    size = 64 * 32 * 32 * 32
    index = gate_value_index(size)
    assert np.array_equal(index, gate_value_index(size)) and len(index) > 0.9 * GATE_VALUE_SAMPLE
    assert len(np.unique(index % 32)) == 32  # every column of a 32-wide map, not a stride's aliases


def test_fp32_holds_the_gate_values_themselves_with_decisions_forced(golden):
    golden = _with_gate_values(golden)
    # One gate off by 6e-6 (the norm amplifying rounding where a group barely varies) passes ...
    lone = compare(golden, forced=Run(golden.outputs, _masks(golden), gates=_gates(golden, 6e-6)))
    assert lone.passed and lone.forced.gate_errors[0].max_abs == pytest.approx(6e-6, rel=0.02)
    # ... every gate of a block off by 5e-6 does not, although that is below the tie guard, so no
    # decision flips and the forced outputs match: only the values tell.
    every = (slice(None),) * 4
    drift = compare(golden, forced=Run(golden.outputs, _masks(golden), gates=_gates(golden, 5e-6, 0, every)))
    assert not drift.passed and drift.forced.flipped == 0
    assert drift.reasons == [
        "gate values of b0.SRU differ from PyTorch's by 5.01e-06 on average (up to 5.01e-06) with "
        "decisions forced, allowed 1e-06 on average: the arithmetic before the gate is not PyTorch's"
    ]


def test_reduced_precision_reports_gate_values_without_holding_them(golden):
    golden = _with_gate_values(golden)
    every = (slice(None),) * 4
    result = compare(
        golden,
        forced=Run(golden.outputs, _masks(golden), gates=_gates(golden, 5e-3, 1, every)),
        precision="fp16",
    )
    assert result.passed and result.forced.gate_errors[1].mean_abs == pytest.approx(5e-3, rel=1e-3)


def test_a_tie_decided_the_other_way_is_counted_not_failed(golden):
    result = compare(golden, forced=Run(golden.outputs, _masks(golden, [(0, (2, 0, 0, 0))])))
    assert result.passed
    assert result.forced.flipped == 1 and result.forced.real_flips == 0
    assert result.forced.flip_classes()[0] == 1  # class 0: ties


def test_a_flip_of_a_clearly_decided_gate_fails_naming_block_and_sample(golden):
    result = compare(golden, forced=Run(golden.outputs, _masks(golden, [(1, (3, 0, 1, 0))])))
    assert not result.passed and result.real_flips == 1
    assert result.forced.flips[1].samples_with_real_flips == [3]
    assert "b1.SRU" in result.reasons[0]


def test_reduced_precision_explains_near_flips_but_not_far_ones(golden):
    near = Run(golden.outputs, _masks(golden, [(1, (1, 1, 1, 1))]))  # margin 5e-3
    assert not compare(golden, forced=near, precision="fp32").passed
    assert compare(golden, forced=near, precision="fp16").passed  # FP16 explains flips below 1e-2
    far = Run(golden.outputs, _masks(golden, [(1, (0, 0, 0, 0))]))  # margin >= 0.2
    assert not compare(golden, forced=far, precision="int8").passed


def test_as_deployed_a_sample_that_took_a_tie_differently_is_reported_not_held(golden):
    deployed = Run(_outputs(golden, 0.3, sample=0), _masks(golden, [(0, (0, 0, 0, 0)), (1, (0, 1, 1, 1))]))
    result = compare(golden, forced=Run(golden.outputs, _masks(golden)), deployed=deployed)
    assert result.passed, result.reasons
    assert result.deployed.diverged == [0] and 0 not in result.deployed.compared
    assert result.deployed.flips[1].real == 0  # downstream of the tie: explained
    assert result.deployed.diverged_outputs[0].max_abs == pytest.approx(0.3, rel=1e-5)


def test_as_deployed_samples_whose_decisions_agree_are_held_to_the_tolerance(golden):
    deployed = Run(_outputs(golden, 1e-2, sample=2), _masks(golden))
    result = compare(golden, deployed=deployed)
    assert not result.passed and "as deployed" in result.reasons[0]


def test_without_masks_only_samples_clear_of_every_threshold_are_compared_and_none_is_a_failure(golden):
    result = compare(golden, deployed=Run(_outputs(golden, 5.0)))
    assert not result.passed and result.compared == 0
    assert any("no sample was compared" in r for r in result.reasons)


def test_shape_mismatches_fail_with_the_reason(golden):
    result = compare(golden, forced=Run([golden.outputs[0][:, :2]], _masks(golden)))
    assert not result.passed and "shape" in result.reasons[0]


def test_nan_outputs_never_pass(golden):
    out = golden.outputs[0].copy()
    out[4, 1] = np.nan
    assert not compare(golden, forced=Run([out], _masks(golden))).passed


def test_errors_are_measured_against_each_channels_scale():
    """A detector-like output: channel 0 in hundreds (boxes), channel 1 in [0, 1] (scores), channel 2
    zero everywhere (a class never scored), which takes the whole output's scale."""
    g = np.zeros((4, 3, 8), np.float32)
    g[:, 0] = 600.0
    g[:, 1] = 0.5
    scale = channel_scale(g)
    assert scale.reshape(-1).tolist() == [600.0, 0.5, 600.0]
    allowed = tolerance_for("fp16").allowed(g, np.broadcast_to(scale, g.shape))
    assert allowed[0, 0, 0] > 1.0 > 0.1 > allowed[0, 1, 0]  # a box may move a pixel, a score not 0.1


def test_soft_gates_decide_with_a_strict_comparison_and_masks_round_trip():
    hard, soft = GateSpec("h", "hard", 0.5), GateSpec("s", "soft", 0.5)
    assert soft.decide(np.float32([0.5, 0.5000001])).tolist() == [False, True]
    assert hard.decide(np.float32([0.5, 0.4999999])).tolist() == [True, False]
    decisions = np.array([True, False])
    for spec in (hard, soft):
        assert spec.decisions(spec.mask(decisions)).tolist() == decisions.tolist()
    assert hard.mask(decisions).tolist() == [0.0, 1.0]  # the hard gate's mask is [r < t]


def test_a_fast_gate_spec_reads_decision_margins_as_gate_values_and_decisions(golden, tmp_path):
    """A fast gate's tensor is q = k·(logit(t) - z): r = sigmoid(z) back, and r >= t where q <= 0."""
    k = 2.0**-20
    spec = GateSpec("b.SRU", "hard", 0.3, margin_scale=k)
    logit_t = np.log(np.float32(0.3) / (1 - np.float32(0.3)))
    z = np.array([-2.0, logit_t - 1e-3, logit_t, logit_t + 1e-3, 4.0])
    q = (k * (logit_t - z)).astype(np.float32)
    assert spec.decide(q).tolist() == [False, False, True, True, True]
    np.testing.assert_allclose(spec.values(q), 1 / (1 + np.exp(-z)), rtol=1e-6)
    assert spec.decisions(spec.mask(spec.decide(q))).tolist() == spec.decide(q).tolist()
    fast = Golden(**{**golden.__dict__, "gates": [spec, golden.gates[1]]})
    fast.save(tmp_path / "fast.npz")
    assert Golden.load(tmp_path / "fast.npz").gates[0] == spec  # the golden file keeps the form
