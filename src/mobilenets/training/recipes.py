"""Named training recipes: the papers' ImageNet recipes and a short-run recipe for small data."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Recipe:
    """Hyper-parameters of a run; ``lr`` is for ``batch_size`` and scales linearly with the batch.

    ``schedule``: "exp" (x ``decay_rate`` every ``decay_epochs``), "linear" (to 0) or "cosine" (to 0),
    after ``warmup_epochs`` of linear warm-up. ``no_decay``: parameters without weight decay
    ("bn_bias": BN and biases; "bn_bias_dw": also depthwise kernels, as the V3 paper).
    """

    name: str
    optimizer: str = "sgd"  # sgd | rmsprop | adamw
    lr: float = 0.1
    batch_size: int = 256
    epochs: int = 10
    momentum: float = 0.9
    nesterov: bool = False
    rmsprop_alpha: float = 0.9
    eps: float = 1e-8
    weight_decay: float = 0.0
    no_decay: str = "bn_bias"
    schedule: str = "cosine"
    warmup_epochs: float = 0.0
    decay_epochs: float = 2.4
    decay_rate: float = 0.97
    label_smoothing: float = 0.0
    drop_rate: float | None = None  # None: the model's default
    ema_decay: float = 0.0  # 0 disables the EMA of weights
    augment: dict = field(default_factory=dict)

    def __post_init__(self):
        choices = {
            "optimizer": ("sgd", "rmsprop", "adamw"),
            "schedule": ("exp", "linear", "cosine"),
            "no_decay": ("none", "bn_bias", "bn_bias_dw"),
        }
        for key, valid in choices.items():
            if getattr(self, key) not in valid:
                raise ValueError(f"recipe {key} must be one of {', '.join(valid)}, got {getattr(self, key)!r}")
        if self.epochs < 1 or self.batch_size < 1 or self.lr <= 0:
            raise ValueError(
                f"recipe needs epochs >= 1, batch_size >= 1 and lr > 0, got {self.epochs}, {self.batch_size}, {self.lr}"
            )
        if not 0 <= self.ema_decay < 1 or not 0 <= self.label_smoothing < 1:
            raise ValueError("ema_decay and label_smoothing must be in [0, 1)")

    def replace(self, **overrides) -> Recipe:
        """A copy with the given fields changed (``None`` values are ignored)."""
        overrides = {k: v for k, v in overrides.items() if v is not None}
        unknown = sorted(set(overrides) - {f.name for f in dataclasses.fields(self)})
        if unknown:
            raise ValueError(f"unknown recipe fields {unknown}; known: {[f.name for f in dataclasses.fields(self)]}")
        return dataclasses.replace(self, **overrides)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


SMALL_IMAGE_AUGMENT = {"crop_pad": 2, "hflip": True}

RECIPES: dict[str, Recipe] = {
    # P-V3 Section 6.1: RMSProp, momentum 0.9, TF epsilon 1e-3 inside the square root (torch
    # adds eps outside it, so sqrt(1e-3) ~ 0.0316 behaves alike once the averages settle),
    # lr 0.1 at batch 4096 (timm's reading: 0.016 per 256 with decay 0.97 every 2.4 epochs),
    # 3 warm-up epochs, wd 1e-5 not on BN, biases and depthwise kernels, dropout 0.2,
    # label smoothing 0.1, EMA 0.9999.
    "paper": Recipe(
        "paper",
        optimizer="rmsprop",
        lr=0.016,
        batch_size=256,
        epochs=350,
        momentum=0.9,
        eps=0.0316,
        weight_decay=1e-5,
        no_decay="bn_bias_dw",
        schedule="exp",
        warmup_epochs=3,
        decay_epochs=2.4,
        decay_rate=0.97,
        label_smoothing=0.1,
        drop_rate=0.2,
        ema_decay=0.9999,
    ),
    # P-SN Section 4: SGD momentum 0.9, lr 0.5 at batch 1024 decayed linearly to 0 over 3e5
    # iterations (~240 epochs), weight decay 4e-5.
    "paper_shufflenet": Recipe(
        "paper_shufflenet",
        optimizer="sgd",
        lr=0.125,
        batch_size=256,
        epochs=240,
        weight_decay=4e-5,
        no_decay="none",
        schedule="linear",
    ),
    # Short runs on small data (`make run`): Nesterov SGD, a short warm-up then cosine to 0. No label
    # smoothing, dropout or augmentation: a 3-epoch Fashion-MNIST run underfits (train < test
    # accuracy), and dropping them took V1 0.25 from 88.95% to 90.76% in 3 epochs.
    "fast": Recipe(
        "fast",
        optimizer="sgd",
        lr=0.1,
        batch_size=64,
        epochs=8,
        nesterov=True,
        weight_decay=5e-5,
        schedule="cosine",
        warmup_epochs=0.3,
        label_smoothing=0.0,
        drop_rate=0.0,
    ),
    # The documented longer run for Fashion-MNIST: regularized (label smoothing, dropout, crop, flip,
    # random erasing) with an EMA of weights, as longer runs overfit rather than underfit.
    "long": Recipe(
        "long",
        optimizer="sgd",
        lr=0.2,
        batch_size=128,
        epochs=60,
        nesterov=True,
        weight_decay=5e-5,
        schedule="cosine",
        warmup_epochs=1,
        label_smoothing=0.1,
        drop_rate=0.2,
        ema_decay=0.999,
        augment={**SMALL_IMAGE_AUGMENT, "erase": 0.5},
    ),
    # Detection (SSDLite) as heads.md §4.3 measured it on Fashion-MNIST canvases (torchvision's SSDLite
    # reference: SGD 0.9, cosine, wd 4e-5): lr 0.04 per 32, ~200 warm-up steps, flips only, no EMA.
    "detection": Recipe(
        "detection",
        optimizer="sgd",
        lr=0.04,
        batch_size=32,
        epochs=5,
        weight_decay=4e-5,
        schedule="cosine",
        warmup_epochs=0.64,
    ),
    # Segmentation (LR-ASPP) likewise: lr 0.05 per 32 (heads.md §4.3; poly 0.9 there, cosine here).
    "segmentation": Recipe(
        "segmentation",
        optimizer="sgd",
        lr=0.05,
        batch_size=32,
        epochs=4,
        weight_decay=4e-5,
        schedule="cosine",
        warmup_epochs=0.3,
    ),
}
# The main job (`make run`): `fast` at batch 128 (1.7x the images/s of batch 64 on 2 cores) for 12
# epochs, with horizontal flips: without them 12 epochs overfit (97% train, 91.9-92.5% test).
RECIPES["main"] = RECIPES["fast"].replace(name="main", batch_size=128, lr=0.2, epochs=12, augment={"hflip": True})
# Pretraining a detector's or LR-ASPP's backbone on Fashion-MNIST (heads.md §4.3): each item pasted at a
# random 24-64 px on a noise frame, the sizes it has on the canvases, with label smoothing 0.1. At 64x64
# input, 2 epochs, V3-Small+ SSDLite then learned faster than from full-frame items (docs/training-record.md).
RECIPES["backbone"] = RECIPES["main"].replace(name="backbone", epochs=2, label_smoothing=0.1,
                                              augment={"hflip": True, "paste": (24, 64)})  # fmt: skip


def get_recipe(name: str, family: str = "") -> Recipe:
    """A named recipe; ``paper`` means ShuffleNet's own recipe for ShuffleNet models."""
    if name == "paper" and family == "shufflenet_v1":
        name = "paper_shufflenet"
    if name not in RECIPES:
        raise ValueError(f"unknown recipe {name!r}; choose one of {', '.join(RECIPES)}")
    return RECIPES[name]
