"""Invalid SCConv configurations are refused at construction, naming the parameter and the fix."""

import pytest

from scconv_deploy import CRU, SRU, ConfigError, ScConv, ScConvConfig


@pytest.mark.parametrize(
    ("kwargs", "names"),
    [
        ({"op_channel": 30, "group_num": 16}, ["group_num=16", "divisors of 30"]),
        ({"op_channel": 33, "group_num": 3}, ["op_channel=33", "odd"]),
        ({"op_channel": 32, "alpha": 1.0}, ["alpha=1.0", "between 0 and 1"]),
        ({"op_channel": 32, "alpha": 0.0}, ["alpha=0.0"]),
        ({"op_channel": 32, "gate_treshold": 1.5}, ["gate_treshold=1.5"]),
        ({"op_channel": 32, "gate_treshold": 0}, ["gate_treshold=0"]),
        ({"op_channel": 16, "squeeze_radio": 16}, ["squeeze_radio=16", "0 channels"]),
        ({"op_channel": 32, "group_size": 3}, ["group_size=3", "choose group_size from (1, 2, 4, 8)"]),
        ({"op_channel": 32, "group_kernel_size": 4}, ["group_kernel_size=4", "odd"]),
        ({"op_channel": 4, "group_num": 2, "alpha": 0.1}, ["alpha=0.1", "up=0"]),
        ({"op_channel": 32, "gate": "sigmoid"}, ["gate='sigmoid'", "'hard'", "'soft'"]),
        ({"op_channel": 32, "torch_gn": 1}, ["torch_gn=1"]),
        ({"op_channel": 32.0}, ["op_channel=32.0", "int"]),
        ({"op_channel": 32, "group_num": True}, ["group_num=True"]),
    ],
)
def test_invalid_configuration_is_refused_with_the_parameter_named(kwargs, names):
    with pytest.raises(ConfigError) as info:
        ScConv(**kwargs)
    message = str(info.value)
    for name in names:
        assert name in message
    assert isinstance(info.value, ValueError)  # plain ValueError handlers catch it too


def test_units_validate_only_their_own_parameters():
    with pytest.raises(ConfigError, match="group_num=5"):
        SRU(32, group_num=5)
    with pytest.raises(ConfigError, match="group_size=3"):
        CRU(32, group_size=3)
    CRU(9, alpha=1 / 3, squeeze_radio=1, group_size=3)  # CRU alone has no halves: odd C is fine


def test_public_keywords_and_spelled_aliases_are_equivalent():
    a = ScConv(op_channel=32, group_num=8, gate_treshold=0.4, squeeze_radio=4, group_size=4)
    b = ScConv(op_channel=32, group_num=8, gate_threshold=0.4, squeeze_ratio=4, group_size=4)
    assert a.config == b.config
    assert b.SRU.gate_treshold == 0.4
    assert b.CRU.squeeze1.out_channels == 4


def test_alias_and_public_keyword_together_is_an_error():
    with pytest.raises(ConfigError, match="not both"):
        ScConv(32, gate_treshold=0.5, gate_threshold=0.4)


def test_defaults_follow_the_seed_article():
    cfg = ScConv(64).config
    assert (cfg.gate, cfg.torch_gn, cfg.group_num, cfg.gate_treshold) == ("hard", False, 16, 0.5)
    assert cfg.variant == "hard/custom-gn"
    assert ScConvConfig(64, gate="soft", torch_gn=True).variant == "soft/nn-gn"
