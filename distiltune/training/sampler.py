"""The length-grouped batch order, drawn from (seed, epoch)."""
from __future__ import annotations

import torch
from transformers.trainer_pt_utils import LengthGroupedSampler


class EpochSeededLengthSampler(LengthGroupedSampler):
    """Length-grouped order from a generator seeded with ``seed + epoch``. The Trainer's own draws
    from the global RNG when the epoch starts; resuming mid-epoch restores that RNG only after the
    epoch's order is drawn, so the resumed run would see other batches than the interrupted one."""

    def __init__(self, *args, seed: int, **kwargs):
        super().__init__(*args, **kwargs)
        self.seed, self.epoch = seed, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __iter__(self):
        self.generator = torch.Generator().manual_seed(self.seed + self.epoch)
        return super().__iter__()
