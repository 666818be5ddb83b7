"""Divergences between teacher and student distributions, over any number of classes (2 labels or a
262k-token vocabulary), a dense teacher or a sparse one (top-k logits plus the exact tail mass, as the
teacher cache keeps them for language models). Terms compute them a chunk of positions at a time
(``models.chunked.per_position``), so a vocabulary's fp32 softmax exists for one chunk only.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ..models.chunked import CHUNK_ELEMENTS, per_position  # noqa: F401  (per_position: the terms' entry point)


@dataclass
class TopK:
    """A teacher distribution kept sparse, per position, as the teacher cache keeps it: the ``k``
    largest logits (``values``, at ``ids``; any constant shift per position, such as log-probabilities)
    and ``tail``, the log-sum-exp of all other ``vocab - k`` values divided by ``temperature`` (exact
    at the cache's grid of temperatures, interpolated between them: ``data.cache_forms.tail_at``).

    Optionally (a language model's cache, ``teacher_cache_tail_samples``) ``m`` ids drawn from the
    teacher's tail at T = 1 (``sample_ids``, with replacement), their values on the same scale
    (``sample_values``) and the tail's log-sum-exp at T = 1 (``tail_one``): forward KL then adds an
    estimate of the divergence within the tail that the buckets cannot see (:func:`tail_correction`)."""

    ids: torch.Tensor     # (..., k) int
    values: torch.Tensor  # (..., k)
    tail: torch.Tensor    # (...)
    vocab: int
    temperature: float = 1.0
    sample_ids: torch.Tensor | None = None     # (..., m) int
    sample_values: torch.Tensor | None = None  # (..., m)
    tail_one: torch.Tensor | None = None       # (...)

    @property
    def shape(self):  # the dense shape it stands for
        return (*self.ids.shape[:-1], self.vocab)

    @property
    def sampled(self) -> bool:
        """Whether forward KL reads the tail draws: where there are some, at T = 1, the temperature they
        were drawn at. Above 1 the tail flattens away from them (at T = 2 on a Zipf tail importance
        weights make the gradient noisier than the buckets' bias), below 1 the tail's log-sum-exp is
        extrapolated off the cache's grid: there the buckets apply as they are."""
        return self.sample_ids is not None and self.sample_ids.shape[-1] > 0 and abs(self.temperature - 1.0) <= 1e-6

    def _map(self, per_pos, per_vec) -> "TopK":
        """The same form with ``per_vec`` applied to the (..., k) and (..., m) fields and ``per_pos`` to the (...) ones."""
        opt = (lambda f, x: None if x is None else f(x))
        return TopK(per_vec(self.ids), per_vec(self.values), per_pos(self.tail), self.vocab, self.temperature,
                    opt(per_vec, self.sample_ids), opt(per_vec, self.sample_values), opt(per_pos, self.tail_one))

    def flat(self) -> "TopK":
        return self._map(lambda x: x.reshape(-1), lambda x: x.reshape(-1, x.shape[-1]))

    def rows(self, a: int, b: int) -> "TopK":
        return self._map(lambda x: x[a:b], lambda x: x[a:b])

    def detach(self) -> "TopK":
        return self

    def take_rows(self, idx: torch.Tensor) -> "TopK":
        """Rows ``idx`` of a flat (positions, k) TopK."""
        return self._map(lambda x: x.index_select(0, idx), lambda x: x.index_select(0, idx))

    def log_probs(self) -> torch.Tensor:
        """Its ``k + 1`` bucket log-probabilities at its temperature: the top-k classes, then the rest."""
        t = float(self.temperature)
        z = self.values.float() / t
        if self.ids.shape[-1] < self.vocab:
            z = torch.cat([z, self.tail.float().unsqueeze(-1)], dim=-1)
        return z - torch.logsumexp(z, dim=-1, keepdim=True)


def top_k(logits: torch.Tensor, k: int, temperature: float = 1.0) -> TopK:
    """The sparse form of a dense teacher at ``temperature``: its top-k logits and the exact tail."""
    z = logits.float()
    values, ids = z.topk(k, dim=-1)
    tail = torch.logsumexp((z / float(temperature)).scatter(-1, ids, float("-inf")), dim=-1)
    return TopK(ids, values, tail, logits.shape[-1], float(temperature))


def log_probs(student_logits: torch.Tensor, teacher, temperature: float) -> tuple[torch.Tensor, torch.Tensor]:
    """(teacher, student) log-probabilities at ``temperature`` over the same last axis, in fp32.

    A dense teacher: both softmaxes over all classes. A :class:`TopK` teacher: ``k + 1`` buckets, its
    top-k classes and one for all the others, exact for the teacher; the student's softmax is read at
    the same ids and the rest of its mass goes to the last bucket. A divergence between the bucketed
    distributions is a lower bound of the dense one (merging classes loses no mass, only the detail
    within the merged classes), measured in benchmarks/topk_error.py; forward KL recovers the
    rest from tail samples where the cache has them (:func:`sampled_forward_kl`).
    """
    t = float(temperature)
    log_p_s = F.log_softmax(student_logits.float() / t, dim=-1)
    if not isinstance(teacher, TopK):
        return F.log_softmax(teacher.float() / t, dim=-1), log_p_s
    return teacher.log_probs(), _student_buckets(log_p_s, teacher, t)


def _student_buckets(log_p_s: torch.Tensor, teacher: TopK, t: float) -> torch.Tensor:
    """The student's log-probabilities at a sparse teacher's ``k`` ids, then its rest bucket."""
    if abs(teacher.temperature - t) > 1e-6:
        raise ValueError(f"a top-k teacher at temperature {teacher.temperature} read at temperature {t}")
    ids = teacher.ids.long()
    top_s = log_p_s.gather(-1, ids)
    if ids.shape[-1] >= teacher.vocab:  # every class kept: nothing is left for a rest bucket
        return top_s
    # the student's other classes summed directly: 1 - sum(top) loses all precision (and its
    # gradient) when the student puts almost all its mass on the teacher's top-k
    rest_s = torch.logsumexp(log_p_s.scatter(-1, ids, float("-inf")), dim=-1)
    return torch.cat([top_s, rest_s.unsqueeze(-1)], dim=-1)


def sampled_forward_kl(student_logits: torch.Tensor, teacher: TopK, temperature: float) -> torch.Tensor:
    """KL(teacher || student) from a sparse teacher with tail samples: the bucketed KL plus
    :func:`tail_correction`, per position."""
    t = float(temperature)
    log_p_s = F.log_softmax(student_logits.float() / t, dim=-1)
    log_t, log_s = teacher.log_probs(), _student_buckets(log_p_s, teacher, t)
    return _kl(log_t, log_s) + tail_correction(log_p_s, log_s[..., -1], log_t[..., -1], teacher, t)


def tail_correction(log_p_s: torch.Tensor, rest_s: torch.Tensor, rest_t: torch.Tensor, teacher: TopK,
                    t: float) -> torch.Tensor:
    """What the buckets miss of forward KL: with the tails renormalised (teacher π over its non-top-k
    ids at temperature t, student ρ over the same ids), the exact KL is the bucketed one plus
    ``p_rest · KL(π || ρ)``. That KL is estimated from the cached draws j ~ π at T = 1 by importance
    weighting, ``mean_j w_j (log π_j - log ρ_j)`` with ``w_j = π_j / π¹_j``, every factor from the
    cache (the tail's log-sum-exp at t and at 1): unbiased in value and gradient; training reads it
    at t = 1 only, where w = 1 (:attr:`TopK.sampled`). A draw's gradient reaches the student's logit at that id, like the hard label of
    cross-entropy, which is itself a single draw: noise, not bias (benchmarks/topk_error.py --lm).
    ``rest_s``, ``rest_t``: the student's and teacher's log rest bucket."""
    sv, sid = teacher.sample_values.float(), teacher.sample_ids.long()
    log_pi = sv / t - teacher.tail.float().unsqueeze(-1)
    log_w = log_pi - (sv - teacher.tail_one.float().unsqueeze(-1))
    log_rho = log_p_s.gather(-1, sid) - rest_s.unsqueeze(-1)
    return rest_t.exp() * (log_w.exp() * (log_pi - log_rho)).mean(-1)


def _kl(log_p: torch.Tensor, log_q: torch.Tensor) -> torch.Tensor:
    """KL(p || q) over the last axis (log-probabilities are finite: masked classes carry a large
    negative logit, never -inf, so no 0 * inf appears)."""
    return (log_p.exp() * (log_p - log_q)).sum(-1)


def forward_kl(log_t: torch.Tensor, log_s: torch.Tensor) -> torch.Tensor:
    """KL(teacher || student): mass-covering."""
    return _kl(log_t, log_s)


def reverse_kl(log_t: torch.Tensor, log_s: torch.Tensor) -> torch.Tensor:
    """KL(student || teacher): mode-seeking."""
    return _kl(log_s, log_t)


def generalized_jsd(log_t: torch.Tensor, log_s: torch.Tensor, beta: float) -> torch.Tensor:
    """GKD's generalized Jensen-Shannon divergence (Agarwal et al. 2024), divided by beta * (1 - beta).

    With M = beta * teacher + (1 - beta) * student, JSD_beta = beta * KL(teacher || M) + (1 - beta) *
    KL(student || M). It vanishes at beta = 0 and 1; divided by beta * (1 - beta) it tends to
    KL(teacher || student) as beta -> 0 and to KL(student || teacher) as beta -> 1, so the two ends are
    the two KLs and the scale stays comparable along the way (at 0.5: 4 * JS). Within 1e-3 of an end
    the KL itself is used: there the fp32 difference of two near-equal logs, divided by beta, would
    be mostly rounding (the divergences differ by O(beta) there anyway).
    """
    if beta <= 1e-3:
        return forward_kl(log_t, log_s)
    if beta >= 1.0 - 1e-3:
        return reverse_kl(log_t, log_s)
    log_m = torch.logsumexp(torch.stack([log_t + math.log(beta), log_s + math.log1p(-beta)]), dim=0)
    jsd = beta * _kl(log_t, log_m) + (1.0 - beta) * _kl(log_s, log_m)
    return jsd / (beta * (1.0 - beta))


def total_variation(log_t: torch.Tensor, log_s: torch.Tensor) -> torch.Tensor:
    """Total variation distance, 0.5 * sum |teacher - student|, in [0, 1]."""
    return 0.5 * (log_t.exp() - log_s.exp()).abs().sum(-1)
