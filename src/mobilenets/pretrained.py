"""Weights shipped inside the package, as timm names them: ``NAME.TAG`` (e.g. ``mobilenet_v1_025.fashion-mnist``).

Each is an ordinary model directory under ``mobilenets/weights/TAG/NAME/``; ``create_model(NAME,
pretrained=TAG)`` and ``mobilenets.load_pretrained(NAME, TAG)`` load it, and ``NAME.TAG`` works wherever a model
directory does (``eval``, ``predict``, ``export``, ``bench``, ``info``, ``--init``). Its config's
``metadata`` says how it was trained and what it scored. A real path of the same name wins; so no
command writes one by default: ``export NAME.TAG`` writes ``./NAME.TAG.onnx``, a file beside.
"""

from __future__ import annotations

import os
from pathlib import Path

WEIGHTS_ROOT = Path(__file__).parent / "weights"


def available() -> dict[str, dict]:
    """{``NAME.TAG``: the shipped config's metadata} for every model directory in the package."""
    import json

    found = {}
    for config in sorted(WEIGHTS_ROOT.glob("*/*/config.json")):
        tag, name = config.parent.parent.name, config.parent.name
        found[f"{name}.{tag}"] = json.loads(config.read_text()).get("metadata") or {}
    return found


def pretrained_dir(name: str, tag: str) -> Path:
    """The shipped model directory of ``name`` with weights ``tag``; a ValueError naming what is shipped."""
    path = WEIGHTS_ROOT / tag / name
    if not (path / "config.json").is_file():
        shipped = ", ".join(available()) or "none"
        raise ValueError(f"no pretrained weights {tag!r} for {name}; shipped: {shipped} "
                         "(`mobilenets list --pretrained`)")  # fmt: skip
    return path


def resolve(path: str | os.PathLike) -> Path:
    """``path`` itself if it exists, else the shipped directory that ``NAME.TAG`` names (else ``path`` unchanged)."""
    path = Path(path)
    if path.exists() or len(path.parts) != 1 or "." not in path.name:
        return path
    name, _, tag = path.name.partition(".")
    shipped = WEIGHTS_ROOT / tag / name
    return shipped if (shipped / "config.json").is_file() else path


def shipped_name(path: str | os.PathLike) -> str | None:
    """``NAME.TAG`` if ``path`` resolves to weights shipped in the package, else None.

    Outputs that would go inside a model directory go beside, named after it, for these: the
    package is not the user's to write into, and a ``./NAME.TAG/`` folder would hide the weights.
    """
    resolved = resolve(path).absolute()
    if resolved.parent.parent != WEIGHTS_ROOT.absolute() or not (resolved / "config.json").is_file():
        return None
    return f"{resolved.name}.{resolved.parent.name}"


def shadow_hint(path: str | os.PathLike) -> str:
    """For a local ``path`` that is not a model directory but has a shipped NAME.TAG's name: how to reach those."""
    path = Path(path)
    if len(path.parts) != 1 or "." not in path.name:
        return ""
    name, _, tag = path.name.partition(".")
    if not (WEIGHTS_ROOT / tag / name / "config.json").is_file():
        return ""
    return f"; this local {path} hides the shipped weights {path.name}: rename or remove it to use those"
