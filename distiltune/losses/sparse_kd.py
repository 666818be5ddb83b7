"""Forward KL from a sparse (top-k) teacher with its gradient in closed form: the one token-level term
a language model's distillation spends most of its loss time on, in a few passes over the vocabulary
instead of autograd's twenty (log-softmax, the rest bucket's masked copy and log-sum-exp, each
recomputed and differentiated). Same value and gradient as ``vocab.log_probs`` + ``vocab.forward_kl``
(+ ``vocab.tail_correction`` with draws): tests/test_vocab_losses.py checks both against autograd.

With q = softmax(z / T) and the teacher's buckets p (top-k ids, then the rest R with mass p_R), the
gradient of T² · KL in the logits is ``T · (q - target)``: the target is p_i at a top-k id, and at a
rest id j ``q_j · p_R / q_R`` (the teacher's rest mass spread as the student spreads its own). The
draws' estimate of the divergence inside the rest moves that spread toward the draws: at a rest id j,
``q_j · p_R (1 - w̄) / q_R + p_R · Σ_{s: id_s = j} w_s / m`` (w̄ the mean importance weight).
"""
from __future__ import annotations

import torch

TINY = torch.finfo(torch.float32).tiny  # the student's rest mass may underflow: its log stays finite


def _parts(z: torch.Tensor, teacher, t: float):
    """q (the student's softmax at t, the teacher's top-k ids zeroed: its rest), log q at those ids,
    log q_R, and the teacher's bucket log-probabilities; fp32, one chunk of rows."""
    y = z.float() if t == 1.0 else z.float() / t
    lse = torch.logsumexp(y, dim=-1, keepdim=True)
    q = (y - lse).exp_()
    ids = teacher.ids.long()
    log_top = y.gather(-1, ids) - lse
    if ids.shape[-1] >= teacher.vocab:
        return q, log_top, None, teacher.log_probs(), y, lse
    q.scatter_(-1, ids, 0.0)
    log_rest = q.sum(-1).clamp_min(TINY).log()
    return q, log_top, log_rest, teacher.log_probs(), y, lse


def _kl_rows(log_t, log_top, log_rest):
    log_s = log_top if log_rest is None else torch.cat([log_top, log_rest.unsqueeze(-1)], dim=-1)
    return (log_t.exp() * (log_t - log_s)).sum(-1)


def _draws(teacher, y, lse, log_rest, t: float):
    """Per draw: its importance weight w and log π - log ρ (the teacher's and student's renormalised rests)."""
    sv = teacher.sample_values.float()
    log_pi = sv / t - teacher.tail.float().unsqueeze(-1)
    w = (log_pi - (sv - teacher.tail_one.float().unsqueeze(-1))).exp()
    log_rho = y.gather(-1, teacher.sample_ids.long()) - lse - log_rest.unsqueeze(-1)
    return w, log_pi - log_rho


def _unit_grad(parts, teacher, t: float) -> torch.Tensor:
    """d(T² KL)/dz per row for an upstream gradient of 1: ``T · (q - target)`` (the module's docstring)."""
    q, log_top, log_rest, log_t, y, lse = parts
    ids = teacher.ids.long()
    p_top = log_t[..., :ids.shape[-1]].exp()
    if log_rest is None:  # every class kept: the target is the teacher itself
        return q.scatter_add_(-1, ids, -p_top).mul_(t)
    p_rest = log_t[..., -1].exp()
    spread = p_rest / log_rest.exp()  # the teacher's rest mass over the student's
    if teacher.sampled:
        w, _ = _draws(teacher, y, lse, log_rest, t)
        spread = spread * (1.0 - w.mean(-1))
    grad = q.mul_((1.0 - spread).unsqueeze(-1))  # rest ids: q_j - target_j without the draws
    grad.scatter_(-1, ids, log_top.exp() - p_top)  # top-k ids: q_i - p_i
    if teacher.sampled:
        grad.scatter_add_(-1, teacher.sample_ids.long(), -(p_rest.unsqueeze(-1) * w / w.shape[-1]))
    return grad.mul_(t)  # T² · (1/T) · d KL/dy


class SparseKD(torch.autograd.Function):
    """``T² · KL(teacher || student)`` per row for a :class:`~distiltune.losses.vocab.TopK` teacher; the
    gradient is computed with the value (one pass of the chunk's softmax serves both) and kept until
    the backward pass, in fp32 for this chunk of rows only."""

    @staticmethod
    def forward(ctx, z, teacher, t):
        parts = _parts(z, teacher, t)
        q, log_top, log_rest, log_t, y, lse = parts
        kl = _kl_rows(log_t, log_top, log_rest)
        if teacher.sampled:
            w, gap = _draws(teacher, y, lse, log_rest, t)
            kl = kl + log_t[..., -1].exp() * (w * gap).mean(-1)
        ctx.dtype = z.dtype
        if ctx.needs_input_grad[0]:
            ctx.save_for_backward(_unit_grad(parts, teacher, t))
        return kl * (t * t)

    @staticmethod
    def backward(ctx, grad_out):
        (grad,) = ctx.saved_tensors
        return (grad * grad_out.float().unsqueeze(-1)).to(ctx.dtype), None, None
