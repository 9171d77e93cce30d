"""The model registry: every model builds and runs, SCConv twins convert, MACs match the paper."""

import inspect

import pytest
import torch
from torch import nn

from scconv_deploy import ConfigError, ScConv, deploy_summary, to_deploy
from scconv_deploy.models import count_macs, create, list_models, register_model
from scconv_deploy.models.__main__ import main

SCCONV_MODELS = list_models("scconv_*")
PLAIN_MODELS = [n for n in list_models() if n not in SCCONV_MODELS]

# Which convs SCConv replaces, as counts (see each family's module docstring).
SCCONV_BLOCKS = {
    "scconv_cnn": 3,
    "scconv_resnet18": 13,  # BasicBlock: every 3×3 conv but the three stride-2 ones
    "scconv_resnet34": 29,
    "scconv_resnet50": 13,  # Bottleneck: the 3×3 conv of every stride-1 block
    "scconv_resnet101": 30,
    "scconv_wrn_28_10": 12,  # the second conv of each block
}


def scconv_blocks(model: nn.Module) -> list[str]:
    return [name for name, m in model.named_modules() if isinstance(m, ScConv)]


def test_names_are_sorted_filtered_by_pattern_and_come_in_twins():
    names = list_models()
    assert names == sorted(names) and len(names) == len(set(names))
    assert list_models("resnet*") == ["resnet101", "resnet18", "resnet34", "resnet50"]
    assert list_models("nothing*") == []
    assert SCCONV_MODELS and all(n.removeprefix("scconv_") in PLAIN_MODELS for n in SCCONV_MODELS)
    assert set(SCCONV_BLOCKS) == set(SCCONV_MODELS)


def test_unknown_name_is_a_one_line_value_error_naming_close_matches():
    with pytest.raises(ValueError, match=r"unknown model 'scconv_resnt50'.*scconv_resnet50") as err:
        create("scconv_resnt50")
    assert "\n" not in str(err.value)
    with pytest.raises(ValueError, match="list_models"):
        create("transformer")


def test_a_name_registers_once():
    def resnet50(**kwargs):
        return create("cnn", **kwargs)

    with pytest.raises(ValueError, match="already registered"):
        register_model(resnet50)


@pytest.mark.parametrize("name", list_models())
def test_every_model_builds_and_runs(name):
    model = create(name, num_classes=7, in_chans=1).eval()
    assert list(inspect.signature(model.forward).parameters) == ["x"]
    with torch.no_grad():
        out = model(torch.randn(2, 1, 32, 32))
    assert out.shape == (2, 7) and out.isfinite().all()


@pytest.mark.parametrize("name", SCCONV_MODELS)
@pytest.mark.parametrize(("variant", "summary"), [("seed", "hard/custom-gn"), ("head", "soft/nn-gn")])
def test_scconv_models_convert_every_block_with_the_chosen_variant(name, variant, summary):
    model = create(name, variant=variant)
    blocks = scconv_blocks(model)
    assert len(blocks) == SCCONV_BLOCKS[name]
    deployed = to_deploy(model)
    assert deploy_summary(deployed).count == len(blocks)
    assert deploy_summary(deployed).variants == {summary: len(blocks)}


@pytest.mark.parametrize("name", PLAIN_MODELS)
def test_plain_models_have_no_scconv(name):
    assert deploy_summary(to_deploy(create(name))).count == 0


@pytest.mark.parametrize("name", SCCONV_MODELS)
def test_twins_differ_only_where_scconv_replaces_a_3x3_conv(name):
    scconv, plain = create(name), create(name.removeprefix("scconv_"))
    blocks = scconv_blocks(scconv)
    plain_modules = dict(plain.named_modules())
    for b in blocks:
        conv = plain_modules[b]
        assert isinstance(conv, nn.Conv2d) and conv.kernel_size == (3, 3) and conv.stride == (1, 1)
        assert conv.in_channels == conv.out_channels == scconv.get_submodule(b).config.op_channel

    def outside(model):
        return {
            k: v.shape
            for k, v in model.state_dict().items()
            if not any(k.startswith(f"{b}.") for b in blocks)
        }

    assert outside(scconv) == outside(plain)


def test_keywords_override_the_variant_and_reach_every_block():
    model = create("scconv_resnet18", variant="head", gate="hard", group_num=8, scconv={"alpha": 0.25})
    configs = {model.get_submodule(b).config for b in scconv_blocks(model)}
    assert {(c.gate, c.torch_gn, c.group_num, c.alpha) for c in configs} == {("hard", True, 8, 0.25)}
    assert deploy_summary(to_deploy(model)).variants == {"hard/nn-gn": 13}


def test_bad_options_are_refused():
    with pytest.raises(ConfigError, match="group_num=5"):
        create("scconv_cnn", group_num=5)  # 32 channels
    with pytest.raises(ValueError, match="variant='article'"):
        create("scconv_cnn", variant="article")
    with pytest.raises(ValueError, match="gate"):
        create("scconv_cnn", gate="soft", scconv={"gate": "hard"})
    with pytest.raises(TypeError, match="no SCConv blocks"):
        create("cnn", variant="head")
    with pytest.raises(TypeError, match="unexpected keyword"):
        create("scconv_cnn", depth=3)


@pytest.mark.parametrize(("name", "extra"), [("scconv_resnet50", 3), ("scconv_resnet101", 3)])
def test_stride2_scconv_pool_puts_scconv_at_strided_positions_and_keeps_shapes(name, extra):
    x = torch.randn(1, 3, 64, 64)
    base, pooled = create(name).eval(), create(name, stride2="scconv_pool").eval()
    assert len(scconv_blocks(pooled)) == len(scconv_blocks(base)) + extra
    assert isinstance(pooled.layer2[0].conv2[1], nn.AvgPool2d)
    with torch.no_grad():
        assert pooled(x).shape == base(x).shape == (1, 1000)
    assert deploy_summary(to_deploy(pooled)).count == SCCONV_BLOCKS[name] + extra


def test_stride2_is_checked():
    with pytest.raises(ValueError, match="stride2='pool'"):
        create("scconv_resnet50", stride2="pool")
    with pytest.raises(ValueError, match="BasicBlock"):
        create("scconv_resnet18", stride2="scconv_pool")
    with pytest.raises(TypeError, match="scconv_resnet50 only"):
        create("resnet50", stride2="scconv_pool")


@pytest.mark.parametrize(
    ("name", "params"),
    [("resnet18", 11_689_512), ("resnet34", 21_797_672), ("resnet50", 25_557_032), ("resnet101", 44_549_160)],
)
def test_resnets_have_torchvision_parameter_counts(name, params):
    assert sum(p.numel() for p in create(name).parameters()) == params


def test_wrn_and_cnn_sizes():
    assert sum(p.numel() for p in create("wrn_28_10").parameters()) == 36_479_194
    for name in ("cnn", "scconv_cnn"):
        assert sum(p.numel() for p in create(name).parameters()) < 300_000


def test_count_macs_follows_its_convention():
    model = nn.Sequential(
        nn.Conv2d(4, 6, 3, padding=1, groups=2), nn.ReLU(), nn.Flatten(), nn.Linear(6 * 25, 3)
    )
    counts = count_macs(model.train(), (2, 4, 5, 5))
    assert counts["macs"] == 2 * (6 * 25 * 2 * 9 + 3 * 150)
    assert counts["params"] == (6 * 2 * 9 + 6) + (150 * 3 + 3)
    assert model.training


@pytest.mark.parametrize(
    ("name", "gmacs", "mparams"), [("resnet50", 4.09, 25.6), ("scconv_resnet50", 2.89, 19.0)]
)
def test_resnet50_macs_match_the_paper(name, gmacs, mparams):
    counts = count_macs(create(name), (1, 3, 224, 224))
    assert counts["macs"] / 1e9 == pytest.approx(gmacs, rel=0.03)
    assert counts["params"] / 1e6 == pytest.approx(mparams, rel=0.03)


def test_command_line_prints_a_table(capsys):
    main(["cnn", "scconv_cnn", "--input-shape", "1,3,32,32"])
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 3 and lines[0].startswith("model") and "1,3,32,32" in lines[0]
    assert lines[2].split() == ["scconv_cnn", "0.13", "0.016"]
