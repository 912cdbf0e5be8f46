"""Architecture snapshots: state-dict keys and shapes, and outputs under name-seeded weights.

The weights come from each key's name, not from module creation order, so a refactor that
builds the same network in another order gives the same outputs.
"""

from __future__ import annotations

import hashlib

import torch

import mobilenets


def snapshot_key(key: str) -> str:
    """The key as the snapshot was taken: the last 1x1 conv was ``head`` then (now ``final_conv``)."""
    return "head." + key[len("final_conv.") :] if key.startswith("final_conv.") else key


def seeded_state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    state = {}
    for key, value in model.state_dict().items():
        if not value.is_floating_point():
            state[key] = value
            continue
        seed = int(hashlib.sha256(snapshot_key(key).encode()).hexdigest()[:8], 16)
        g = torch.Generator().manual_seed(seed)
        if key.endswith("running_var"):
            state[key] = torch.rand(value.shape, generator=g) + 0.5
        elif key.endswith(("running_mean", "bias")):
            state[key] = torch.randn(value.shape, generator=g) * 0.1
        elif key.endswith("bn.weight"):
            state[key] = torch.rand(value.shape, generator=g) + 0.5
        else:
            fan_in = max(1, value[0].numel()) if value.dim() > 1 else 1
            state[key] = torch.randn(value.shape, generator=g) * (2.0 / fan_in) ** 0.5
    return state


def snapshot(name: str, resolution: int = 224) -> dict:
    model = mobilenets.create_model(name).eval()
    model.load_state_dict(seeded_state(model))
    x = torch.randn(1, 3, resolution, resolution, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        out = model(x)[0]
    keys = [f"{snapshot_key(k)}:{tuple(v.shape)}" for k, v in model.state_dict().items()]
    return {
        "keys": hashlib.sha256("\n".join(keys).encode()).hexdigest(),
        "num_keys": len(keys),
        "out_head": [float(f"{v:.7g}") for v in out[:5].tolist()],
        "out_std": float(f"{out.std().item():.7g}"),
    }


if __name__ == "__main__":
    import json
    from pathlib import Path

    torch.set_num_threads(1)
    path = Path(__file__).parent / "snapshots" / "architectures.json"
    names = mobilenets.list_models(task="classification")  # detectors, segmenters: their own tests
    path.write_text(json.dumps({n: snapshot(n) for n in names}, indent=1, sort_keys=True))
