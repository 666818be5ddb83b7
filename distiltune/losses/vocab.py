"""Divergences between teacher and student distributions, over any number of classes (2 labels or a
262k-token vocabulary), a dense teacher or a sparse one (top-k log-probabilities plus the exact
remaining mass, as the teacher cache keeps them for language models).

Per-position values are computed a chunk of positions at a time, each chunk under activation
checkpointing: the fp32 log-softmax of (batch x length x vocabulary) logits is never held for more than
one chunk, in the forward or the backward pass. The inputs keep their own dtype (bf16 logits stay
bf16); the gradient of the logits is the one full-size tensor, as for any loss on them.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch.utils.checkpoint import checkpoint

# fp32 elements of one chunk's (positions x classes) intermediates: 2^23 = 32 MiB each. A 152k
# vocabulary gives 55 positions a chunk; a classifier's batch is one chunk, computed directly.
CHUNK_ELEMENTS = 2 ** 23


@dataclass
class TopK:
    """A teacher distribution kept sparse, per position: its ``k`` most likely classes (``ids``,
    ``logprobs`` at temperature 1) and ``rest``, the log of the mass of all other ``vocab - k``
    classes (exact: computed from the full distribution when the cache was built)."""

    ids: torch.Tensor       # (..., k) int
    logprobs: torch.Tensor  # (..., k)
    rest: torch.Tensor      # (...)
    vocab: int

    @property
    def shape(self):  # the dense shape it stands for
        return (*self.ids.shape[:-1], self.vocab)

    def flat(self) -> "TopK":
        return TopK(self.ids.reshape(-1, self.ids.shape[-1]), self.logprobs.reshape(-1, self.logprobs.shape[-1]),
                    self.rest.reshape(-1), self.vocab)

    def rows(self, a: int, b: int) -> "TopK":
        return TopK(self.ids[a:b], self.logprobs[a:b], self.rest[a:b], self.vocab)

    def detach(self) -> "TopK":
        return self


def top_k(logits: torch.Tensor, k: int) -> TopK:
    """The sparse form of a dense teacher: top-k log-probabilities and the log of the exact rest."""
    logp = F.log_softmax(logits.float(), dim=-1)
    values, ids = logp.topk(k, dim=-1)
    return TopK(ids, values, log_rest(values), logits.shape[-1])


def log_rest(top_logprobs: torch.Tensor) -> torch.Tensor:
    """log(1 - sum(exp(top))), stable when the top classes hold almost all the mass."""
    top = torch.logsumexp(top_logprobs.float(), dim=-1)
    return torch.log(-torch.expm1(top.clamp(max=0.0))).clamp_min(torch.finfo(torch.float32).min)


def log_probs(student_logits: torch.Tensor, teacher, temperature: float) -> tuple[torch.Tensor, torch.Tensor]:
    """(teacher, student) log-probabilities at ``temperature`` over the same last axis, in fp32.

    A dense teacher: both softmaxes over all classes. A :class:`TopK` teacher: ``k + 1`` buckets, its
    top-k classes and one for everything else; the student's softmax is read at the same ids and the
    rest of its mass goes to the last bucket. A divergence between the bucketed distributions is a
    lower bound of the dense one (merging classes loses no mass, only detail). At T = 1 the teacher's
    buckets are exact; at T != 1 the rest bucket's tempered mass is taken as if spread evenly over the
    other classes (its exact value needs every logit), an estimate measured in benchmarks/topk_error.py.
    """
    t = float(temperature)
    log_p_s = F.log_softmax(student_logits.float() / t, dim=-1)
    if not isinstance(teacher, TopK):
        return F.log_softmax(teacher.float() / t, dim=-1), log_p_s
    ids = teacher.ids.long()
    if ids.shape[-1] >= teacher.vocab:  # every class kept: nothing is left for a rest bucket
        return (teacher.logprobs.float() / t).log_softmax(-1), log_p_s.gather(-1, ids)
    top_s = log_p_s.gather(-1, ids)
    # the student's other classes summed directly: 1 - sum(top) loses all precision (and its
    # gradient) when the student puts almost all its mass on the teacher's top-k
    rest_s = torch.logsumexp(log_p_s.scatter(-1, ids, float("-inf")), dim=-1)
    others = max(teacher.vocab - teacher.ids.shape[-1], 1)
    rest_t = teacher.rest.float()
    if t != 1.0:
        rest_t = math.log(others) + (rest_t - math.log(others)) / t
    log_q = torch.cat([teacher.logprobs.float() / t, rest_t.unsqueeze(-1)], dim=-1)
    return log_q - torch.logsumexp(log_q, dim=-1, keepdim=True), torch.cat([top_s, rest_s.unsqueeze(-1)], dim=-1)


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


def per_position(fn, logits: torch.Tensor, *others, chunk_elements: int = CHUNK_ELEMENTS) -> torch.Tensor:
    """``fn(rows, *others_rows) -> (rows,)`` over all leading positions of ``logits`` (..., classes), a
    chunk of rows at a time, each under checkpointing when it needs a gradient (its fp32 intermediates
    are recomputed in the backward pass rather than kept). Each of ``others`` with the same leading
    shape (a teacher's logits or :class:`TopK`, labels) is cut into the same rows; anything else (a
    temperature, a beta) is passed as it is. Returns shape ``logits.shape[:-1]``."""
    lead, classes = logits.shape[:-1], logits.shape[-1]
    k = len(lead)

    def per_row(x) -> bool:
        return isinstance(x, TopK) or (torch.is_tensor(x) and x.dim() >= k and tuple(x.shape[:k]) == tuple(lead))

    def flat(x):
        return x.flat() if isinstance(x, TopK) else x.reshape(-1, *x.shape[k:])

    def cut(x, a, b):
        return x.rows(a, b) if isinstance(x, TopK) else x[a:b]

    chunked = [per_row(o) for o in others]
    x = logits.reshape(-1, classes)
    rest = [flat(o) if c else o for o, c in zip(others, chunked)]
    n, rows = x.shape[0], max(1, chunk_elements // max(classes, 1))
    if n <= rows:
        return fn(x, *rest).reshape(lead)
    out = []
    for a in range(0, n, rows):
        b = min(a + rows, n)
        part = (x[a:b], *[cut(o, a, b) if c else o for o, c in zip(rest, chunked)])
        if torch.is_grad_enabled() and x.requires_grad:
            out.append(checkpoint(fn, *part, use_reentrant=False))
        else:
            out.append(fn(*part))
    return torch.cat(out).reshape(lead)
