"""Backbones for heads: output stride (dilation), reduced tail, spec lists as data, features_only, fx tracing."""

from __future__ import annotations

import pytest
import torch
import torchvision
from torchvision.models.feature_extraction import create_feature_extractor

import mobilenets
from mobilenets import BlockSpec, create_model
from mobilenets.complexity import profile
from mobilenets.models.spec import apply_output_stride

FAMILIES = ["mobilenet_v1_025", "mobilenet_v2_050", "mobilenet_v3_small_075", "mobilenet_v3_large_100",
            "shufflenet_v1_g3_050"]  # fmt: skip


def _params(model):
    return sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize("name", ["mobilenet_v2_100", "mobilenet_v3_large_100", "mobilenet_v3_small_100"])
@pytest.mark.parametrize("output_stride", [16, 8])
def test_output_stride_dilates_without_new_weights(name, output_stride):
    torch.manual_seed(0)
    base = create_model(name).eval()
    dilated = create_model(name, output_stride=output_stride).eval()
    assert _params(dilated) == _params(base)
    dilated.load_state_dict(base.state_dict())  # same keys and shapes
    x = torch.randn(1, 3, 224, 224)
    stages = dilated.stage_features()
    assert max(f.reduction for f in stages) == output_stride
    assert [f.reduction for f in stages] == [min(f.reduction, output_stride) for f in base.stage_features()]
    for info, fmap in zip(stages, dilated.forward_intermediates(x, [f.module for f in stages]), strict=True):
        assert fmap.shape[1] == info.channels
        assert fmap.shape[-1] == 224 // info.reduction
    # Everything before the first removed stride computes exactly what the undilated network does.
    undilated = [f.module for f in base.stage_features() if f.reduction <= output_stride // 2]
    for a, b in zip(base.forward_intermediates(x, undilated), dilated.forward_intermediates(x, undilated), strict=True):
        assert torch.equal(a, b)
    assert dilated(x).shape == (1, 1000)
    assert dilated.config["options"]["output_stride"] == output_stride
    assert mobilenets.load_model  # the option round-trips through the config (below)
    rebuilt = create_model(name, **{k: v for k, v in dilated.config["options"].items() if k not in ("num_classes",)})
    assert [f.reduction for f in rebuilt.stage_features()] == [f.reduction for f in stages]


def test_output_stride_conventions():
    specs = create_model("mobilenet_v3_large_100").blocks
    tf = apply_output_stride(specs, 16, 2)
    tv = apply_output_stride(specs, 16, 2, dilate_first=True)
    # bneck 13 (index 12) loses its stride; DeepLab/timm keep its dilation 1, torchvision dilates it.
    assert (tf[12].stride, tf[12].dilation, tf[13].dilation) == (1, 1, 2)
    assert (tv[12].stride, tv[12].dilation, tv[13].dilation) == (1, 2, 2)
    with pytest.raises(ValueError, match="output_stride must be 8, 16 or 32"):
        apply_output_stride(specs, 4, 2)


def test_dilated_reduced_tail_v3_equals_torchvision():
    """torchvision's mobilenet_v3_large(dilated=True, reduced_tail=True), the LR-ASPP backbone, weight for weight."""
    torch.manual_seed(0)
    theirs = torchvision.models.mobilenet_v3_large(dilated=True, reduced_tail=True).eval()
    ours = create_model("mobilenet_v3_large_100", output_stride=16, reduced_tail=True, dilate_first=True,
                        bn_eps=1e-3).eval()  # fmt: skip
    assert _params(ours) == _params(theirs)
    values = [v for k, v in theirs.state_dict().items()]
    state = {}
    for (key, mine), value in zip(ours.state_dict().items(), values, strict=True):
        state[key] = value.reshape(mine.shape)
    ours.load_state_dict(state)
    x = torch.randn(2, 3, 160, 192)
    with torch.no_grad():
        assert torch.allclose(ours.forward_features(x), theirs.features(x), atol=1e-5, rtol=1e-5)
        assert torch.allclose(ours(x), theirs(x), atol=1e-5, rtol=1e-5)


def test_reduced_tail_halves_c4_to_c5():
    full = create_model("mobilenet_v3_small_100")
    reduced = create_model("mobilenet_v3_small_100", reduced_tail=True)
    assert [b.out_chs for b in full.blocks[-3:]] == [96, 96, 96]
    assert [b.out_chs for b in reduced.blocks[-3:]] == [48, 48, 48]
    assert [b.exp_chs for b in reduced.blocks[-3:]] == [288, 288, 288]  # C4, the first expansion, is kept
    assert reduced.final_conv.conv.out_channels == 288 and reduced.num_features == 512
    assert full.blocks[:-3] == reduced.blocks[:-3]


def _narrowed_v3_small():
    """One block's expansion narrowed, and one residual group (stage 2: 40 channels, 3 blocks) narrowed."""
    base = create_model("mobilenet_v3_small_100", num_classes=10)
    specs = list(base.blocks)
    specs[1] = specs[1].replace(exp_chs=48)
    group = [i for i, s in enumerate(specs) if s.stage == specs[3].stage]
    for i in group:
        specs[i] = specs[i].replace(out_chs=32, **({"in_chs": 32} if i != group[0] else {}))
    after = group[-1] + 1
    specs[after] = specs[after].replace(in_chs=32)
    blocks = [s.to_dict() for s in specs]
    return create_model("mobilenet_v3_small_100", num_classes=10, blocks=blocks), base


def test_narrowed_spec_list_builds_saves_loads_and_exports(tmp_path):
    model, base = _narrowed_v3_small()
    model.eval()
    assert model.stages[1][0].expand.conv.out_channels == 48
    assert [b.project.conv.out_channels for b in model.stages[2]] == [32, 32, 32]
    assert all(b.use_residual for b in list(model.stages[2])[1:])
    assert profile(model, resolution=224).params < profile(base, resolution=224).params
    mobilenets.save_model(model, tmp_path / "narrow")
    loaded = mobilenets.load_model(tmp_path / "narrow")
    x = torch.randn(1, 3, 224, 224)
    with torch.no_grad():
        assert torch.equal(loaded(x), model(x))
    assert loaded.blocks == model.blocks
    pytest.importorskip("onnxruntime")
    from mobilenets.deploy import export

    report = export(loaded, tmp_path / "narrow.onnx", "onnx")
    assert report.max_rel_error <= 1e-4


def test_broken_spec_chains_are_refused():
    specs = [s.to_dict() for s in create_model("mobilenet_v2_035").blocks]
    specs[4]["out_chs"] += 8  # the next block still takes the old width
    with pytest.raises(ValueError, match="block 5 takes"):
        create_model("mobilenet_v2_035", blocks=specs)
    with pytest.raises(ValueError, match="unknown block spec fields"):
        BlockSpec.from_dict({"kind": "ir", "in_chs": 8, "out_chs": 8, "stage": 0, "expansion": 6})
    with pytest.raises(ValueError, match="kind must be one of"):
        BlockSpec(kind="mbconv", in_chs=8, out_chs=8, stage=0)


@pytest.mark.parametrize("name", FAMILIES)
def test_features_only(name):
    features = create_model(name, features_only=True).eval()
    x = torch.randn(1, 3, 224, 224)
    maps = features(x)
    assert len(maps) == len(features.feature_info) >= 3  # ShuffleNet: 3 stages
    for info, fmap in zip(features.feature_info, maps, strict=True):
        assert fmap.shape[1:] == (info.channels, 224 // info.reduction, 224 // info.reduction)
    some = create_model(name, features_only=True, out_indices=(1, -1))
    assert [f.reduction for f in some.feature_info] == [features.feature_info[1].reduction, 32]
    with pytest.raises(ValueError, match="out of range"):
        create_model(name, features_only=True, out_indices=(9,))


def test_features_only_matches_timm_levels():
    channels = [f.channels for f in create_model("mobilenet_v3_large_100", features_only=True).feature_info]
    assert channels == [16, 24, 40, 112, 960]  # timm's mobilenetv3_large_100 features_only
    dilated = create_model("mobilenet_v3_large_100", features_only=True, output_stride=16).feature_info
    assert [f.channels for f in dilated] == channels
    assert [f.reduction for f in dilated] == [2, 4, 8, 16, 16]


@pytest.mark.parametrize("name", FAMILIES)
def test_fx_tracing(name):
    model = create_model(name).eval()
    x = torch.randn(1, 3, 224, 224)
    traced = torch.fx.symbolic_trace(model)
    extractor = create_feature_extractor(model, return_nodes={"stages.1": "c2", "final_conv": "c5"})
    with torch.no_grad():
        assert torch.equal(traced(x), model(x))
        out = extractor(x)
    assert out["c2"].shape[1] == model.stage_features()[1].channels


def test_model_directories_from_before_the_rename_load(tmp_path):
    """Directories written when the last 1x1 conv was ``head`` load into ``final_conv``."""
    from safetensors.torch import load_file, save_file

    model = create_model("mobilenet_v2_035", num_classes=4).eval()
    mobilenets.save_model(model, tmp_path / "m")
    weights = tmp_path / "m" / "model.safetensors"
    old = {k.replace("final_conv.", "head.", 1): v for k, v in load_file(str(weights)).items()}
    assert any(k.startswith("head.") for k in old)
    save_file(old, str(weights))
    loaded = mobilenets.load_model(tmp_path / "m")
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(loaded(x), model(x))


def test_build_backbone_gives_the_tapped_maps_with_their_info():
    """The one builder every head uses: a registered name, its taps (feature_info or block outputs), and tails."""
    from mobilenets.models.backbone import build_backbone, c4_c5_taps

    features = build_backbone("mobilenet_v3_small_075", ["stages.1.0", "stages.2.0.dw", "final_conv"],
                              output_stride=16, reduced_tail="rf2")  # fmt: skip
    assert [(f.module, f.kind, f.reduction) for f in features.feature_info] == [
        ("stages.1.0", "block", 8), ("stages.2.0.dw", "depthwise", 16), ("final_conv", "stage", 16)]  # fmt: skip
    maps = features(torch.randn(1, 3, 96, 128))
    assert [(m.shape[1], m.shape[-1]) for m in maps] == [
        (f.channels, 128 // f.reduction) for f in features.feature_info
    ]
    assert isinstance(features.network.classifier, torch.nn.Identity)
    c4 = build_backbone("mobilenet_v3_large_100", c4_c5_taps, reduced_tail="c4")
    assert [f.channels for f in c4.feature_info] == [672, 480]  # P-V3 Table 6 "+": C4 kept, C5 halved
    with pytest.raises(ValueError, match="C4 reduced tail halves MobileNetV3"):
        build_backbone("mobilenet_v2_100", c4_c5_taps, reduced_tail="c4")
    with pytest.raises(ValueError, match=r"needs a MobileNetV1, V2 or V3 backbone \(mobilenet_v1_\*, mobilenet_v2_\*"):
        build_backbone("shufflenet_v1_g3_100", ["stages.0"])
    with pytest.raises(ValueError, match="unknown feature tap 'stages.9'"):
        build_backbone("mobilenet_v2_100", ["stages.9"])
