"""What every converter shares: the target spec, safe checkpoint reading, and the checked copy plan."""

from __future__ import annotations

import logging
import os
import pickle
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from ..errors import unpickling_detail
from ..preprocessing import IMAGENET_MEAN, IMAGENET_STD, INCEPTION_MEAN, INCEPTION_STD, Preprocessing

log = logging.getLogger(__name__)

TF_PREPROCESSING = Preprocessing((224, 224), 256, mean=INCEPTION_MEAN, std=INCEPTION_STD)  # RGB in [-1, 1]
IMAGENET_PREPROCESSING = Preprocessing((224, 224), 256, mean=IMAGENET_MEAN, std=IMAGENET_STD)


@dataclass(frozen=True)
class Target:
    """Our network for a source model name: family builder, its options, and the weights' input contract."""

    name: str  # our model name (a registry name where one exists)
    family: str  # builder in mobilenets.models
    options: dict
    preprocessing: Preprocessing
    source_name: str = ""  # the model's name in the source library
    extra: dict = field(default_factory=dict)

    def build(self, num_classes: int) -> nn.Module:
        from ..models.build import build

        return build(self.family, {**self.options, "num_classes": num_classes}, self.name)


@dataclass(frozen=True)
class Copy:
    """One tensor of our state dict: which source tensor it comes from and how its layout changes."""

    ours: str
    source: str
    transform: Callable[[torch.Tensor], torch.Tensor] | None = None
    optional: bool = False  # absent in the source: keep our initial value (BN num_batches_tracked)


def identity(t: torch.Tensor) -> torch.Tensor:
    return t


def block_list(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """Our blocks with their state-dict prefix, in network order (the order every source numbers them in)."""
    return [(f"stages.{i}.{j}", block) for i, stage in enumerate(model.stages) for j, block in enumerate(stage)]


def check_block_kinds(model: nn.Module, kinds: tuple[type, ...], source: str) -> None:
    for _, block in block_list(model):
        if not isinstance(block, kinds):
            raise ValueError(f"{model.name} has {type(block).__name__} blocks, which {source} checkpoints do not hold")


# --- reading PyTorch checkpoints without unpickling code ----------------------------


def read_torch_checkpoint(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """Tensors of a ``.pth``/``.pt``/``.bin`` or ``.safetensors`` file, never executing pickled code.

    ``.pth`` files go through ``torch.load(weights_only=True)``, which only rebuilds
    tensors and plain containers and refuses every other pickled object. Nested
    ``state_dict``/``model`` entries and the ``module.`` prefix of DataParallel are unwrapped.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path} does not exist")
    if path.suffix == ".safetensors":
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            data = load_file(str(path))
        except (SafetensorError, OSError) as err:
            raise ValueError(f"{path} is not a readable safetensors file ({err}); it may be truncated") from None
    else:
        try:
            data = torch.load(path, map_location="cpu", weights_only=True)
        except pickle.UnpicklingError as err:
            raise ValueError(
                f"refusing to load {path}: it holds pickled objects other than tensors ({unpickling_detail(err)}); "
                "only plain state dicts are read (torch.load weights_only=True). Re-save it with "
                "torch.save(model.state_dict(), path) from code you trust"
            ) from None
        except Exception as err:  # torch.load raises RuntimeError, EOFError, even KeyError on foreign bytes
            detail = (str(err).splitlines() or [""])[0] or type(err).__name__
            raise ValueError(
                f"{path} is not a readable PyTorch checkpoint ({type(err).__name__}: {detail[:120]}); "
                "it may be truncated or in another format"
            ) from None
    return unwrap_state_dict(data, str(path))


def unwrap_state_dict(data: object, where: str) -> dict[str, torch.Tensor]:
    if isinstance(data, Mapping):
        for key in ("state_dict", "model", "state_dict_ema", "model_ema"):
            if key in data and isinstance(data[key], Mapping):
                data = data[key]
                break
    if not isinstance(data, Mapping) or not data:
        raise ValueError(f"{where} holds no state dict (got {type(data).__name__})")
    tensors = {str(k): v for k, v in data.items() if isinstance(v, torch.Tensor)}
    if not tensors:
        raise ValueError(f"{where} holds no tensors; is it a checkpoint?")
    if all(k.startswith("module.") for k in tensors):  # saved from nn.DataParallel
        tensors = {k[len("module.") :]: v for k, v in tensors.items()}
    return tensors


def infer_num_classes(tensors: Mapping[str, torch.Tensor], classifier_key: str, axis: int = 0) -> int:
    """Classes of a checkpoint: the classifier's output dimension, 0 when it has no classifier."""
    value = tensors.get(classifier_key)
    return 0 if value is None else int(value.shape[axis])


# --- applying a copy plan -------------------------------------------------------------


def apply_plan(
    model: nn.Module, tensors: Mapping[str, torch.Tensor], plan: list[Copy], where: str, what: str
) -> nn.Module:
    """Fill ``model`` from ``tensors`` following ``plan``; every mismatch is a ValueError naming the key.

    Checks, in network order: each source tensor exists, has the shape our tensor
    needs after the layout change, every tensor of ours is covered, and no source
    tensor is left over (a larger variant).
    """
    expected = model.state_dict()
    state: dict[str, torch.Tensor] = {}
    used: set[str] = set()
    for step in plan:
        if step.ours not in expected:
            raise ValueError(f"{what} does not fit {model.name}: it has {step.source!r}, {model.name} has no "
                             f"{step.ours!r}; check the model name")  # fmt: skip
        if step.source not in tensors:
            if step.optional:
                state[step.ours] = expected[step.ours]
                continue
            raise ValueError(f"{where} does not fit {model.name}: it has no {step.source!r} (needed for "
                             f"{step.ours!r}, shape {tuple(expected[step.ours].shape)}); is it a {what}?")  # fmt: skip
        raw = torch.as_tensor(tensors[step.source])
        value = (step.transform or identity)(raw)
        if tuple(value.shape) != tuple(expected[step.ours].shape):
            raise ValueError(
                f"{where} does not fit {model.name}: {step.source!r} has shape {tuple(raw.shape)} in the checkpoint "
                f"but {step.ours!r} needs {tuple(expected[step.ours].shape)}; check the model name and num_classes"
            )
        state[step.ours] = value.to(expected[step.ours].dtype).contiguous()
        used.add(step.source)
    missing = [k for k in expected if k not in state]
    if missing:  # a plan that forgets a tensor is a bug here, not in the checkpoint
        raise ValueError(f"cannot fill {missing[0]!r} of {model.name} from a {what}; this variant is not supported")
    leftover = [k for k in tensors if k not in used and not k.endswith("num_batches_tracked")]
    if leftover:
        raise ValueError(f"{where} does not fit {model.name}: it has {len(leftover)} tensors the model does not use, "
                         f"first {leftover[0]!r} {tuple(torch.as_tensor(tensors[leftover[0]]).shape)}; "
                         "is it a larger variant?")  # fmt: skip
    model.load_state_dict(state, strict=True)
    return model


def torch_cna(ours: str, conv: str, bn: str) -> list[Copy]:
    """Conv + BN of a PyTorch source (torchvision, timm, megvii): same layouts, other names."""
    return [Copy(f"{ours}.conv.weight", f"{conv}.weight")] + torch_bn(f"{ours}.bn", bn)


def torch_bn(ours: str, bn: str, transform=None) -> list[Copy]:
    steps = [Copy(f"{ours}.{p}", f"{bn}.{p}", transform) for p in ("weight", "bias", "running_mean", "running_var")]
    return steps + [Copy(f"{ours}.num_batches_tracked", f"{bn}.num_batches_tracked", optional=True)]


def sort_numeric(keys) -> list:
    return sorted(keys, key=lambda k: [int(p) if p.isdigit() else p for p in re.split(r"(\d+)", k)])
