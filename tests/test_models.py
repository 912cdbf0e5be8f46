"""Every registered model: shapes, published figures, exactness against torchvision, export."""

from __future__ import annotations

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

import mobilenets
from mobilenets import compare_published, create_model, list_models, profile
from mobilenets.complexity import figure_met

ALL = list_models()
CLASSIFIERS = list_models(task="classification")  # detectors: tests/test_detection.py


def test_registry_covers_the_papers():
    assert len(ALL) >= 40
    for name in [
        "mobilenet_v1_100", "mobilenet_v1_075", "mobilenet_v1_050", "mobilenet_v1_025", "mobilenet_v1_conv_100",
        "mobilenet_v2_035", "mobilenet_v2_050", "mobilenet_v2_075", "mobilenet_v2_100", "mobilenet_v2_130",
        "mobilenet_v2_140", "mobilenet_v3_large_100", "mobilenet_v3_large_075", "mobilenet_v3_small_100",
        "mobilenet_v3_small_075", "mobilenet_v3_large_minimal_100", "mobilenet_v3_small_minimal_100",
        "shufflenet_v1_g3_150", "shufflenet_v1_g8_025", "shufflenet_v1_g1_200", "shufflenet_v1_g3_100_noshuffle",
    ]:  # fmt: skip
        assert name in ALL
    assert list_models("mobilenet_v3_small*") == [
        "mobilenet_v3_small_075", "mobilenet_v3_small_100", "mobilenet_v3_small_minimal_100"
    ]  # fmt: skip


@pytest.mark.parametrize("name", CLASSIFIERS)
def test_forward_shapes_odd_and_224(name):
    model = create_model(name, num_classes=7).eval()
    with torch.no_grad():
        assert model(torch.randn(2, 3, 97, 113)).shape == (2, 7)
        assert model(torch.randn(1, 3, 224, 224)).shape == (1, 7)
        assert model(torch.randn(1, 3, 32, 32)).shape == (1, 7)


def _all_figures():
    for name in list_models(task="classification") + list_models(task="detection"):  # segmenters' Table 7 rows
        # (one 1025x2049 forward each): tests/test_segmentation.py
        for comp in compare_published(name):
            yield pytest.param(comp, id=f"{name}-{comp.published.source}-{comp.published.resolution}")


@pytest.mark.parametrize("comp", list(_all_figures()))
def test_published_figure(comp):
    """Each published params/MAdds figure, under its source's counting convention.

    Where the source is in error (``erratum``), the corrected figure is checked,
    and the printed figure must really be off: an erratum that is not one fails.
    """
    pub = comp.published
    if pub.erratum:
        printed_ok = [
            figure_met(ours, text, pub.tolerance, pub.truncated)
            for ours, text in ((comp.params, pub.params), (comp.madds, pub.madds))
            if text is not None
        ]
        assert not all(printed_ok), f"{pub.source}: figures match, so the erratum is wrong: {pub.erratum}"
    assert comp.params_ok is not False, f"{comp.model} {pub.source}: {comp.params:,} params vs {comp.params_text}"
    assert comp.madds_ok is not False, f"{comp.model} {pub.source}: {comp.madds:,} MAdds vs {comp.madds_text}"


@pytest.mark.parametrize(
    "ours, builder, expected",
    [
        ("mobilenet_v2_100", "mobilenet_v2", 3_504_872),
        ("mobilenet_v3_large_100", "mobilenet_v3_large", 5_483_032),
        ("mobilenet_v3_small_100", "mobilenet_v3_small", 2_542_856),
    ],
)
def test_param_counts_equal_torchvision(ours, builder, expected):
    import torchvision

    theirs = getattr(torchvision.models, builder)()
    count = sum(p.numel() for p in create_model(ours).parameters())
    assert count == expected == sum(p.numel() for p in theirs.parameters())
    assert profile(create_model(ours)).params == expected


@pytest.mark.parametrize("name", ALL)
def test_madds_agree_with_torch_flop_counter(name):
    model = create_model(name).eval()
    counter = FlopCounterMode(display=False)
    with torch.no_grad(), counter:
        model(torch.zeros(1, 3, 160, 192))
    # flop_counter counts a multiply-add as 2 FLOPs.
    assert profile(model, (160, 192)).madds == counter.get_total_flops() // 2


def test_params_total_equals_module_parameters():
    for name in ["mobilenet_v1_050", "mobilenet_v3_small_100", "shufflenet_v1_g8_150"]:
        model = create_model(name)
        assert profile(model).params == sum(p.numel() for p in model.parameters())


def test_v1_layer_type_breakdown_matches_table_2():
    """P-V1 Table 2, which counts weights without BN.

    Its stem row prints 1.19% MAdds, a transposed 1.91%: with 1.91 the column sums to 100%.
    """
    shares = profile(create_model("mobilenet_v1_100")).breakdown(count_bn=False)
    expected = {  # type: (MAdds %, params %)
        "conv 1x1": (94.86, 74.59),
        "depthwise 3x3": (3.06, 1.06),
        "conv 3x3": (1.91, 0.02),
        "fully connected": (0.18, 24.33),
    }
    assert set(shares) == set(expected)
    for kind, (madds_pct, params_pct) in expected.items():
        assert shares[kind][0] == pytest.approx(madds_pct, abs=0.01), kind
        assert shares[kind][1] == pytest.approx(params_pct, abs=0.03), kind


def test_width_rules():
    # V2: the 1280 conv is not scaled below alpha 1, scaled above.
    assert create_model("mobilenet_v2_035").final_conv.conv.out_channels == 1280
    assert create_model("mobilenet_v2_140").final_conv.conv.out_channels == 1792
    # V3 the TF way: expansion ratios applied to the scaled input; 1280 kept.
    large = create_model("mobilenet_v3_large_075")
    assert large.num_features == 1280
    assert large.stages[5][0].expand.conv.out_channels == make_div(112 * 0.75) * 6 == 528
    # V1: truncation, at least 8.
    assert create_model("mobilenet_v1_025").stem.conv.out_channels == 8
    assert mobilenets.mobilenet_v1(width_mult=0.6).stem.conv.out_channels == 19


def make_div(v):
    from mobilenets.layers import make_divisible

    return make_divisible(v)


def test_make_divisible_never_rounds_down_more_than_10_percent():
    from mobilenets.layers import make_divisible

    assert make_divisible(11.2) == 16  # 8 would be 29% down
    assert make_divisible(18) == 24
    assert make_divisible(12) == 16
    assert make_divisible(100) == 104
    assert make_divisible(3) == 8


def test_v3_blocks_follow_the_tables():
    large = create_model("mobilenet_v3_large_100")
    blocks = [b for stage in large.stages for b in stage]
    assert len(blocks) == 15
    assert [b.dw.conv.kernel_size[0] for b in blocks] == [3, 3, 3, 5, 5, 5, 3, 3, 3, 3, 3, 3, 5, 5, 5]
    assert [b.se.fc1.out_channels if not isinstance(b.se, torch.nn.Identity) else 0 for b in blocks] == [
        0, 0, 0, 24, 32, 32, 0, 0, 0, 0, 120, 168, 168, 240, 240
    ]  # fmt: skip
    assert [isinstance(b.dw.act, torch.nn.Hardswish) for b in blocks] == [False] * 6 + [True] * 9
    assert isinstance(large.stem.act, torch.nn.Hardswish) and large.stem.conv.out_channels == 16
    assert isinstance(blocks[0].expand, torch.nn.Identity) and blocks[0].use_residual
    assert isinstance(large.pre_logits[0], torch.nn.Linear) and large.pre_logits[0].bias is not None
    small = create_model("mobilenet_v3_small_100")
    first = small.stages[0][0]
    assert isinstance(first.expand, torch.nn.Identity) and first.se.fc1.out_channels == 8 and not first.use_residual
    minimal = create_model("mobilenet_v3_small_minimal_100")
    assert not any(isinstance(m, (torch.nn.Hardswish, mobilenets.layers.SqueezeExcite)) for m in minimal.modules())
    assert all(m.kernel_size[0] <= 3 for m in minimal.modules() if isinstance(m, torch.nn.Conv2d))


def test_v2_blocks_follow_table_2():
    model = create_model("mobilenet_v2_100")
    blocks = [b for stage in model.stages for b in stage]
    assert len(blocks) == 17
    assert isinstance(blocks[0].expand, torch.nn.Identity)
    assert sum(b.use_residual for b in blocks) == 10
    assert all(isinstance(b.project.act, torch.nn.Identity) for b in blocks)  # linear bottlenecks
    assert isinstance(blocks[3].dw.act, torch.nn.ReLU6)


def test_shufflenet_units():
    model = create_model("shufflenet_v1_g3_100")
    units = [u for stage in model.stages for u in stage]
    assert len(units) == 16
    assert units[0].gconv1.conv.groups == 1 and units[0].gconv2.conv.groups == 3  # stage 2 starts dense
    assert units[4].gconv1.conv.groups == 3
    assert [u.concat for u in units].count(True) == 3
    assert isinstance(units[1].dw.act, torch.nn.Identity)  # no ReLU after the depthwise conv
    assert units[1].gconv1.conv.out_channels == 60  # bottleneck = out / 4
    assert [stage[-1].gconv2.conv.out_channels for stage in model.stages] == [240, 480, 960]
    plain = create_model("shufflenet_v1_g3_100_noshuffle")
    assert not any(isinstance(m, mobilenets.layers.ChannelShuffle) for m in plain.modules())


def test_channel_shuffle_is_the_papers_permutation():
    from mobilenets.layers import ChannelShuffle

    x = torch.arange(6.0).view(1, 6, 1, 1)  # groups of 2 channels each: (0 1)(2 3)(4 5)
    out = ChannelShuffle(3)(x).flatten().tolist()
    assert out == [0, 2, 4, 1, 3, 5]  # one channel from each group in turn


def test_feature_info_matches_the_feature_maps():
    model = create_model("mobilenet_v3_large_100").eval()
    x = torch.randn(1, 3, 224, 192)
    stages = model.stage_features()
    outs = model.forward_intermediates(x)
    assert [f.reduction for f in stages] == [2, 4, 8, 16, 16, 32, 32]
    for info, out in zip(stages, outs, strict=True):
        assert out.shape[1] == info.channels
        assert out.shape[-2:] == (224 // info.reduction, 192 // info.reduction)


def test_ssdlite_c4_tap_is_the_expansion_of_block_13():
    model = create_model("mobilenet_v3_large_100").eval()
    tap = next(f for f in model.feature_info if f.kind == "expansion" and f.channels == 672 and f.reduction == 16
               and f.module.startswith("stages.5"))  # fmt: skip
    assert tap.module == "stages.5.0.expand"
    c4, c5 = model.forward_intermediates(torch.randn(1, 3, 320, 320), [tap.module, "final_conv"])
    assert c4.shape == (1, 672, 20, 20)
    assert c5.shape == (1, 960, 10, 10)
    with torch.no_grad():
        assert torch.equal(model.forward_intermediates(torch.ones(1, 3, 64, 64), ["final_conv"])[0],
                           model.forward_features(torch.ones(1, 3, 64, 64)))  # fmt: skip


@pytest.mark.parametrize(
    "name", ["mobilenet_v1_050", "mobilenet_v2_100", "mobilenet_v3_small_075", "shufflenet_v1_g3_050"]
)
def test_in_chans_dropout_and_classifier_reset(name):
    model = create_model(name, num_classes=10, in_chans=1, drop_rate=0.5)
    assert model(torch.randn(2, 1, 40, 48)).shape == (2, 10)
    assert model.dropout.p == 0.5
    model.reset_classifier(3)
    assert model(torch.randn(2, 1, 40, 48)).shape == (2, 3)
    loss = model(torch.randn(2, 1, 40, 48)).sum()
    loss.backward()
    assert (
        model.stem[0].conv.weight.grad is not None
        if name.startswith("shuffle")
        else model.stem.conv.weight.grad is not None
    )


def test_same_padding_matches_tf_geometry():
    from mobilenets.layers import ConvNormAct

    conv = ConvNormAct(1, 1, 3, 2, padding="same")
    assert conv(torch.randn(1, 1, 224, 224)).shape[-2:] == (112, 112)
    assert conv(torch.randn(1, 1, 225, 225)).shape[-2:] == (113, 113)
    assert conv.pad._amount(224) == (0, 1) and conv.pad._amount(225) == (1, 1)
    assert create_model("mobilenet_v2_100", padding="same")(torch.randn(1, 3, 97, 113)).shape == (1, 1000)
    # The default path has no padding module at all.
    assert isinstance(ConvNormAct(1, 1, 3, 2).pad, torch.nn.Identity)


def test_config_rebuilds_the_same_model():
    model = create_model("shufflenet_v1_g8_050", num_classes=5, bn_eps=1e-3)
    config = model.config
    assert config["name"] == "shufflenet_v1_g8_050" and config["family"] == "shufflenet_v1"
    rebuilt = getattr(mobilenets, config["family"])(**config["options"])
    assert rebuilt.state_dict().keys() == model.state_dict().keys()
    assert rebuilt.stem[0].bn.eps == 1e-3


# --- bad input ----------------------------------------------------------------


def test_unknown_model_suggests_close_names():
    with pytest.raises(ValueError, match="mobilenet_v2_100"):
        create_model("mobilenet_v2_10")
    with pytest.raises(ValueError, match="mobilenets list"):
        create_model("resnet50")


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda: mobilenets.mobilenet_v1(width_mult=0), "width_mult"),
        (lambda: mobilenets.mobilenet_v2(width_mult=-1), "width_mult"),
        (lambda: mobilenets.mobilenet_v3(size="medium"), "large"),
        (lambda: mobilenets.shufflenet_v1(groups=5), r"\(1, 2, 3, 4, 8\)"),
        (lambda: mobilenets.shufflenet_v1(scale=0), "scale"),
        (lambda: create_model("mobilenet_v2_100", padding="valid"), "symmetric"),
        (lambda: create_model("mobilenet_v2_100", bn_eps=0), "bn_eps"),
        (lambda: create_model("mobilenet_v2_100", drop_rate=1.0), "drop_rate"),
        (lambda: create_model("mobilenet_v2_100", groups=3), "width_mult"),
        (lambda: profile(create_model("mobilenet_v2_100"), 16), ">= 32"),
        (lambda: profile(create_model("mobilenet_v2_100"), "big"), "224x160"),
    ],
)
def test_invalid_options_name_the_valid_range(call, message):
    with pytest.raises((ValueError, TypeError), match=message):
        call()


def test_bad_inputs_get_clear_errors():
    model = create_model("mobilenet_v3_small_100").eval()
    with pytest.raises(ValueError, match="at least 32x32"):
        model(torch.randn(1, 3, 31, 64))
    with pytest.raises(ValueError, match="in_chans=1"):
        model(torch.randn(1, 1, 64, 64))
    with pytest.raises(ValueError, match="4-D"):
        model(torch.randn(3, 64, 64))
    with pytest.raises(ValueError, match="unknown feature taps"):
        model.forward_intermediates(torch.randn(1, 3, 64, 64), ["stages.99"])
