"""The training data stream: an endless, seeded, resumable sequence of batches on every rank."""
from __future__ import annotations

import os
import signal

from torch.utils.data import DataLoader, Dataset, DistributedSampler


class StepSampler(DistributedSampler):
    """An endless stream of ``(epoch, index)`` pairs: this rank's share of a fresh seeded
    permutation each epoch (DistributedSampler's), starting ``start`` items in.

    The datasets draw each item's crop and augmentation from (seed, epoch,
    index), so the stream position alone fixes the data: resuming at step k
    starts at item k * batch_size.
    """

    def __init__(self, dataset, *, num_replicas: int, rank: int, seed: int, start: int = 0):
        super().__init__(dataset, num_replicas=num_replicas, rank=rank, shuffle=True, seed=seed, drop_last=False)
        self.start = start

    def __iter__(self):
        epoch, offset = divmod(self.start, self.num_samples)
        while True:
            self.set_epoch(epoch)
            for i, index in enumerate(super().__iter__()):
                if i >= offset:
                    yield (epoch, index)
            epoch, offset = epoch + 1, 0


def _worker_init(_worker_id: int) -> None:
    # Ctrl-C is the main process's to handle (it finishes the step and saves); workers carry on.
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def _usable_cpus() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def training_batches(dataset: Dataset, *, batch_size: int, workers: int, seed: int, start_step: int,
                     rank: int, world_size: int, pin_memory: bool) -> DataLoader:
    """Batches of this rank's share of the stream, from step ``start_step`` on."""
    # no more workers than CPUs this process may use (the paper presets ask for 4, for GPU hosts)
    workers = min(workers, _usable_cpus())
    sampler = StepSampler(dataset, num_replicas=world_size, rank=rank, seed=seed, start=start_step * batch_size)
    return DataLoader(dataset, batch_size=batch_size, sampler=sampler, num_workers=workers, pin_memory=pin_memory,
                      worker_init_fn=_worker_init, persistent_workers=False, prefetch_factor=4 if workers else None)
