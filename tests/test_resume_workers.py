"""A run killed mid-epoch resumes to the same weights with DataLoader workers, for every task."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

import mobilenets.training.engine as engine
from mobilenets.data.classification import FASHION_MNIST_DIR
from mobilenets.training import TrainConfig, train
from mobilenets.training.checkpoint import CHECKPOINT


class Killed(Exception):
    """Stands in for kill -9: the process dies with the last checkpoint on disk and nothing else written."""


def _image_folder(root: Path) -> Path:
    """Noise images (a crop of one differs from another crop), two classes, for classification's image folders."""
    from PIL import Image

    rng = np.random.default_rng(0)
    for split in ("train", "val"):
        for name in ("cat", "dog"):
            (root / split / name).mkdir(parents=True)
            for i in range(10 if split == "train" else 2):
                pixels = rng.integers(0, 256, (36, 40, 3), dtype=np.uint8)
                Image.fromarray(pixels).save(root / split / name / f"{i}.png")
    return root


def _config(out, task: str, data: str):
    model = {"cls": "mobilenet_v3_small_minimal_100", "det": "ssdlite_mobilenet_v3_small_100",
             "seg": "lraspp_mobilenet_v3_small_100"}[task]  # fmt: skip
    return TrainConfig(model=model, data=data, output=str(out), epochs=1, batch_size=4, train_limit=20, val_limit=4,
                       resolution=32 if task == "cls" else 64, progress=False, tensorboard=False, deterministic=True,
                       threads=1, workers=2, checkpoint_every=2)  # fmt: skip


@pytest.mark.parametrize("task", ["cls", "det", "seg"])
def test_a_run_killed_mid_epoch_resumes_exactly_with_two_workers(tmp_path, monkeypatch, task):
    if task == "cls":
        data = str(_image_folder(tmp_path / "folder"))
    elif not FASHION_MNIST_DIR.is_dir():
        pytest.skip("the canvases need Debian's dataset-fashion-mnist")
    else:
        data = f"fmnist-{task}"
    train(_config(tmp_path / "whole", task, data))
    real_save = engine.save_checkpoint

    def save_then_die(*args, **kwargs):
        real_save(*args, **kwargs)
        raise Killed  # right after the checkpoint of step 2 of 5: the resume starts at batch 2 of the epoch

    monkeypatch.setattr(engine, "save_checkpoint", save_then_die)
    with pytest.raises(Killed):
        train(_config(tmp_path / "killed", task, data))
    monkeypatch.setattr(engine, "save_checkpoint", real_save)
    train(_config(tmp_path / "killed", task, data), resume=True)
    a = torch.load(tmp_path / "whole" / CHECKPOINT, weights_only=True)["model"]
    b = torch.load(tmp_path / "killed" / CHECKPOINT, weights_only=True)["model"]
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


class _Noisy(torch.utils.data.Dataset):
    """Item i: i plus a draw from torch's global RNG, as a random augmentation draws."""

    def __len__(self) -> int:
        return 12

    def __getitem__(self, index: int) -> torch.Tensor:
        return index + torch.rand(())


def test_seeded_batches_are_the_same_for_any_worker_count_start_and_shard():
    from mobilenets.data.loader import seeded_loader

    order = torch.randperm(12, generator=torch.Generator().manual_seed(0))

    def batches(seed=5, **kwargs):
        return torch.cat(list(seeded_loader(_Noisy(), order, 3, seed=seed, **kwargs)[0]))

    main_rng = torch.get_rng_state()
    whole = batches(workers=0)
    assert torch.equal(torch.get_rng_state(), main_rng)  # the main process's RNG (dropout) is left alone
    assert torch.equal(whole.floor().long(), order)
    assert len(set((whole - order).tolist())) == len(order)  # every sample has draws of its own
    assert torch.equal(batches(workers=2), whole)
    assert torch.equal(batches(workers=2, start=1), whole[3:])
    for rank in (0, 1):  # DDP: each rank's share of a batch, drawn as one process would
        assert torch.equal(batches(workers=1, shard=(rank, 2)), whole.view(4, 3)[:, rank::2].flatten())
    assert not torch.equal(batches(workers=0, seed=6), whole)
