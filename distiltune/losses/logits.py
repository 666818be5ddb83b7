"""Response-based terms: the task loss and losses between teacher and student logits."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from ..errors import DistilTuneError
from ..constants import IGNORE_INDEX
from ..models.task_loss import hard_label_loss
from .sparse_kd import SparseKD
from .vocab import TopK, forward_kl, generalized_jsd, log_probs, per_position, reverse_kl, total_variation
from .base import LossTerm, register_loss

WEIGHTINGS = ("none", "confidence")


# ---------- pure functions (logits are (batch, num_labels); one column = regression) ----------

def kd_per_sample(student_logits: torch.Tensor, teacher_logits, temperature: float) -> torch.Tensor:
    """``T² · KL(softmax(teacher/T) || softmax(student/T))`` per row (or position), shape ``logits.shape[:-1]``.
    ``teacher_logits`` may be a sparse :class:`~distiltune.losses.vocab.TopK` teacher; one with tail
    samples adds their estimate of the divergence within the tail at T = 1 (the other terms keep the buckets)."""
    if student_logits.shape[-1] == 1:
        return (student_logits.float() - teacher_logits.float()).pow(2).view(-1)
    t = float(temperature)
    if isinstance(teacher_logits, TopK):  # the gradient in closed form: a few passes over the vocabulary
        if abs(teacher_logits.temperature - t) > 1e-6:
            raise ValueError(f"a top-k teacher at temperature {teacher_logits.temperature} read at temperature {t}")
        return SparseKD.apply(student_logits, teacher_logits, t)
    return forward_kl(*log_probs(student_logits, teacher_logits, t)) * (t * t)


def kd_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """Response-based KD (Hinton, Vinyals & Dean 2015, "Distilling the Knowledge in a Neural Network").

    ``T² · KL(softmax(teacher/T) || softmax(student/T))`` with batchmean reduction. The T² factor
    keeps gradient magnitudes comparable across temperatures (soft-target gradients scale 1/T²).
    A single output column (regression) falls back to MSE.
    """
    return kd_per_sample(student_logits, teacher_logits, temperature).mean()


def reverse_kl_per_sample(student_logits, teacher_logits, temperature) -> torch.Tensor:
    """``T² · KL(student || teacher)``: mode-seeking (the student concentrates on the teacher's top
    classes instead of covering all of them), as in MiniLLM (Gu et al. 2024, "MiniLLM: Knowledge
    Distillation of Large Language Models")."""
    t = float(temperature)
    return reverse_kl(*log_probs(student_logits, teacher_logits, t)) * (t * t)


def js_per_sample(student_logits, teacher_logits, temperature) -> torch.Tensor:
    """``T² · JS(teacher, student)``: symmetric and bounded by ``T² · ln 2``; the generalised JSD of
    GKD (Agarwal et al. 2024, "On-Policy Distillation of Language Models") at beta = 0.5."""
    t = float(temperature)
    return generalized_jsd(*log_probs(student_logits, teacher_logits, t), 0.5) * (0.25 * t * t)


def gjsd_per_sample(student_logits, teacher_logits, temperature, beta: float = 0.5) -> torch.Tensor:
    """``T² · JSD_beta / (beta (1 - beta))``: GKD's generalized JSD, from forward KL (beta = 0) to
    reverse KL (beta = 1); see :func:`~distiltune.losses.vocab.generalized_jsd`."""
    t = float(temperature)
    return generalized_jsd(*log_probs(student_logits, teacher_logits, t), beta) * (t * t)


def tv_per_sample(student_logits, teacher_logits, temperature) -> torch.Tensor:
    """``T · TV(teacher/T, student/T)``, total variation in [0, T]. Scaled by T, not T²: its gradient
    in the logits shrinks as 1/T (the KLs' as 1/T²), so this keeps it comparable across temperatures."""
    t = float(temperature)
    return total_variation(*log_probs(student_logits, teacher_logits, t)) * t


def logit_mse_per_sample(student_logits, teacher_logits, temperature=None) -> torch.Tensor:
    """Mean squared error between raw logits (Ba & Caruana 2014, "Do Deep Nets Really Need to be
    Deep?"); the T -> infinity limit of KD, blind to the temperature."""
    return (student_logits.float() - teacher_logits.float()).pow(2).mean(-1)


def teacher_confidence(teacher_logits, labels: torch.Tensor | None) -> torch.Tensor:
    """Per-row weight in [0, 1]: the teacher's probability of the true label on labelled rows (low
    when it is wrong), its top probability on unlabeled rows (low when it is unsure). Dynamic KD
    by teacher confidence, after Li et al. 2021 ("Dynamic Knowledge Distillation for Pre-trained
    Language Models"). A sparse teacher (at the temperature it was read for) gives a label outside
    its top-k the weight 0."""
    with torch.no_grad():
        if isinstance(teacher_logits, TopK):
            ids = teacher_logits.ids.long()
            logp = teacher_logits.log_probs()[..., :ids.shape[-1]]
        else:  # a chunk of positions at a time: no full-size fp32 softmax of a vocabulary
            logp = per_position(lambda rows: F.log_softmax(rows.float(), -1).max(-1).values, teacher_logits)
            ids = None
        w = logp.max(-1).values.exp() if ids is not None else logp.exp()
        if labels is not None:
            labels = labels.reshape(w.shape).long()
            known = labels != IGNORE_INDEX  # no `if known.any()`: a host sync per step on a GPU
            if ids is None:
                p_label = per_position(lambda rows, lab: F.log_softmax(rows.float(), -1).gather(-1, lab[:, None])[:, 0],
                                         teacher_logits, labels.clamp(min=0)).exp()
            else:
                hit = ids == labels.clamp(min=0).unsqueeze(-1)
                p_label = (logp.exp() * hit).sum(-1)
            w = torch.where(known, p_label, w)
    return w


def weighted_mean(per_sample: torch.Tensor, weights: torch.Tensor | None) -> torch.Tensor:
    if weights is None:
        return per_sample.mean()
    return (per_sample * weights).sum() / weights.sum().clamp_min(1e-8)


# ---------- registered terms ----------

@register_loss("ce")
class HardLabelTerm(LossTerm):
    description = "cross-entropy on hard labels (MSE for regression); unlabeled rows are skipped"

    def forward(self, student_out, teacher_out, batch):
        labels = batch["labels"]
        if labels is None or labels.shape[0] != student_out.logits.shape[0]:
            got = None if labels is None else tuple(labels.shape)
            raise DistilTuneError(f"loss term 'ce': labels {got} do not match logits {tuple(student_out.logits.shape)}",
                                  "give one label per row (-100 for unlabeled rows)")
        return hard_label_loss(student_out.logits, labels)


class _LogitTerm(LossTerm):
    """A teacher-vs-student logit divergence, optionally weighted per sample by teacher confidence."""

    needs_teacher = True
    per_sample = staticmethod(kd_per_sample)

    def __init__(self, weighting: str = "none"):
        super().__init__()
        if weighting not in WEIGHTINGS:
            raise DistilTuneError(f"loss term '{self.name}': weighting '{weighting}' is unknown",
                                  f"use one of {', '.join(WEIGHTINGS)}")
        self.weighting = weighting

    def options(self) -> tuple:
        """Extra arguments of ``per_sample`` after the temperature (e.g. gjsd's beta)."""
        return ()

    def forward(self, student_out, teacher_out, batch):
        s, t = student_out.logits, teacher_out.logits.detach()  # the teacher only teaches
        if tuple(s.shape) != tuple(t.shape):
            raise DistilTuneError(f"loss term '{self.name}': student logits {tuple(s.shape)} vs teacher logits {tuple(t.shape)}",
                                  "give teacher and student the same label set")
        if s.shape[-1] == 1 and self.per_sample not in (kd_per_sample, logit_mse_per_sample):
            raise DistilTuneError(f"loss term '{self.name}' compares class distributions, but the model has one output (regression)",
                                  "use logit_loss: kd or logit_mse (both are MSE for one output)")
        if isinstance(t, TopK) and self.per_sample is logit_mse_per_sample:
            raise DistilTuneError(f"loss term '{self.name}' compares raw logits, but the teacher is kept as top-k log-probabilities",
                                  "use kd, reverse_kl, js, gjsd or tv with a top-k teacher cache")
        mask, labels, at = batch.get("position_mask"), batch.get("labels"), None
        if mask is not None and s.dim() > 2 and tuple(mask.shape) == tuple(s.shape[:-1]):
            # per word or token: only the real positions are computed (a language model's prompt and padding
            # are often half its positions); the one read-back of their count costs less than a vocabulary
            at = mask.reshape(-1).nonzero().squeeze(1)
            labels = labels.reshape(-1).index_select(0, at) if labels is not None and labels.numel() == mask.numel() \
                else None
            mask = None
        # a chunk of positions at a time: (batch, length, vocabulary) never goes to fp32 whole
        per = per_position(self.per_sample, s, t, batch.get("temperature", 1.0), *self.options(), at=at)
        if at is not None and per.numel() == 0:  # no position to read: an exact zero that keeps the graph
            return s.sum() * 0.0
        w = None
        if self.weighting == "confidence" and s.shape[-1] > 1:
            if at is not None:  # the teacher at the positions read
                t = t.flat().take_rows(at) if isinstance(t, TopK) else t.reshape(-1, t.shape[-1]).index_select(0, at)
            w = teacher_confidence(t, labels)
        if mask is not None and per.dim() > 1:  # per word or token: the mean over real positions, not padding
            w = mask.float() if w is None else w * mask
        return weighted_mean(per, w)


@register_loss("kd")
class SoftTargetTerm(_LogitTerm):
    description = "T^2 * KL(teacher/T || student/T), batchmean (Hinton et al. 2015); weighting: confidence = dynamic KD"
    per_sample = staticmethod(kd_per_sample)


@register_loss("reverse_kl")
class ReverseKLTerm(_LogitTerm):
    description = "T^2 * KL(student/T || teacher/T): mode-seeking (MiniLLM, Gu et al. 2024)"
    per_sample = staticmethod(reverse_kl_per_sample)


@register_loss("js")
class JSTerm(_LogitTerm):
    description = "T^2 * Jensen-Shannon divergence of teacher and student (GKD, Agarwal et al. 2024)"
    per_sample = staticmethod(js_per_sample)


@register_loss("gjsd")
class GeneralizedJSDTerm(_LogitTerm):
    description = ("T^2 * generalized JSD / (beta (1 - beta)) (GKD, Agarwal et al. 2024): beta 0 = kd, "
                   "1 = reverse_kl; option beta")
    per_sample = staticmethod(gjsd_per_sample)

    def __init__(self, beta: float = 0.5, weighting: str = "none"):
        super().__init__(weighting)
        if not 0.0 <= float(beta) <= 1.0:
            raise DistilTuneError(f"loss term 'gjsd': beta {beta} is outside [0, 1]",
                                  "use 0 (forward KL), 1 (reverse KL) or a value between")
        self.beta = float(beta)

    def options(self):
        return (self.beta,)


@register_loss("tv")
class TotalVariationTerm(_LogitTerm):
    description = "T * total variation distance between teacher/T and student/T (bounded; no log of tiny probabilities)"
    per_sample = staticmethod(tv_per_sample)


@register_loss("logit_mse")
class LogitMSETerm(_LogitTerm):
    description = "MSE between raw logits (Ba & Caruana 2014); ignores the temperature"
    per_sample = staticmethod(logit_mse_per_sample)


def logit_loss_names() -> list[str]:
    """The registered terms that can be the main stage's logit loss (``logit_loss``): every
    teacher-vs-student logit divergence, the user's own registered subclasses included."""
    from .base import LOSSES

    return [n for n in LOSSES.names() if issubclass(LOSSES.get(n), _LogitTerm)]
