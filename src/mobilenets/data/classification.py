"""Classification data: IDX files (Fashion-MNIST, MNIST, KMNIST) and ImageFolder trees, with batch augmentation."""

from __future__ import annotations

import gzip
import hashlib
import logging
import struct
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F

from ..preprocessing import Preprocessing, ToMode, open_image

log = logging.getLogger(__name__)

FASHION_MNIST_DIR = Path("/usr/share/datasets/fashion-mnist")
FASHION_MNIST_LABELS = [
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
]
FASHION_MNIST_MEAN, FASHION_MNIST_STD = (0.2860,), (0.3530,)
INSTALL_HINT = "install it with `sudo apt-get install dataset-fashion-mnist` (Debian/Ubuntu)"

IDX_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
# Official MD5s of the .gz files (Fashion-MNIST README). Debian recompresses them, so we also
# accept the MD5 of the decompressed IDX bytes of the same data (taken from Debian's package).
FASHION_MNIST_MD5 = {
    "train-images-idx3-ubyte": ("8d4fb7e6c68d591d4c3dfef9ec88bf0d", "f4a8712d7a061bf5bd6d2ca38dc4d50a"),
    "train-labels-idx1-ubyte": ("25c81989df183df01b3e8a0aad5dffbe", "9018921c3c673c538a1fc5bad174d6f9"),
    "t10k-images-idx3-ubyte": ("bef4ecab320f06d8554ea6380940ec79", "8181f5470baa50b63fa0f6fddb340f0a"),
    "t10k-labels-idx1-ubyte": ("bb300cfdad3c16e7a12a480ee83cd310", "15d484375f8d13e6eb1aabb0c3f46965"),
}
BUILTIN = ("fashion-mnist", "fashion_mnist", "fmnist")


@dataclass
class Split:
    """One split of a dataset.

    ``images`` (uint8 N x C x H x W, in memory) for IDX data, else ``dataset`` (an ImageFolder
    whose samples are already transformed float tensors).
    """

    name: str
    labels: list[str]
    targets: torch.Tensor
    images: torch.Tensor | None = None
    dataset: object | None = None
    source: str = ""

    def __len__(self) -> int:
        return len(self.targets)


@dataclass
class DataSpec:
    """The splits and the input contract the model is trained for.

    ``val`` chooses (the best epoch, anything decided during training); ``test``, when the data has one
    apart from ``val``, is looked at once, for the final model. Loaded with ``carve_val``, data without a
    validation split (Fashion-MNIST, an ImageFolder with only test/) gets one carved from its training images.
    """

    train: Split
    val: Split
    preprocessing: Preprocessing
    kind: str  # "idx" or "folder"
    augment: dict = field(default_factory=dict)
    test: Split | None = None

    @property
    def labels(self) -> list[str]:
        return self.train.labels


# --- IDX -------------------------------------------------------------------------------


def find_idx(directory: Path, stem: str) -> Path | None:
    """The IDX file ``stem`` in ``directory``: plain, gzipped, or with a dot for the last dash."""
    for name in (stem, stem + ".gz", stem.replace("-idx", ".idx")):
        if (directory / name).is_file():
            return directory / name
    return None


def _read_bytes(path: Path) -> tuple[bytes, str]:
    raw = path.read_bytes()
    file_md5 = hashlib.md5(raw).hexdigest()
    if path.suffix == ".gz":
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError) as err:
            raise ValueError(
                f"{path} is not a valid gzip file ({err}); it may be truncated: reinstall or re-download it"
            ) from None
    return raw, file_md5


def read_idx(path: Path) -> torch.Tensor:
    """An IDX file (optionally gzipped) as a uint8 tensor, with structural checks."""
    raw, _ = _read_bytes(path)
    return _parse_idx(raw, path)


def _parse_idx(raw: bytes, path: Path) -> torch.Tensor:
    if len(raw) < 8 or raw[0] != 0 or raw[1] != 0 or raw[2] != 0x08:
        raise ValueError(f"{path} is not an unsigned-byte IDX file (bad magic number)")
    ndim = raw[3]
    dims = struct.unpack(f">{ndim}I", raw[4 : 4 + 4 * ndim])
    expected = 4 + 4 * ndim + int(torch.tensor(dims).prod())
    if len(raw) != expected:
        raise ValueError(f"{path} holds {len(raw)} bytes but its header {dims} needs {expected}; it is truncated")
    return torch.frombuffer(bytearray(raw[4 + 4 * ndim :]), dtype=torch.uint8).reshape(dims)


def _is_builtin(directory: Path) -> bool:
    """Whether ``directory`` is the Fashion-MNIST package's, however it is spelled (relative, via a link)."""
    return directory.resolve() == FASHION_MNIST_DIR.resolve()


def load_idx_dir(directory: str | Path, *, verify: bool = True) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """The four standard IDX files of a directory: {"train": (images, labels), "test": (...)}."""
    directory = Path(directory)
    check_md5 = verify and _is_builtin(directory)
    splits = {}
    for split, stems in IDX_FILES.items():
        tensors = []
        for stem in stems:
            path = find_idx(directory, stem)
            if path is None:
                raise FileNotFoundError(
                    f"{directory} has no {stem}[.gz]; an IDX directory holds the four files "
                    f"{', '.join(s for pair in IDX_FILES.values() for s in pair)}"
                )
            raw, file_md5 = _read_bytes(path)
            if check_md5 and stem in FASHION_MNIST_MD5:
                content_md5 = hashlib.md5(raw).hexdigest()
                if file_md5 not in FASHION_MNIST_MD5[stem] and content_md5 not in FASHION_MNIST_MD5[stem]:
                    raise ValueError(
                        f"{path} fails its MD5 check (got {file_md5}); the file is corrupt: "
                        "reinstall it with `sudo apt-get install --reinstall dataset-fashion-mnist`"
                    )
            tensors.append(_parse_idx(raw, path))
        images, labels = tensors
        if len(images) != len(labels):
            raise ValueError(f"{directory}: {split} has {len(images)} images but {len(labels)} labels")
        if len(images) == 0:
            raise ValueError(f"{directory}: the {split} split is empty")
        splits[split] = (images, labels.long())
    return splits


VAL_NAME = "val"


def carved_size(n: int) -> int:
    """How many of ``n`` training images a carved validation split takes: 1 in 12, at most 5,000 (Fashion-MNIST's
    60,000 -> 55,000 train / 5,000 val, the usual split), at least 1."""
    return max(1, min(5000, round(n / 12)))


def carve_order(n: int, count: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """(kept, carved) positions of ``n`` training samples: a fixed random ``count`` of them carved out, whatever
    the run's --seed (runs of a seed study choose on one validation set), each part in its original order."""
    if not 0 < count < n:
        raise ValueError(f"cannot carve {count} of {n} training images for validation: the split is too small")
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    return order[count:].sort().values, order[:count].sort().values


def _idx_spec(
    directory: Path, resolution: int, in_chans: int, train_limit: int, val_limit: int, carve_val: bool = False
) -> DataSpec:
    splits = load_idx_dir(directory)
    if carve_val:  # before the limits: --train-limit and --val-limit cut the carved splits as they cut the others
        images, targets = splits["train"]
        kept, carved = carve_order(len(targets), carved_size(len(targets)))
        splits = {**splits, "train": (images[kept], targets[kept]), VAL_NAME: (images[carved], targets[carved])}
    builtin = _is_builtin(directory)
    num_classes = int(splits["train"][1].max()) + 1
    labels = FASHION_MNIST_LABELS if builtin else [str(i) for i in range(num_classes)]
    if builtin:
        mean, std = FASHION_MNIST_MEAN, FASHION_MNIST_STD
    else:
        pixels = splits["train"][0][:10000].float() / 255
        mean, std = (round(pixels.mean().item(), 4),), (round(pixels.std().item(), 4),)
    missing = sorted(set(range(num_classes)) - set(splits["train"][1].unique().tolist()))
    if missing:
        raise ValueError(f"{directory}: classes {missing} have no training images")
    mean, std = mean * in_chans, std * in_chans
    pre = Preprocessing(
        (resolution, resolution), resize=resolution, channel_order="L" if in_chans == 1 else "RGB", mean=mean, std=std
    )

    def make(name, limit):
        images, targets = splits[name]
        if limit:
            images, targets = images[:limit], targets[:limit]
        return Split(name, labels, targets, images=images.unsqueeze(1), source=str(directory))

    if carve_val:
        return DataSpec(make("train", train_limit), make(VAL_NAME, val_limit), pre, "idx",
                        test=make("test", val_limit))  # fmt: skip
    return DataSpec(make("train", train_limit), make("test", val_limit), pre, "idx")


def idx_batch(images: torch.Tensor, pre: Preprocessing, augment: dict | None, generator: torch.Generator | None):
    """uint8 N x 1 x h x w -> normalized float N x C x H x W; random crop/flip when ``augment``.

    Batched tensor ops instead of per-image PIL transforms: on a 2-core CPU this costs about
    1% of a training step.
    """
    x = images.float().div_(255)
    size, stored = pre.input_size, images.shape[-2]
    if augment and augment.get("paste"):
        x = paste_items(x, size, augment["paste"], generator)
    elif tuple(x.shape[-2:]) != size:
        x = F.interpolate(x, size=size, mode="bilinear", align_corners=False, antialias=True)
    if augment:
        n = x.shape[0]
        # crop_pad counts the stored image's pixels, so an upsampled input is shifted as far as a native one.
        pad = round(augment.get("crop_pad", 0) * size[0] / stored)
        if pad:
            x = F.pad(x, (pad, pad, pad, pad))
            ox = torch.randint(0, 2 * pad + 1, (n,), generator=generator)
            oy = torch.randint(0, 2 * pad + 1, (n,), generator=generator)
            rows = (oy[:, None] + torch.arange(size[0]))[:, None, :, None]
            cols = (ox[:, None] + torch.arange(size[1]))[:, None, None, :]
            x = x[torch.arange(n)[:, None, None, None], torch.arange(x.shape[1])[None, :, None, None], rows, cols]
        if augment.get("hflip"):
            flip = torch.rand(n, generator=generator) < 0.5
            x = torch.where(flip[:, None, None, None], x.flip(-1), x)
        erase = float(augment.get("erase", 0))
        if erase:  # random erasing (Zhong et al.): one box of 2-40% of the area per image, with prob ``erase``
            h, w = size
            area = torch.empty(n).uniform_(0.02, 0.4, generator=generator) * h * w
            ratio = torch.exp(torch.empty(n).uniform_(-1.2, 1.2, generator=generator))
            eh = (area * ratio).sqrt().clamp(1, h).long()
            ew = (area / ratio).sqrt().clamp(1, w).long()
            y0 = (torch.rand(n, generator=generator) * (h - eh + 1)).long()
            x0 = (torch.rand(n, generator=generator) * (w - ew + 1)).long()
            on = torch.rand(n, generator=generator) < erase
            ys, xs = torch.arange(h)[None, :], torch.arange(w)[None, :]
            box = ((ys >= y0[:, None]) & (ys < (y0 + eh)[:, None]))[:, :, None] & (
                (xs >= x0[:, None]) & (xs < (x0 + ew)[:, None])
            )[:, None, :]
            x = x.masked_fill((box & on[:, None, None])[:, None], 0.0)
    if x.shape[1] != pre.in_chans:
        x = x.expand(-1, pre.in_chans, -1, -1)
    mean = torch.tensor(pre.mean).view(1, -1, 1, 1)
    std = torch.tensor(pre.std).view(1, -1, 1, 1)
    return (x - mean) / std


def paste_items(
    x: torch.Tensor,
    size: tuple[int, int],
    sides: tuple[int, int],
    generator: torch.Generator | None,
    noise_std: float = 8.0,
) -> torch.Tensor:
    """Each image shrunk or grown to a random square side in ``sides`` (pixels) and placed at a random spot of
    a ``size`` frame of N(0, ``noise_std``) noise (clipped at 0, blended by max): the items as the FMNIST
    canvases show them, so that a backbone pretrained on them knows the items at the detector's scales."""
    n, (h, w) = x.shape[0], size
    lo, hi = min(sides), min(max(sides), h, w)
    side = torch.randint(min(lo, hi), hi + 1, (n,), generator=generator).float()
    x0 = (torch.rand(n, generator=generator) * (w - side + 1)).floor()
    y0 = (torch.rand(n, generator=generator) * (h - side + 1)).floor()
    # affine_grid maps output to input coordinates in [-1, 1]: output pixel centre (u + 0.5) reads
    # item coordinate ((u + 0.5) - x0) / side.
    theta = torch.zeros(n, 2, 3)
    theta[:, 0, 0], theta[:, 1, 1] = w / side, h / side
    theta[:, 0, 2], theta[:, 1, 2] = (w - 2 * x0) / side - 1, (h - 2 * y0) / side - 1
    grid = F.affine_grid(theta, [n, x.shape[1], h, w], align_corners=False)
    placed = F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    noise = torch.randn(placed.shape, generator=generator).mul_(noise_std / 255).clamp_(min=0)
    return torch.maximum(placed, noise)


# --- ImageFolder ---------------------------------------------------------------------------


class SafeImageFolder:
    """torchvision's ImageFolder whose unreadable images become ``None`` (dropped by ``collate_skip``)."""

    def __init__(self, root: Path, transform):
        from torchvision.datasets import ImageFolder

        try:
            # open_image keeps the file's mode: the transform's ToMode converts 16-bit, palette, alpha... correctly.
            self.folder = ImageFolder(str(root), transform=transform, loader=open_image, allow_empty=False)
        except FileNotFoundError as err:
            raise ValueError(f"{root}: {err}; every class folder needs at least one image") from None
        self.classes = self.folder.classes
        self.targets = torch.tensor(self.folder.targets, dtype=torch.long)

    def __len__(self) -> int:
        return len(self.folder)

    def __getitem__(self, index: int):
        path, target = self.folder.samples[index]
        try:
            image = self.folder.loader(path)
            return self.folder.transform(image), target
        except Exception as err:  # noqa: BLE001 - any decoding failure of one image must not kill a run
            log.warning("skipping unreadable image %s (%s: %s)", path, err.__class__.__name__, err)
            return None


def collate_skip(batch):
    """Stack the readable samples; the third element counts the skipped ones."""
    good = [b for b in batch if b is not None]
    if not good:
        return torch.empty(0), torch.empty(0, dtype=torch.long), len(batch)
    return torch.stack([b[0] for b in good]), torch.tensor([b[1] for b in good]), len(batch) - len(good)


def _folder_spec(
    root: Path,
    resolution: int,
    in_chans: int,
    train_limit: int,
    val_limit: int,
    preprocessing: Preprocessing | None = None,
    carve_val: bool = False,
) -> DataSpec:
    from PIL import ImageFile
    from torchvision.transforms import v2 as T

    ImageFile.LOAD_TRUNCATED_IMAGES = False  # a truncated file is an error we count, not a grey half-image
    val_dir = next((root / n for n in ("val", "test", "validation") if (root / n).is_dir()), None)
    if not (root / "train").is_dir() or val_dir is None:
        raise FileNotFoundError(f"{root} needs train/<class>/* and val/<class>/* (or test/) folders of images")
    pre = Preprocessing(
        (resolution, resolution),
        round(resolution / 0.875),
        channel_order="L" if in_chans == 1 else "RGB",
        mean=(0.5,) * in_chans if in_chans == 1 else (0.485, 0.456, 0.406),
        std=(0.5,) * in_chans if in_chans == 1 else (0.229, 0.224, 0.225),
    )
    pre = preprocessing or pre
    colour = ToMode("L" if in_chans == 1 else "RGB")
    train_tf = T.Compose(
        [
            colour,
            T.PILToTensor(),
            T.RandomResizedCrop(resolution, antialias=True),
            T.RandomHorizontalFlip(),
            T.ToDtype(torch.float32, scale=True),
            T.Normalize(pre.mean, pre.std),
        ]
    )
    train = SafeImageFolder(root / "train", train_tf)
    val = SafeImageFolder(val_dir, pre.transform())
    if val.classes != train.classes:
        raise ValueError(f"{val_dir} has classes {val.classes} but {root / 'train'} has {train.classes}")
    labels = list(train.classes)

    def make(name, dataset, limit, positions=None, source=None):
        if positions is not None:  # a carved part: the same files, through this part's transform
            dataset = torch.utils.data.Subset(dataset, positions.tolist())
            targets = train.targets[positions]
        else:
            targets = dataset.targets
        return Split(name, labels, targets[:limit] if limit else targets, dataset=dataset, source=source)

    if carve_val and val_dir.name == "test":  # only a test split: choose on images carved from train/
        kept, carved = carve_order(len(train), carved_size(len(train)))
        held = SafeImageFolder(root / "train", pre.transform())
        return DataSpec(make("train", train, train_limit, kept, str(root / "train")),
                        make(VAL_NAME, held, val_limit, carved, str(root / "train")), pre, "folder",
                        test=make("test", val, val_limit, source=str(val_dir)))  # fmt: skip
    test_dir = root / "test"
    test = None
    if carve_val and val_dir.name != "test" and test_dir.is_dir():  # val/ chooses, test/ gives the figure
        test = make("test", SafeImageFolder(test_dir, pre.transform()), val_limit, source=str(test_dir))
    return DataSpec(make("train", train, train_limit, source=str(root / "train")),
                    make(val_dir.name, val, val_limit, source=str(val_dir)), pre, "folder", test=test)  # fmt: skip


def load_data(
    data: str | Path = "fashion-mnist",
    *,
    resolution: int | None = None,
    in_chans: int | None = None,
    train_limit: int = 0,
    val_limit: int = 0,
    min_size: int = 32,
    preprocessing: Preprocessing | None = None,
    carve_val: bool = False,
) -> DataSpec:
    """``"fashion-mnist"`` (Debian's package), a directory of IDX files, or an ImageFolder root.

    ``preprocessing`` (a trained model's) fixes resolution, channels and normalization for evaluation.
    ``carve_val`` (training): data with no validation split gets one carved from its training images (see
    ``DataSpec``); without it ``val`` is the held-out split the data has (test/ for Fashion-MNIST).
    """
    if preprocessing is not None:
        resolution, in_chans = preprocessing.input_size[0], preprocessing.in_chans
    elif resolution is not None and resolution < min_size:
        # Checked before any data is read: the model could not take the images (or a negative size would crash).
        raise ValueError(f"--resolution {resolution} is too small: the model needs >= {min_size} "
                         "(MobileNets built with --stem-stride 1 take half that)")  # fmt: skip
    if str(data).lower() in BUILTIN:
        if not FASHION_MNIST_DIR.is_dir():
            raise FileNotFoundError(
                f"Fashion-MNIST is not installed ({FASHION_MNIST_DIR} is missing); {INSTALL_HINT}, "
                "or pass --data DIR with the four IDX files"
            )
        path = FASHION_MNIST_DIR
    else:
        path = Path(data)
        if not path.is_dir():
            raise FileNotFoundError(
                f"--data {data}: no such directory; give 'fashion-mnist', a directory with the "
                "four IDX files, or an ImageFolder root with train/ and val/"
            )
    if find_idx(path, IDX_FILES["train"][0]) is not None:
        resolution = resolution or max(28, min_size)
        spec = _idx_spec(path, resolution, in_chans or 1, train_limit, val_limit, carve_val)
    else:
        spec = _folder_spec(path, resolution or 224, in_chans or 3, train_limit, val_limit, preprocessing, carve_val)
    if preprocessing is not None:
        spec.preprocessing = preprocessing
    return spec
