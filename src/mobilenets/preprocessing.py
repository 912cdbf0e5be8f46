"""The input contract of a set of weights: size, resize/crop, channel order, value range, mean/std."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
INCEPTION_MEAN = (0.5, 0.5, 0.5)  # TF/Keras weights: RGB in [-1, 1]
INCEPTION_STD = (0.5, 0.5, 0.5)
MAX_INPUT_SIDE = 4096  # Cityscapes' 1024x2048 fits; a larger side is a typo that would allocate gigabytes


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
        if len(self.input_size) != 2 or min(self.input_size) < 1 or self.resize < 0:
            raise ValueError(f"input_size must be two sizes >= 1 (H, W) and resize >= 0, got {self.input_size} "
                             f"and {self.resize}")  # fmt: skip
        if max(self.input_size) > MAX_INPUT_SIDE or self.resize > 2 * MAX_INPUT_SIDE:
            raise ValueError(f"input_size must be at most {MAX_INPUT_SIDE} per side and resize at most "
                             f"{2 * MAX_INPUT_SIDE}, got {list(self.input_size)} and {self.resize}")  # fmt: skip
        if any(float(v) == 0 for v in self.std):
            raise ValueError(f"std must not be 0, got {self.std}")
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
        if not isinstance(data, dict):
            raise ValueError(f"preprocessing must be a mapping of its fields, got {data!r}")
        known = set(cls.__dataclass_fields__)
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown preprocessing fields {unknown}; known: {sorted(known)}")
        try:
            return cls(**data)
        except TypeError as err:  # a field of the wrong type in a config file: bad input, not our bug
            raise ValueError(f"invalid preprocessing {data}: {err}") from None

    def transform(self):
        """A torchvision transform from a PIL image (any mode, see ``to_model_mode``) to the model's input tensor."""
        import torch
        from torchvision.transforms import v2 as T

        modes = {"bilinear": T.InterpolationMode.BILINEAR, "bicubic": T.InterpolationMode.BICUBIC,
                 "nearest": T.InterpolationMode.NEAREST}  # fmt: skip
        steps = [ToMode("L" if self.channel_order == "L" else "RGB"), T.PILToTensor()]
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


# --- reading images of any PIL mode ---------------------------------------------------------

# Modes Pillow converts to RGB correctly; others need scaling (16/32-bit, float) or compositing (alpha).
_COLOUR_MODES = ("RGB", "RGBX", "CMYK", "YCbCr", "LAB", "HSV")
_ALPHA_MODES = ("RGBA", "RGBa", "LA", "La", "PA")
MAX_16BIT = 65535


def to_model_mode(image, mode: str):
    """``image`` (a PIL image of any mode) as 8-bit ``mode`` ("L" or "RGB"), or a ValueError saying why not.

    Pillow's ``convert`` clips wider pixels at 255, so a 16-bit PNG (mode I;16) would read as
    white: 16-bit modes (I;16*, and I holding 0-65535) are scaled to 0-255, F (float) images
    holding [0, 1] are scaled by 255. Transparent pixels are composited over white, as a viewer
    shows them. Colour becomes grayscale by ITU-R 601-2 luma (as torchvision's Grayscale).
    """
    import numpy as np
    from PIL import Image

    if mode not in ("L", "RGB"):
        raise ValueError(f"mode must be L or RGB, got {mode!r}")
    source = image.mode
    if source.startswith("I;16") or source == "I":
        pixels = np.asarray(image).astype(np.int64)
        low, high = (int(pixels.min()), int(pixels.max())) if pixels.size else (0, 0)
        if low < 0 or high > MAX_16BIT:
            raise ValueError(f"a 32-bit integer image with values in [{low}, {high}]; only 0-{MAX_16BIT} (16-bit) "
                             "is read: save it as an 8- or 16-bit image")  # fmt: skip
        image = Image.fromarray(np.rint(pixels * (255 / MAX_16BIT)).astype(np.uint8))
    elif source == "F":
        pixels = np.asarray(image, dtype=np.float64)
        if pixels.size and not (np.isfinite(pixels).all() and pixels.min() >= 0 and pixels.max() <= 1):
            raise ValueError(f"a floating-point image with values in [{pixels.min():g}, {pixels.max():g}]; "
                             "only [0, 1] is read: save it as an 8- or 16-bit image")  # fmt: skip
        image = Image.fromarray(np.rint(pixels * 255).astype(np.uint8))
    elif source == "1":
        image = image.convert("L")
    elif source == "P":
        image = image.convert("RGBA" if "transparency" in image.info else "RGB")
    elif source not in ("L", *_COLOUR_MODES, *_ALPHA_MODES):
        raise ValueError(f"unsupported image mode {source!r}; save it as 8-bit RGB or grayscale")
    if image.mode in _ALPHA_MODES:
        rgba = image.convert("RGBA")
        image = Image.alpha_composite(Image.new("RGBA", rgba.size, (255, 255, 255, 255)), rgba)
    if image.mode != "L":
        image = image.convert("RGB")  # CMYK, YCbCr, LAB, HSV, RGBX and composited RGBA
    return image if image.mode == mode else image.convert(mode)


class ToMode:
    """A transform step: ``to_model_mode(image, mode)`` (a class, so DataLoader workers can pickle it)."""

    def __init__(self, mode: str):
        self.mode = mode

    def __call__(self, image):
        return to_model_mode(image, self.mode)

    def __repr__(self) -> str:
        return f"ToMode({self.mode!r})"


def open_image(path: str | Path):
    """The image at ``path``, decoded in its own mode (torchvision's loader would convert it to RGB first)."""
    from PIL import Image

    with Image.open(path) as image:
        image.load()
        return image


def read_image(path: str | Path, mode: str):
    """The image at ``path`` as a uint8 C x H x W tensor in ``mode`` ("L" or "RGB"): the one reader of images.

    ``predict`` (``open_image`` then ``to_model_mode``), image folders (``open_image`` then ``ToMode``),
    COCO and VOC data read through it, so 16-bit and transparent images look the same in training,
    evaluation and prediction. OSError or ValueError (see ``to_model_mode``) when it cannot be read.
    """
    from torchvision.transforms.v2.functional import pil_to_tensor

    return pil_to_tensor(to_model_mode(open_image(path), mode))


def read_user_image(path: Path):
    """The image a user gave (open_image), or one line naming it and why it cannot be read."""
    from PIL import UnidentifiedImageError

    try:
        return open_image(path)
    except FileNotFoundError:
        raise FileNotFoundError(f"image {path} does not exist") from None
    except (UnidentifiedImageError, OSError, ValueError) as err:
        raise ValueError(f"cannot read image {path}: {err}") from None


def read_converted(path: Path, convert):
    """``convert(image)`` of ``read_user_image(path)``; a conversion's refusal names the file too."""
    try:
        # The conversion takes any PIL mode (16-bit, palette, alpha, CMYK...) or refuses it (ValueError).
        return convert(read_user_image(path))
    except ValueError as err:
        if str(err).startswith("cannot read image"):
            raise
        raise ValueError(f"cannot read image {path}: {err}") from None
