"""Decision-aware comparison: ties never fail a check spuriously, real flips never pass silently."""

import numpy as np
import pytest

from scconv_deploy.gates import GateSpec
from scconv_deploy.golden import Golden
from scconv_deploy.verify import compare

N = 6


@pytest.fixture
def golden(tmp_path):
    """Two hard-gate blocks; sample 0 has a tie in block 0 at element 0, all other gates are clear."""
    rng = np.random.default_rng(0)
    decisions = [rng.random((N, 2, 4, 4)) > 0.5, rng.random((N, 2, 2, 2)) > 0.5]
    ties = [np.zeros_like(d) for d in decisions]
    ties[0][0, 0, 0, 0] = True
    margins = np.full((N, 2), 0.1, np.float32)
    margins[0, 0] = 1e-7
    g = Golden(
        inputs=rng.standard_normal((N, 2, 4, 4)).astype(np.float32),
        outputs=[rng.standard_normal((N, 3)).astype(np.float32)],
        output_names=["output"],
        gates=[GateSpec("b0.SRU", "hard", 0.5), GateSpec("b1.SRU", "hard", 0.5)],
        decisions=decisions,
        ties=ties,
        margins=margins,
    )
    g.save(tmp_path / "g.npz")
    return Golden.load(tmp_path / "g.npz")  # and the file format round-trips


def _gates(golden, flip=()):
    """Gate values reproducing golden decisions (0.75 / 0.25), with the listed (block, index) flipped."""
    values = [np.where(d, 0.75, 0.25).astype(np.float32) for d in golden.decisions]
    for block, index in flip:
        values[block][index] = 1.0 - values[block][index]
    return values


def test_identical_outputs_and_decisions_pass(golden):
    result = compare(golden, golden.outputs, _gates(golden))
    assert result.passed and result.gates_flipped == 0 and len(result.compared) == N


def test_a_tie_flip_and_its_downstream_consequences_are_set_aside_not_failed(golden):
    outputs = [golden.outputs[0].copy()]
    outputs[0][0] += 0.3  # the tie flip moved sample 0's output
    flips = [(0, (0, 0, 0, 0)), (1, (0, 1, 1, 1))]  # the tie, then a clear gate later in the sample
    result = compare(golden, outputs, _gates(golden, flips))
    assert result.passed, result.reasons
    assert result.tie_samples == [0] and 0 not in result.compared
    assert result.real_flips == 0 and result.flips[1].downstream == 1


def test_a_flip_of_a_clearly_decided_gate_fails(golden):
    result = compare(golden, golden.outputs, _gates(golden, [(0, (3, 1, 2, 2))]))
    assert not result.passed and result.real_flips == 1
    assert result.flips[0].samples_with_real_flips == [3]
    assert "flipped away from ties" in result.reasons[0]


def test_arithmetic_error_on_agreeing_samples_fails(golden):
    outputs = [golden.outputs[0].copy()]
    outputs[0][2] += 1e-2
    result = compare(golden, outputs, _gates(golden))
    assert not result.passed and "exceeds atol" in result.reasons[0]
    assert result.outputs[0].max_abs == pytest.approx(1e-2, rel=1e-3)


def test_without_gate_values_tie_samples_are_set_aside(golden):
    outputs = [golden.outputs[0].copy()]
    outputs[0][0] += 0.3  # sample 0 holds a tie: not held against the artefact
    result = compare(golden, outputs)
    assert result.passed and result.flips is None and result.tie_samples == [0]
    outputs[0][1] += 0.3  # sample 1 has no tie: a real difference
    assert not compare(golden, outputs).passed


def test_shape_mismatch_fails_with_the_reason(golden):
    result = compare(golden, [golden.outputs[0][:, :2]])
    assert not result.passed and "shape" in result.reasons[0]


def test_soft_gates_decide_with_a_strict_comparison():
    assert GateSpec("s", "soft", 0.5).decide(np.float32([0.5, 0.5000001])).tolist() == [False, True]
    assert GateSpec("h", "hard", 0.5).decide(np.float32([0.5, 0.4999999])).tolist() == [True, False]
