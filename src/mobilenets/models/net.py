"""One network class for every family: stem -> stages of blocks -> final conv -> pool -> classifier."""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass

import torch
from torch import nn

from ..layers import ConvNormAct, InvertedResidual, NormConfig, make_activation
from .signature import Signature, classifier_signature
from .spec import BlockSpec, apply_output_stride, build_block, check_chain

MIN_INPUT_SIZE = 32  # with the paper's stride-2 stem; a stride-1 stem halves it
MAX_WIDTH_MULT = 10.0  # 10x the paper's widths is ~100x its weights; beyond that it is a typo, not a model


def check_width(width_mult: float, name: str = "width_mult (alpha)", paper: str = "") -> None:
    """A finite width multiplier in (0, MAX_WIDTH_MULT]: checked before any layer is allocated."""
    if isinstance(width_mult, bool) or not isinstance(width_mult, numbers.Real):
        raise ValueError(f"{name} must be a number, got {width_mult!r}")
    if not math.isfinite(width_mult) or not 0 < width_mult <= MAX_WIDTH_MULT:
        hint = f"; the paper uses {paper}" if paper else ""
        raise ValueError(f"{name} must be in (0, {MAX_WIDTH_MULT:g}], got {width_mult}{hint}")


def check_common(num_classes: int, in_chans: int, drop_rate: float) -> None:
    """The options every builder takes, with the valid range in the message."""
    for key, value, low in (("num_classes", num_classes, 0), ("in_chans", in_chans, 1)):
        if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < low:
            what = ">= 0 (0 removes the classifier)" if low == 0 else ">= 1 (1: grayscale, 3: RGB)"
            raise ValueError(f"{key} must be an integer {what}, got {value!r}")
    if isinstance(drop_rate, bool) or not isinstance(drop_rate, numbers.Real) or not 0 <= drop_rate < 1:
        raise ValueError(f"drop_rate must be a number in [0, 1), got {drop_rate!r}")


def _check_stem_stride(stem_stride: int) -> None:
    """``stem_stride=1`` is an opt-in adaptation for small inputs (28x28 Fashion-MNIST, 32x32 CIFAR)."""
    if stem_stride not in (1, 2):
        raise ValueError(
            f"stem_stride must be 2 (the paper's network) or 1 (for inputs under 64x64), got {stem_stride}"
        )


def _tracing() -> bool:
    """Shape checks are Python control flow on tensor sizes: skip them under fx, export and compile."""
    return torch.fx._symbolic_trace.is_fx_symbolic_tracing() or torch.compiler.is_compiling() or torch.jit.is_tracing()


def check_image_batch(x: torch.Tensor, name: str, in_chans: int, min_size: int) -> None:
    """One-line errors for a batch a model cannot take: not 4-D, other channels, too small (not while tracing)."""
    if _tracing():
        return
    if x.dim() != 4:
        raise ValueError(f"{name} expects a 4-D batch (N, C, H, W), got shape {tuple(x.shape)}")
    if x.shape[1] != in_chans:
        raise ValueError(f"{name} was built for {in_chans} input channels but got {x.shape[1]}; "
                         f"create it with in_chans={x.shape[1]}")  # fmt: skip
    if min(x.shape[-2:]) < min_size:
        raise ValueError(f"{name} needs inputs of at least {min_size}x{min_size}, got {x.shape[-2]}x{x.shape[-1]}; "
                         "resize or pad the images")  # fmt: skip


@dataclass(frozen=True)
class FeatureInfo:
    """A feature map a detection or segmentation head can tap.

    ``module`` names the module whose output it is; names ending in ``.expand``
    are the expansion-layer output of an inverted residual (SSDLite's C4),
    names ending in ``.dw`` the depthwise output (LR-ASPP's OS8 skip).
    """

    module: str
    channels: int
    reduction: int
    kind: str = "stage"  # "stage": a stage's last block (or the final conv); "expansion"; "depthwise"; "block"
    dilation: int = 1  # of the convs that made it (> 1 past an output stride below 32)


class Network(nn.Module):
    """The generic network every registered model is an instance of.

    ``blocks`` is the resolved spec list (``models/spec.py``); blocks of one ``stage`` form
    ``stages.{stage}``. ``output_stride`` 16 or 8 turns the later strides into dilation.
    ``final_conv`` is the last 1x1 conv (``nn.Identity`` for V1 and ShuffleNet); ``pre_logits``
    is MobileNetV3's efficient last stage (a 1x1 conv with bias and no BN on the pooled features).
    """

    def __init__(
        self,
        *,
        family: str,
        stem: nn.Module,
        stem_reduction: int,
        blocks: list[BlockSpec],
        norm: NormConfig,
        padding: str,
        num_classes: int,
        in_chans: int,
        drop_rate: float,
        final_conv_chs: int = 0,
        final_conv_act: str = "relu6",
        pre_logits_channels: int = 0,
        pre_logits_act: str = "hswish",
        min_input_size: int = MIN_INPUT_SIZE,
        output_stride: int = 32,
        dilate_first: bool = False,
        options: dict | None = None,
    ):
        super().__init__()
        check_common(num_classes, in_chans, drop_rate)
        stem_chs = stem[0].conv.out_channels if isinstance(stem, nn.Sequential) else stem.conv.out_channels
        check_chain(blocks, stem_chs)
        self.in_chans = in_chans
        self.num_classes = num_classes
        self.family = family
        self.options = dict(options or {})
        self.blocks = list(blocks)  # as resolved from the table (or edited): what a width plan changes
        self.output_stride = output_stride
        self.built_blocks = apply_output_stride(self.blocks, output_stride, stem_reduction, dilate_first)
        self.name = family  # create_model() sets the registered name
        self.labels: list[str] | None = None  # class names, when known (set by training, load_model, converters)
        self.preprocessing = None  # the input contract of the weights (mobilenets.preprocessing.Preprocessing)
        self.metadata: dict = {}

        self.stem = stem
        stages: list[list[nn.Module]] = []
        for spec in self.built_blocks:
            if spec.stage == len(stages):
                stages.append([])
            stages[-1].append(build_block(spec, norm, padding))
        self.stages = nn.Sequential(*(nn.Sequential(*modules) for modules in stages))
        last_chs = blocks[-1].out_chs
        self.final_conv = (
            ConvNormAct(last_chs, final_conv_chs, 1, act=final_conv_act, norm=norm) if final_conv_chs else nn.Identity()
        )
        final_chs = final_conv_chs or last_chs
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.flatten = nn.Flatten(1)
        if pre_logits_channels:
            self.pre_logits = nn.Sequential(nn.Linear(final_chs, pre_logits_channels), make_activation(pre_logits_act))
            self.num_features = pre_logits_channels
        else:
            self.pre_logits = nn.Identity()
            self.num_features = final_chs
        self.dropout = nn.Dropout(drop_rate)
        self.classifier = nn.Linear(self.num_features, num_classes) if num_classes else nn.Identity()

        self.feature_info = self._feature_info(stem_reduction, final_chs)
        self.min_input_size = min_input_size
        self._init_weights()

    def _feature_info(self, stem_reduction: int, final_chs: int) -> list[FeatureInfo]:
        infos = []
        self.block_info: dict[str, FeatureInfo] = {}  # each block's output (``kind="block"``), a tap too
        reduction = stem_reduction
        index_in_stage: dict[int, int] = {}
        for i, spec in enumerate(self.built_blocks):
            j = index_in_stage[spec.stage] = index_in_stage.get(spec.stage, -1) + 1
            name = f"stages.{spec.stage}.{j}"
            block = self.stages[spec.stage][j]
            if isinstance(block, InvertedResidual) and block.has_expand:
                # Expansion outputs sit at the block's input resolution.
                infos.append(FeatureInfo(f"{name}.expand", spec.exp_chs, reduction, "expansion", spec.dilation))
            reduction *= spec.stride
            self.block_info[name] = FeatureInfo(name, spec.out_chs, reduction, "block", spec.dilation)
            if isinstance(block, InvertedResidual):
                infos.append(FeatureInfo(f"{name}.dw", spec.exp_chs, reduction, "depthwise", spec.dilation))
            if i + 1 == len(self.built_blocks) or self.built_blocks[i + 1].stage != spec.stage:
                infos.append(FeatureInfo(f"stages.{spec.stage}", spec.out_chs, reduction, "stage", spec.dilation))
        if not isinstance(self.final_conv, nn.Identity):
            infos.append(FeatureInfo("final_conv", final_chs, reduction, "stage", self.built_blocks[-1].dilation))
        return infos

    def feature(self, tap: str) -> FeatureInfo:
        """What the ``forward_intermediates`` tap ``tap`` gives: a ``feature_info`` entry or a block's output."""
        info = next((f for f in self.feature_info if f.module == tap), None) or self.block_info.get(tap)
        if info is None:
            valid = sorted({f.module for f in self.feature_info} | set(self.block_info))
            raise ValueError(f"unknown feature tap {tap!r}; valid: {valid}")
        return info

    def stage_features(self) -> list[FeatureInfo]:
        """The end of each stage (and the final conv), like timm's ``feature_info``."""
        return [f for f in self.feature_info if f.kind == "stage"]

    def level_features(self) -> list[FeatureInfo]:
        """The last stage feature at each reduction level (timm's ``features_only`` set).

        Under an output stride below 32, a dilation change counts as the level change that the
        removed stride was, so the network keeps its levels, each with its true reduction.
        """
        stages = self.stage_features()
        key = [(f.reduction, f.dilation) for f in stages]
        return [f for i, f in enumerate(stages) if i + 1 == len(stages) or key[i + 1] != key[i]]

    def _init_weights(self):
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, 0, 0.01)
                nn.init.zeros_(m.bias)

    def check_input(self, x: torch.Tensor) -> None:
        """Clear errors for inputs the network cannot take (skipped while tracing or compiling)."""
        check_image_batch(x, self.name, self.in_chans, self.min_input_size)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """The last feature map before pooling."""
        self.check_input(x)
        return self.final_conv(self.stages(self.stem(x)))

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        x = self.pre_logits(self.flatten(self.pool(x)))
        return x if pre_logits else self.classifier(self.dropout(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))

    def forward_intermediates(self, x: torch.Tensor, taps: list[str] | None = None) -> list[torch.Tensor]:
        """Feature maps named in ``taps`` (``FeatureInfo.module`` names), in the order asked.

        Defaults to every stage end. A block's output (``stages.2.0``) can be tapped too
        (torchvision's LR-ASPP skip is the first block of the OS8 stage). Stops after the last requested tap.
        """
        known = {f.module for f in self.feature_info} | {
            f"stages.{i}.{j}" for i, stage in enumerate(self.stages) for j in range(len(stage))
        }
        taps = [f.module for f in self.stage_features()] if taps is None else list(taps)
        unknown = [t for t in taps if t not in known]
        if unknown:
            raise ValueError(f"unknown feature taps {unknown}; valid: {sorted(known)}")
        wanted = set(taps)
        found: dict[str, torch.Tensor] = {}
        self.check_input(x)
        x = self.stem(x)
        for i, stage in enumerate(self.stages):
            for j, block in enumerate(stage):
                name = f"stages.{i}.{j}"
                if f"{name}.expand" in wanted or f"{name}.dw" in wanted:
                    x, inner = block.forward_with_taps(x)
                    found[f"{name}.expand"], found[f"{name}.dw"] = inner
                else:
                    x = block(x)
                found[name] = x
            found[f"stages.{i}"] = x
            if wanted <= found.keys():
                break
        if "final_conv" in wanted:
            found["final_conv"] = self.final_conv(x)
        return [found[t] for t in taps]

    def reset_classifier(self, num_classes: int) -> None:
        """Replace the classifier (fine-tuning on a new label set)."""
        check_common(num_classes, self.in_chans, 0.0)
        self.num_classes = num_classes
        self.classifier = nn.Linear(self.num_features, num_classes) if num_classes else nn.Identity()
        if num_classes:
            nn.init.normal_(self.classifier.weight, 0, 0.01)
            nn.init.zeros_(self.classifier.bias)

    @property
    def config(self) -> dict:
        """Everything needed to rebuild this model: family builder and its options."""
        return {"name": self.name, "family": self.family, "options": dict(self.options)}

    @property
    def signature(self) -> Signature:
        """The input image batch and the logits (or pooled features when the classifier is removed)."""
        return classifier_signature(self.in_chans, self.num_classes)


MobileNet = Network  # the name before ShuffleNet shared the class; kept for existing code


class FeatureNetwork(nn.Module):
    """A backbone that returns feature maps instead of logits (``create_model(..., features_only=True)``)."""

    def __init__(self, network: Network, out_indices: tuple[int, ...] | None = None, taps: list[str] | None = None):
        super().__init__()
        levels = network.level_features()
        if taps is None:
            out_indices = tuple(range(len(levels))) if out_indices is None else tuple(out_indices)
            bad = [i for i in out_indices if not -len(levels) <= i < len(levels)]
            if bad:
                raise ValueError(f"out_indices {bad} out of range: {network.name} has {len(levels)} feature levels")
            taps = [levels[i].module for i in out_indices]
        self.feature_info = [network.feature(t) for t in taps]
        self.taps = list(taps)
        self.network = network
        # Drop what comes after the last tap, so it is neither computed nor counted.
        network.pool, network.pre_logits, network.dropout, network.classifier = (
            nn.Identity(), nn.Identity(), nn.Identity(), nn.Identity(),
        )  # fmt: skip
        if "final_conv" not in self.taps:
            network.final_conv = nn.Identity()

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        return self.network.forward_intermediates(x, self.taps)


def upgrade_state_dict(state: dict) -> dict:
    """Keys of model directories written before the last 1x1 conv was named ``final_conv`` (it was ``head``)."""
    return {("final_conv." + k[5:] if k.startswith("head.") else k): v for k, v in state.items()}
