"""Every registered model keeps its state-dict keys and its outputs (tests/snapshots/architectures.json).

Regenerate only for a deliberate architecture change, and say so in the commit:
``PYTHONPATH=src:tests python -m snapshot_util``.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

import mobilenets
from snapshot_util import snapshot

SNAPSHOT = json.loads((Path(__file__).parent / "snapshots" / "architectures.json").read_text())


def test_snapshot_covers_every_registered_model():
    assert sorted(SNAPSHOT) == mobilenets.list_models(task="classification")


@pytest.mark.parametrize("name", sorted(SNAPSHOT))
def test_keys_and_outputs_unchanged(name):
    torch.set_num_threads(1)
    now, then = snapshot(name), SNAPSHOT[name]
    assert (now["keys"], now["num_keys"]) == (then["keys"], then["num_keys"]), "state-dict keys or shapes changed"
    for a, b in zip(now["out_head"] + [now["out_std"]], then["out_head"] + [then["out_std"]], strict=True):
        assert math.isclose(a, b, rel_tol=1e-4, abs_tol=1e-4 * then["out_std"]), (now, then)
