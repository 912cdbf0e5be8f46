"""The input contract of a set of weights: size, resize/crop, channel order, value range, mean/std."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
INCEPTION_MEAN = (0.5, 0.5, 0.5)  # TF/Keras weights: RGB in [-1, 1]
INCEPTION_STD = (0.5, 0.5, 0.5)


@dataclass(frozen=True)
class Preprocessing:
    """How images must be prepared for a model's weights.

    Pixels are read as ``channel_order`` in ``[0, value_range]``, resized so the
    shorter side is ``resize`` (skipped when 0), center-cropped to ``input_size``
    (H, W), then normalized with ``mean`` and ``std`` (in the same value range).
    Grayscale models (one input channel) take the luminance.
    """

    input_size: tuple[int, int] = (224, 224)
    resize: int = 256
    interpolation: str = "bilinear"
    channel_order: str = "RGB"
    value_range: float = 1.0  # 1.0: pixels in [0, 1]; 255.0: raw 0-255 (megvii ShuffleNet)
    mean: tuple[float, ...] = IMAGENET_MEAN
    std: tuple[float, ...] = IMAGENET_STD
    extra: dict = field(default_factory=dict)

    def __post_init__(self):
        if self.channel_order not in ("RGB", "BGR", "L"):
            raise ValueError(f"channel_order must be RGB, BGR or L, got {self.channel_order!r}")
        if self.interpolation not in ("bilinear", "bicubic", "nearest"):
            raise ValueError(f"interpolation must be bilinear, bicubic or nearest, got {self.interpolation!r}")
        if len(self.mean) != len(self.std):
            raise ValueError(f"mean and std need the same length, got {self.mean} and {self.std}")
        object.__setattr__(self, "input_size", tuple(int(v) for v in self.input_size))
        object.__setattr__(self, "mean", tuple(float(v) for v in self.mean))
        object.__setattr__(self, "std", tuple(float(v) for v in self.std))

    @property
    def in_chans(self) -> int:
        return len(self.mean)

    def to_dict(self) -> dict:
        data = asdict(self)
        data["input_size"] = list(self.input_size)
        data["mean"], data["std"] = list(self.mean), list(self.std)
        return data

    @classmethod
    def from_dict(cls, data: dict) -> Preprocessing:
        known = set(cls.__dataclass_fields__)
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown preprocessing fields {unknown}; known: {sorted(known)}")
        return cls(**data)

    def transform(self):
        """A torchvision transform from a PIL image to the model's input tensor."""
        import torch
        from torchvision.transforms import v2 as T

        modes = {"bilinear": T.InterpolationMode.BILINEAR, "bicubic": T.InterpolationMode.BICUBIC,
                 "nearest": T.InterpolationMode.NEAREST}  # fmt: skip
        steps = [T.Grayscale(1) if self.channel_order == "L" else T.RGB(), T.PILToTensor()]
        if self.resize:
            steps.append(T.Resize(self.resize, interpolation=modes[self.interpolation], antialias=True))
        steps += [T.CenterCrop(self.input_size), T.ToDtype(torch.float32, scale=True)]
        if self.value_range != 1.0:
            steps.append(T.Lambda(lambda x: x * self.value_range))
        if self.channel_order == "BGR":
            steps.append(T.Lambda(lambda x: x.flip(0)))
        steps.append(T.Normalize(self.mean, self.std))
        return T.Compose(steps)


def default_preprocessing(in_chans: int = 3, resolution: int = 224) -> Preprocessing:
    """ImageNet statistics at ``resolution`` with the usual 0.875 center crop."""
    if in_chans == 1:
        return Preprocessing((resolution, resolution), round(resolution / 0.875), channel_order="L",
                             mean=(0.5,), std=(0.5,))  # fmt: skip
    return Preprocessing((resolution, resolution), round(resolution / 0.875))
