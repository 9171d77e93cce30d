"""The reference ScConv is a drop-in for both public variants: same state dicts, same outputs."""

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from scconv_deploy import VARIANTS, ScConv

from conftest import input_shapes, random_input, randomize_, scconv_kwargs
from public_scconv import HeadNormCustom, HeadScConv, HeadSRU, SeedScConv


def _public_twin(kw):
    """The public module computing what ScConv(**kw) should compute, or None if no public twin."""
    public_kw = {
        k: kw[k]
        for k in (
            "op_channel",
            "group_num",
            "gate_treshold",
            "alpha",
            "squeeze_radio",
            "group_size",
            "group_kernel_size",
        )
    }
    if kw["gate"] == "hard" and not kw["torch_gn"]:
        return SeedScConv(**public_kw)
    if kw["gate"] == "soft":
        block = HeadScConv(**public_kw)
        block.SRU = HeadSRU(kw["op_channel"], kw["group_num"], kw["gate_treshold"], torch_gn=kw["torch_gn"])
        return block
    return None


@given(kw=scconv_kwargs(), data=st.data(), seed=st.integers(0, 2**16))
def test_reference_reproduces_public_code_bit_for_bit(kw, data, seed):
    public = _public_twin(kw)
    if public is None:  # hard gate with nn.GroupNorm exists only in our code
        kw = {**kw, "gate": "soft"}
        public = _public_twin(kw)
    randomize_(public, seed).eval()
    ours = ScConv(**kw).eval()
    ours.load_state_dict(public.state_dict(), strict=True)
    x = random_input(data.draw(input_shapes(kw["op_channel"], kw["group_num"])), seed)
    with torch.no_grad():
        assert torch.equal(ours(x), public(x))


@pytest.mark.parametrize("variant", ["seed", "head"])
def test_public_state_dicts_load_strictly_and_give_the_same_outputs(variant):
    public = randomize_((SeedScConv if variant == "seed" else HeadScConv)(64), seed=3).eval()
    ours = ScConv(64, **VARIANTS[variant]).eval()
    ours.load_state_dict(public.state_dict(), strict=True)
    assert set(ours.state_dict()) == set(public.state_dict())
    expected_norm_keys = {"seed": {"SRU.gn.gamma", "SRU.gn.beta"}, "head": {"SRU.gn.weight", "SRU.gn.bias"}}
    assert expected_norm_keys[variant] <= set(ours.state_dict())
    x = random_input((2, 64, 11, 13), seed=4)
    with torch.no_grad():
        assert torch.equal(ours(x), public(x))


def test_head_copy_of_the_custom_norm_loads_under_its_weight_bias_names():
    public = HeadSRU(32, group_num=8, torch_gn=False)
    assert isinstance(public.gn, HeadNormCustom)
    randomize_(public, seed=5).eval()
    ours = ScConv(32, group_num=8, gate="soft", torch_gn=False).SRU.eval()
    ours.load_state_dict(public.state_dict(), strict=True)
    x = random_input((2, 32, 6, 6), seed=6)
    with torch.no_grad():
        assert torch.equal(ours(x), public(x))


def test_shapes_are_kept_for_any_spatial_size(seed_block):
    for shape in [(1, 32, 1, 2), (3, 32, 17, 5)]:
        assert seed_block(random_input(shape, 0)).shape == shape


@pytest.mark.parametrize("variant", ["seed", "head"])
def test_gradients_flow_as_in_the_public_code(variant):
    """CRU always trains; the SRU norm trains only through the soft gate (hard masks have no gradient)."""
    block = randomize_(ScConv(32, **VARIANTS[variant]), seed=1).train()
    block(random_input((2, 32, 8, 8), 1)).square().mean().backward()
    assert block.CRU.GWC.weight.grad is not None
    norm_grad = block.SRU.gn.weight.grad
    if variant == "seed":
        assert norm_grad is None
    else:
        assert norm_grad is not None and norm_grad.abs().sum() > 0
