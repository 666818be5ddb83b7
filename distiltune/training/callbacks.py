"""Trainer callbacks of distiltune's training stages."""
from __future__ import annotations

import torch
from torch import nn
from transformers import EarlyStoppingCallback, TrainerCallback


class EpochTimer(TrainerCallback):
    """Wall seconds of each epoch (``seconds``), logged as ``epoch_seconds``: the first epoch of a
    run may carry one-off work, so speed comparisons read the later ones."""

    def __init__(self):
        self.seconds: list[float] = []
        self._t0 = None

    @staticmethod
    def _now() -> float:
        import time

        if torch.cuda.is_available() and torch.cuda.is_initialized():
            torch.cuda.synchronize()  # GPU work is asynchronous: count it in the epoch that queued it
        return time.perf_counter()

    def on_epoch_begin(self, args, state, control, **kwargs):
        self._t0 = self._now()

    def on_epoch_end(self, args, state, control, **kwargs):
        if self._t0 is not None:
            self.seconds.append(self._now() - self._t0)
            state.log_history.append({"epoch": round(state.epoch or 0.0, 4), "step": state.global_step,
                                      "epoch_seconds": round(self.seconds[-1], 4)})


class PlateauStop(EarlyStoppingCallback):
    """Stop a stage once its validation metric has not set a new best for ``early_stopping_patience``
    evaluations, but never before ``min_epochs`` (the floor): the Trainer's early stopping plus a floor.
    Its counter is saved in each checkpoint and restored on resume (restore_callback_states_from_checkpoint),
    so a resumed stage stops where an uninterrupted one would."""

    def __init__(self, early_stopping_patience: int = 1, early_stopping_threshold: float | None = 0.0,
                 min_epochs: float = 0.0):
        super().__init__(early_stopping_patience, early_stopping_threshold)
        self.min_epochs = min_epochs

    def on_evaluate(self, args, state, control, metrics, **kwargs):
        super().on_evaluate(args, state, control, metrics, **kwargs)
        if (state.epoch or 0.0) < self.min_epochs - 1e-6:
            control.should_training_stop = False

    def state(self) -> dict:
        saved = super().state()
        saved["args"]["min_epochs"] = self.min_epochs
        return saved


class _ZeroTermGrads(TrainerCallback):
    """The Trainer handles the model's gradients only. The terms' projections live outside the
    (DDP-wrapped) model: average their gradients across processes before each step, so every
    rank keeps the same projection, and zero them after it (else they pile up across steps)."""

    def __init__(self, terms: nn.Module):
        self.terms = terms

    def on_pre_optimizer_step(self, args, state, control, **kwargs):
        import torch.distributed as dist

        if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
            for p in self.terms.parameters():
                if p.grad is not None:
                    dist.all_reduce(p.grad, op=dist.ReduceOp.SUM)
                    p.grad /= dist.get_world_size()

    def on_optimizer_step(self, args, state, control, **kwargs):
        self.terms.zero_grad(set_to_none=True)
