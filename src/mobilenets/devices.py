"""``--device``: where train, eval, predict and bench run; CPU unless CUDA is asked for by name."""

from __future__ import annotations

import re

DEVICE_HELP = "cpu (default) or cuda / cuda:N; cuda is an error when CUDA is not available"


def resolve_device(name: str | None = None):
    """``torch.device`` for "cpu", "cuda" or "cuda:N"; a ValueError naming the fix for anything else.

    Nothing picks CUDA silently: the default is the CPU, so that a run's speed and numerics do not
    depend on which machine it happens to start on.
    """
    import torch

    name = (name or "cpu").strip().lower()
    if not re.fullmatch(r"cpu|cuda(:\d+)?", name):
        raise ValueError(f"--device takes cpu, cuda or cuda:N, got {name!r}")
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise ValueError(
                f"--device {name}: CUDA is not available here (no GPU, or a CPU-only torch); use --device cpu"
            )
        index = int(name.partition(":")[2] or 0)
        if index >= torch.cuda.device_count():
            raise ValueError(f"--device {name}: this machine has {torch.cuda.device_count()} CUDA device(s)")
    return torch.device(name)
