"""to_deploy finds SCConv blocks by structure, converts them, and refuses look-alikes."""

import copy

import pytest
import torch
from torch import nn

from scconv_deploy import (
    CRU,
    SRU,
    ConversionError,
    ExportCRU,
    ExportScConv,
    ExportSRU,
    ScConv,
    deploy_summary,
    to_deploy,
)
from scconv_deploy.ties import gate_margins

from conftest import randomize_, tie_free_input
from public_scconv import HeadScConv, NormGatingScConv, PrereleaseScConv, SeedScConv


class UserNet(nn.Module):
    """A user's network: our block, pasted copies of both public variants, nested and shared."""

    def __init__(self, head_block=None):
        super().__init__()
        self.stem = nn.Conv2d(3, 32, 3, padding=1)
        self.ours = ScConv(32)
        self.stage = nn.Sequential(SeedScConv(32), nn.ReLU(), head_block or HeadScConv(32))
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(32, 10)

    def forward(self, x):
        return self.fc(self.pool(self.stage(self.ours(self.stem(x)))).flatten(1))


@pytest.fixture
def net():
    return randomize_(UserNet(), seed=21).train()


def test_every_block_is_converted_and_the_summary_lists_them(net):
    deployed = to_deploy(net)
    assert isinstance(deployed.ours, ExportScConv)
    assert isinstance(deployed.stage[0], ExportScConv) and isinstance(deployed.stage[2], ExportScConv)
    summary = deploy_summary(deployed)
    assert summary.count == 3
    assert [b.name for b in summary.blocks] == ["ours", "stage.0", "stage.2"]
    assert summary.variants == {"hard/custom-gn": 2, "soft/nn-gn": 1}
    assert summary.blocks[1].origin.endswith("public_scconv.SeedScConv")
    assert "3 SCConv unit(s)" in str(summary) and "stage.2: ScConv soft/nn-gn C=32" in str(summary)


def test_input_model_is_untouched_and_the_copy_is_in_eval_mode(net):
    before = copy.deepcopy(net.state_dict())
    deployed = to_deploy(net)
    assert net.training and isinstance(net.stage[0], SeedScConv)
    assert all(torch.equal(before[k], v) for k, v in net.state_dict().items())
    assert not any(m.training for m in deployed.modules())


def test_foreign_blocks_compute_what_they_computed_before(net):
    net.eval()
    deployed = to_deploy(net)
    for name in ("stage.0", "stage.2"):
        original, converted = net.get_submodule(name), deployed.get_submodule(name)
        x = tie_free_input(converted, (2, 32, 7, 9), 5, 1e-5)
        with torch.no_grad():
            want = original(x)
            assert (converted(x) - want).abs().max() <= 2e-6 * want.abs().max()


def _block_inputs(model, names):
    """Run-time input of each named block, captured with forward pre-hooks."""
    seen = {}
    hooks = [
        model.get_submodule(n).register_forward_pre_hook(lambda m, args, n=n: seen.__setitem__(n, args[0]))
        for n in names
    ]
    return seen, hooks


def test_converted_network_matches_when_gate_decisions_agree(net):
    net.eval()
    deployed = to_deploy(net)
    names = [b.name for b in deploy_summary(deployed).blocks]
    x = torch.randn(2, 3, 12, 12, generator=torch.Generator().manual_seed(3))
    ref_in, ref_hooks = _block_inputs(net, names)
    dep_in, dep_hooks = _block_inputs(deployed, names)
    with torch.no_grad():
        want, got = net(x), deployed(x)
    for h in ref_hooks + dep_hooks:
        h.remove()
    for n in names:  # decisions of each converted block, on its own input, vs the original's
        block = deployed.get_submodule(n)
        assert torch.equal(gate_margins(block, dep_in[n]) >= 0, gate_margins(block, ref_in[n]) >= 0), n
    assert (got - want).abs().max() <= 1e-5 * want.abs().max()


def test_standalone_units_are_converted_too():
    model = nn.Sequential(SRU(16, group_num=4), nn.ReLU(), CRU(16))
    deployed = to_deploy(model)
    assert isinstance(deployed[0], ExportSRU) and isinstance(deployed[2], ExportCRU)
    assert [b.kind for b in deploy_summary(deployed).blocks] == ["SRU", "CRU"]


def test_a_block_at_the_root_is_converted():
    assert isinstance(to_deploy(SeedScConv(16)), ExportScConv)


def test_shared_blocks_stay_shared():
    block = ScConv(16)
    deployed = to_deploy(nn.Sequential(block, block))
    assert deployed[0] is deployed[1]


def test_conversion_is_idempotent(net):
    once = to_deploy(net)
    assert deploy_summary(to_deploy(once)) == deploy_summary(once)


def test_network_without_scconv_converts_to_a_plain_copy(caplog):
    model = nn.Sequential(nn.Conv2d(3, 8, 3))
    deployed = to_deploy(model)
    assert deploy_summary(deployed).count == 0 and deployed is not model
    assert "no SCConv block found" in caplog.text


@pytest.mark.parametrize(
    ("block", "message"),
    [
        (NormGatingScConv(32), "computes neither public gate"),
        (PrereleaseScConv(32), "'GRU' but no 'CRU'"),
    ],
    ids=["gates-normalised-x", "pre-release"],
)
def test_look_alikes_computing_something_else_are_refused(block, message):
    net = UserNet(head_block=randomize_(block, seed=2))
    with pytest.raises(ConversionError, match=message) as info:
        to_deploy(net)
    assert "stage.2" in str(info.value)  # the error names the module


def test_a_block_with_an_extra_layer_is_refused():
    block = SeedScConv(16)
    block.extra = nn.Conv2d(16, 16, 1)
    with pytest.raises(ConversionError, match="extra sub-modules"):
        to_deploy(block)


def test_a_modified_cru_is_refused():
    block = SeedScConv(16)
    block.CRU.GWC = nn.Conv2d(4, 16, 3, padding=1, groups=2, bias=False)  # bias dropped
    with pytest.raises(ConversionError, match="CRU's tensors"):
        to_deploy(block)


def test_non_module_input_is_refused():
    with pytest.raises(ConversionError, match=r"expects a torch\.nn\.Module"):
        to_deploy({"state_dict": {}})


# ---- reduced precision: converted in FP32, returned in the network's own dtypes -----------------


def _float_dtypes(module: nn.Module) -> set[torch.dtype]:
    """The dtypes of its floating-point tensors, but for the fast gates' decision constants (FP32 always)."""
    tensors = [*module.parameters(), *(b for n, b in module.named_buffers() if not _decision_constant(n))]
    return {t.dtype for t in tensors if t.is_floating_point()}


def _decision_constant(name: str) -> bool:
    return name.rsplit(".", 1)[-1] in ExportSRU.FLOAT32_BUFFERS


def _decision_dtypes(module: nn.Module) -> set[torch.dtype]:
    return {b.dtype for n, b in module.named_buffers() if _decision_constant(n)}


@pytest.mark.parametrize("gates", ["exact", "fast"])
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16], ids=["fp16", "bf16"])
def test_half_precision_networks_convert_and_come_back_in_their_dtype(net, dtype, gates):
    low = copy.deepcopy(net).eval().to(dtype)
    deployed = to_deploy(low, gates=gates)
    assert deploy_summary(deployed).count == 3
    assert _float_dtypes(deployed) == {dtype}
    # a fast gate decides in FP32 (its margin scale underflows in FP16); an exact gate has no such buffers
    assert _decision_dtypes(deployed) == ({torch.float32} if gates == "fast" else set())
    assert {p.dtype for p in low.parameters()} == {dtype}  # the input is untouched
    # Each converted block computes what its original does, up to the rounding of its folded
    # constants to the network's dtype (compared in FP32, away from gate ties).
    rounding = torch.finfo(dtype).eps
    for name in ("stage.0", "stage.2"):
        original = copy.deepcopy(low.get_submodule(name)).float()
        converted = copy.deepcopy(deployed.get_submodule(name)).float()
        x = tie_free_input(converted, (2, 32, 7, 9), 5, 2 * rounding)
        with torch.no_grad():
            want = original(x)
            assert (converted(x) - want).abs().max() <= 4 * rounding * want.abs().max()
    with torch.no_grad():
        assert deployed(torch.randn(2, 3, 8, 8).to(dtype)).dtype == dtype


def test_a_mixed_precision_network_keeps_each_tensor_dtype(net):
    net.eval()
    net.stage.half()  # two pasted blocks in FP16, the rest FP32
    deployed = to_deploy(net)
    assert _float_dtypes(deployed.stage) == {torch.float16}
    assert _float_dtypes(deployed.ours) == _float_dtypes(deployed.stem) == {torch.float32}


def test_a_look_alike_in_fp16_is_still_refused():
    block = randomize_(NormGatingScConv(16, group_num=4), seed=2).half()
    with pytest.raises(ConversionError, match="computes neither public gate"):
        to_deploy(block)


# ---- replaced blocks keep the plain attributes their network reads -------------------------------


class Routed(nn.Module):
    """Runs layers by index and 'from' attribute, as Ultralytics' yaml-built models do."""

    def __init__(self):
        super().__init__()
        self.layers = nn.Sequential(nn.Conv2d(3, 16, 3, padding=1), SeedScConv(16, group_num=4))
        for i, layer in enumerate(self.layers):
            layer.i, layer.f, layer.type, layer.np = i, -1, type(layer).__name__, 0

    def forward(self, x):
        for layer in self.layers:
            x = layer(x) if layer.f == -1 else x
        return x


def test_replaced_blocks_keep_every_plain_attribute():
    model = randomize_(Routed(), seed=5)
    block = model.layers[1]
    block.note = {"trained": "yes"}
    block.forward_fuse = lambda x: x  # a plain callable attribute is data too
    deployed = to_deploy(model)
    new = deployed.layers[1]
    assert isinstance(new, ExportScConv)
    assert (new.i, new.f, new.type, new.np, new.note) == (1, -1, "SeedScConv", 0, {"trained": "yes"})
    assert new.forward_fuse is block.forward_fuse
    deployed(torch.randn(1, 3, 8, 8))  # the routing still works


def test_a_method_bound_to_the_replaced_block_is_not_carried_over():
    block = randomize_(SeedScConv(16, group_num=4), seed=6)
    block.predict = block.forward  # e.g. a patched method: bound to the old module
    holder = nn.Sequential(block)
    deployed = to_deploy(holder)
    assert "predict" not in vars(deployed[0]) and isinstance(deployed[0], ExportScConv)
