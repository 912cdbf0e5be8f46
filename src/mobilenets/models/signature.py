"""What a model takes and gives: named, shaped tensors that export, quantize, bench and predict read."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class TensorSpec:
    """One named input or output; ``shape`` mixes sizes and symbolic dimensions ("N", "H", "W", "A")."""

    name: str
    shape: tuple[int | str, ...]
    description: str = ""
    dtype: str = "float32"

    def to_dict(self) -> dict:
        return {"name": self.name, "shape": list(self.shape), "dtype": self.dtype, "description": self.description}


@dataclass(frozen=True)
class Signature:
    """The task a model serves and its tensors, in ``forward``'s order (several outputs allowed)."""

    task: str
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]

    @property
    def input_names(self) -> list[str]:
        return [t.name for t in self.inputs]

    @property
    def output_names(self) -> list[str]:
        return [t.name for t in self.outputs]

    def to_dict(self) -> dict:
        return {"task": self.task, "inputs": [t.to_dict() for t in self.inputs],
                "outputs": [t.to_dict() for t in self.outputs]}  # fmt: skip


def classifier_signature(in_chans: int, num_classes: int) -> Signature:
    image = TensorSpec("input", ("N", in_chans, "H", "W"), "normalized image batch (the model's preprocessing)")
    if not num_classes:
        return Signature("features", (image,), (TensorSpec("features", ("N", "F"), "pooled pre-logits features"),))
    return Signature("classification", (image,), (TensorSpec("logits", ("N", num_classes), "class scores"),))


def outputs_as_list(outputs) -> list:
    """A model's outputs in signature order: one tensor, a tuple/list, or a dict (insertion order)."""
    if isinstance(outputs, dict):
        return list(outputs.values())
    if isinstance(outputs, (tuple, list)):
        return list(outputs)
    return [outputs]
