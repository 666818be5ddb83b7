"""One ``transformers.Trainer`` subclass for every strategy: it sums named, weighted loss terms.

Fine-tuning is the objective ``[("ce", 1)]``; distillation is ``[("ce", 1 - w), ("kd", w)]``
with ``w`` and the temperature given as schedules. The training loop, checkpointing,
mixed precision and distributed runs are the Trainer's.
"""
from __future__ import annotations

import os
from collections import defaultdict
from types import SimpleNamespace
from typing import Callable

import torch
from torch import nn
from transformers import Trainer
from transformers.trainer_utils import get_last_checkpoint

from .errors import NonFiniteLossError
from .losses import build_term
from .schedules import Schedule

# A weight is a function of (step, max_steps, epoch, num_epochs) -> float, e.g. a Schedule.
Weight = Callable[[int, int, float, float], float]


class OneMinus:
    """``1 - schedule``: the hard-label weight that mirrors ``distill_weight``."""

    def __init__(self, schedule: Weight):
        self.schedule = schedule

    def __call__(self, *progress) -> float:
        return 1.0 - self.schedule(*progress)


def distill_objective(distill_weight: Weight) -> list[tuple[str, Weight]]:
    return [("ce", OneMinus(distill_weight)), ("kd", distill_weight)]


def finetune_objective() -> list[tuple[str, Weight]]:
    return [("ce", Schedule("constant", 1.0))]


class DistillationTrainer(Trainer):
    """``Trainer`` whose loss is ``sum_i weight_i(progress) * term_i(student_out, teacher_out, batch, T)``.

    Teacher logits come from a ``teacher_logits`` column when the dataset carries them (computed
    once, reused every epoch), else from a live forward pass of the frozen ``teacher`` on the
    batch's ``teacher_*`` inputs (its own tokenisation) or on the student inputs when they share one.
    """

    def __init__(self, *args, teacher: nn.Module | None = None, objective=None,
                 temperature: Weight | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        self.objective = objective or finetune_objective()
        self.terms = nn.ModuleDict({name: build_term(name) for name, _ in self.objective})
        self.temperature = temperature or Schedule("constant", 1.0)
        self.teacher = teacher
        if teacher is not None:
            teacher.eval()
            teacher.requires_grad_(False)  # no gradient state for the teacher
            teacher.to(self.args.device)
        # Our loss is already a per-batch mean; stop the Trainer rescaling by token counts.
        self.model_accepts_loss_kwargs = False
        self._sums: dict[str, float] = defaultdict(float)
        self._count = 0

    # ---- schedules ----
    def progress(self) -> tuple[int, int, float, float]:
        s = self.state
        return s.global_step, max(s.max_steps, 1), float(s.epoch or 0.0), float(s.num_train_epochs or 1)

    def current_values(self) -> dict[str, float]:
        p = self.progress()
        vals = {"temperature": float(self.temperature(*p))}
        vals.update({f"weight_{name}": float(w(*p)) for name, w in self.objective})
        return vals

    # ---- loss ----
    def _teacher_out(self, inputs: dict, cached, teacher_inputs: dict):
        if cached is not None:
            return SimpleNamespace(logits=cached)
        if self.teacher is None:
            raise ValueError("a loss term needs the teacher but no teacher was given")
        with torch.no_grad():
            return self.teacher(**(teacher_inputs or inputs))

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        batch = {"labels": inputs.pop("labels", None)}
        cached = inputs.pop("teacher_logits", None)
        teacher_inputs = {k[len("teacher_"):]: inputs.pop(k) for k in list(inputs) if k.startswith("teacher_")}
        outputs = model(**inputs)
        if not model.training:  # validation loss is the task loss
            loss = self.terms["ce"](outputs, None, batch) if "ce" in self.terms else outputs.logits.sum() * 0
            return (loss, outputs) if return_outputs else loss
        vals = self.current_values()
        needs_teacher = any(self.terms[n].needs_teacher and vals[f"weight_{n}"] > 0 for n, _ in self.objective)
        teacher_out = self._teacher_out(inputs, cached, teacher_inputs) if needs_teacher else None
        loss = outputs.logits.sum() * 0.0
        for name, _ in self.objective:
            w = vals[f"weight_{name}"]
            if w == 0:
                continue  # skip the work (e.g. the teacher forward) of a term that is switched off
            value = self.terms[name](outputs, teacher_out, batch, temperature=vals["temperature"])
            if not torch.isfinite(value):
                raise NonFiniteLossError(name, self.state.global_step, get_last_checkpoint(self.args.output_dir)
                                         if _isdir(self.args.output_dir) else None)
            self._sums[f"loss_{name}"] += float(value.detach())
            loss = loss + w * value
        self._count += 1
        return (loss, outputs) if return_outputs else loss

    def log(self, logs: dict, *args, **kwargs) -> None:
        if "loss" in logs and self._count:
            logs.update({k: round(v / self._count, 6) for k, v in self._sums.items()})
            logs.update({k: round(v, 6) for k, v in self.current_values().items()})
            self._sums.clear()
            self._count = 0
        super().log(logs, *args, **kwargs)


def _isdir(path) -> bool:
    return bool(path) and os.path.isdir(path)
