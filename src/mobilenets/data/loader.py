"""Training batches whose augmentation is a pure function of the run's seed, the epoch and each sample's position.

A DataLoader worker draws random augmentation from torch's RNG, seeded once per worker; which worker
builds a batch depends on the batch's place since the loader started. A run resumed mid-epoch starts
its loader at another batch, so its samples would be augmented with other draws than the uninterrupted
run's (and 0, 1 or 2 workers would train on different batches). Here every sample is drawn with torch's
RNG seeded from (``seed``, its position in the epoch's order): the same augmentation whatever the worker
count, the worker, the rank or the batch the loader starts at.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch.utils.data import DataLoader, Dataset


class SeededSamples(Dataset):
    """``dataset`` read by ``(index, seed)`` keys: item ``index`` drawn with torch's RNG seeded by ``seed``.

    Transforms (torchvision's v2 among them) draw from torch's global RNG. Its state is saved and put
    back around each sample, so with ``workers=0`` the main process's RNG (dropout, checkpointed for
    resume) is left as it was.
    """

    def __init__(self, dataset: Dataset):
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, key: tuple[int, int]):
        index, seed = key
        # The CPU generator alone: torch.manual_seed also queues every accelerator's (~100x slower per sample).
        rng = torch.default_generator
        state = rng.get_state()
        rng.manual_seed(seed)
        try:
            return self.dataset[index]
        finally:
            rng.set_state(state)


def seeded_loader(
    dataset: Dataset,
    order: torch.Tensor,
    batch_size: int,
    *,
    seed: int,
    start: int = 0,
    shard: tuple[int, int] | None = None,
    workers: int = 0,
    collate: Callable | None = None,
) -> tuple[DataLoader, list[int]]:
    """Batches of ``dataset`` in ``order`` from batch ``start`` on (``shard`` = (rank, world) takes every world-th
    sample of each batch from rank on), each sample seeded by ``seed`` and its position in ``order``; returns the
    loader and each batch's sample count (a collate may drop unreadable samples)."""
    # One seed per position of the whole order, drawn before cutting at ``start``: a resumed epoch keeps them.
    seeds = torch.randint(2**62, (len(order),), generator=torch.Generator().manual_seed(seed))
    keys = torch.stack([torch.as_tensor(order, dtype=torch.long), seeds], dim=1)
    chunks = [keys[i : i + batch_size] for i in range(start * batch_size, len(keys), batch_size)]
    if shard:
        chunks = [c[shard[0] :: shard[1]] for c in chunks]
    batches = [[tuple(key) for key in c.tolist()] for c in chunks]
    # A generator of its own: without one, the DataLoader draws its workers' base seed from the global RNG.
    loader = DataLoader(SeededSamples(dataset), batch_sampler=batches, num_workers=workers, collate_fn=collate,
                        generator=torch.Generator().manual_seed(seed), persistent_workers=False)  # fmt: skip
    return loader, [len(b) for b in batches]
