"""Loss terms: each a pure tensor function plus a thin ``nn.Module`` registered by name.

Every term has the same call signature ``term(student_out, teacher_out, batch, temperature)``
and returns a scalar tensor; the trainer weights and sums them, so adding a term never
touches the training loop.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .registry import Registry

LOSSES = Registry("loss term")
IGNORE_INDEX = -100  # label of unlabeled rows (classification); NaN plays that role for regression


def register_loss(name: str):
    """Register a loss-term class under ``name`` (raises if the name is taken)."""
    return LOSSES.register(name)


# ---------- pure functions ----------

def kd_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """Response-based KD (Hinton, Vinyals & Dean 2015, "Distilling the Knowledge in a Neural Network").

    ``T² · KL(softmax(teacher/T) || softmax(student/T))`` with batchmean reduction. The T² factor
    keeps gradient magnitudes comparable across temperatures (soft-target gradients scale 1/T²).
    Logits are ``(batch, num_labels)``; a single output column (regression) falls back to MSE.
    """
    if student_logits.shape[-1] == 1:
        return F.mse_loss(student_logits.float(), teacher_logits.float())
    t = float(temperature)
    log_p_student = F.log_softmax(student_logits.float() / t, dim=-1)
    log_p_teacher = F.log_softmax(teacher_logits.float() / t, dim=-1)
    return F.kl_div(log_p_student, log_p_teacher, reduction="batchmean", log_target=True) * (t * t)


def hard_label_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Cross-entropy on labelled rows (label != -100), or MSE for one output column (regression,
    NaN = unlabeled). A batch with no labelled rows gives an exact zero that still has a graph."""
    logits = logits.float()
    if logits.shape[-1] == 1:
        labels = labels.float().view(-1)
        keep = torch.isfinite(labels)
        if not keep.any():
            return logits.sum() * 0.0
        return F.mse_loss(logits.view(-1)[keep], labels[keep])
    labels = labels.long()
    if not (labels != IGNORE_INDEX).any():
        return logits.sum() * 0.0
    return F.cross_entropy(logits, labels, ignore_index=IGNORE_INDEX)


# ---------- registered terms ----------

class LossTerm(nn.Module):
    """Base class: subclasses set ``needs_teacher`` and implement ``forward``."""

    needs_teacher = False
    description = ""

    def forward(self, student_out, teacher_out, batch: dict, temperature: float = 1.0) -> torch.Tensor:
        raise NotImplementedError


@register_loss("ce")
class HardLabelTerm(LossTerm):
    description = "cross-entropy on hard labels (MSE for regression); unlabeled rows are skipped"

    def forward(self, student_out, teacher_out, batch, temperature=1.0):
        return hard_label_loss(student_out.logits, batch["labels"])


@register_loss("kd")
class SoftTargetTerm(LossTerm):
    needs_teacher = True
    description = "T^2 * KL(teacher/T || student/T), batchmean (Hinton et al. 2015)"

    def forward(self, student_out, teacher_out, batch, temperature=1.0):
        return kd_loss(student_out.logits, teacher_out.logits, temperature)


def build_term(name: str) -> LossTerm:
    return LOSSES.get(name)()
