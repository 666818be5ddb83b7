"""Per-position computations over a large last axis (a vocabulary), a chunk of positions at a time.

Loss terms over (batch x length x vocabulary) logits use this so that the fp32 intermediates of a
softmax exist for one chunk only, in the forward and the backward pass (each chunk is recomputed in
the backward pass, not kept: activation checkpointing, or for a mask's positions ``_RowChunks``). The inputs keep their own
dtype (bf16 logits stay bf16); the gradient of the logits is the one full-size tensor, as for any
loss on them.
"""
from __future__ import annotations

import torch
from torch.utils.checkpoint import checkpoint

# fp32 elements of one chunk's (positions x classes) intermediates: 2^23 = 32 MiB each. A 152k
# vocabulary gives 55 positions a chunk; a classifier's batch is one chunk, computed directly.
CHUNK_ELEMENTS = 2 ** 23


def per_position(fn, logits: torch.Tensor, *others, chunk_elements: int = CHUNK_ELEMENTS,
                 at: torch.Tensor | None = None) -> torch.Tensor:
    """``fn(rows, *others_rows) -> (rows,)`` over all leading positions of ``logits`` (..., classes), a
    chunk of rows at a time, each under checkpointing when it needs a gradient (its fp32 intermediates
    are recomputed in the backward pass rather than kept). Each of ``others`` with the same leading
    shape (a teacher's logits or a sparse ``losses.vocab.TopK``, labels) is cut into the same rows; anything else (a
    temperature, a beta) is passed as it is. Returns shape ``logits.shape[:-1]`` (plus the trailing shape
    of ``fn``'s rows when it returns a vector per row).

    ``at``: the flat positions to compute (a language model's response tokens), shape ``(n,)`` in, ``(n,)``
    out. Each chunk gathers its rows inside the checkpointed function, so no copy of the kept logits
    outlives it: the backward pass gathers them again from the logits autograd keeps anyway."""
    lead, classes = logits.shape[:-1], logits.shape[-1]
    k = len(lead)

    def sparse(x) -> bool:  # a sparse distribution (losses.vocab.TopK): cut by its own methods
        return hasattr(x, "flat") and hasattr(x, "rows")

    def per_row(x) -> bool:
        return sparse(x) or (torch.is_tensor(x) and x.dim() >= k and tuple(x.shape[:k]) == tuple(lead))

    def flat(x):
        return x.flat() if sparse(x) else x.reshape(-1, *x.shape[k:])

    def cut(x, a, b):
        return x.rows(a, b) if sparse(x) else x[a:b]

    chunked = [per_row(o) for o in others]
    x = logits.reshape(-1, classes)
    rest = [flat(o) if c else o for o, c in zip(others, chunked)]
    n, rows = x.shape[0], max(1, chunk_elements // max(classes, 1))
    if at is not None:
        return _at_positions(fn, x, rest, chunked, at, rows)
    if n <= rows:
        res = fn(x, *rest)
        return res.reshape(*lead, *res.shape[1:])
    out = []
    for a in range(0, n, rows):
        b = min(a + rows, n)
        part = (x[a:b], *[cut(o, a, b) if c else o for o, c in zip(rest, chunked)])
        if torch.is_grad_enabled() and x.requires_grad:
            out.append(checkpoint(fn, *part, use_reentrant=False))
        else:
            out.append(fn(*part))
    return torch.cat(out).reshape(*lead, *out[0].shape[1:])


def _take(x, idx: torch.Tensor):
    return x.take_rows(idx) if hasattr(x, "take_rows") else x.index_select(0, idx)


def _at_positions(fn, x: torch.Tensor, rest: list, chunked: list[bool], at: torch.Tensor, rows: int) -> torch.Tensor:
    def run(flat, idx, *others):
        return fn(flat.index_select(0, idx), *_rows_of(others, chunked, idx))

    if torch.is_grad_enabled() and x.requires_grad and not any(torch.is_tensor(o) and o.requires_grad for o in rest):
        return _RowChunks.apply(x, at, rows, fn, rest, chunked)
    out = []
    for a in range(0, len(at), rows):
        idx = at[a:a + rows]
        if torch.is_grad_enabled() and x.requires_grad:
            out.append(checkpoint(run, x, idx, *rest, use_reentrant=False))
        else:
            out.append(run(x, idx, *rest))
    return torch.cat(out) if out else x.new_zeros((0,), dtype=torch.float32)


class _RowChunks(torch.autograd.Function):
    """``fn`` over the rows ``at`` of ``x``, a chunk at a time, each chunk's derivative taken as it is
    computed and written into one buffer the size of ``x``, which the backward pass scales by the
    rows' upstream gradients and returns as ``x``'s gradient: each chunk is computed once, with its
    gradient, and its fp32 intermediates are freed before the next. (Checkpointing each chunk of an
    ``index_select`` instead computes it twice and makes autograd build a zero tensor the size of all
    the logits per chunk, added into the total: most of a distillation step's loss time on a CPU.)
    ``fn`` is per row (row r of its output reads row r of its inputs), so the gradient of its sum is
    each row's own; the rows of ``at`` are distinct (a mask's positions). The buffer stands for the
    gradient autograd would otherwise allocate in the backward pass."""

    @staticmethod
    def forward(ctx, x, at, rows, fn, rest, chunked):
        grad, out = torch.zeros_like(x), []
        for a in range(0, len(at), rows):
            idx = at[a:a + rows]
            with torch.enable_grad():
                part = x.index_select(0, idx).detach().requires_grad_(True)
                res = fn(part, *_rows_of(rest, chunked, idx))
                (g,) = torch.autograd.grad(res.sum(), part)
            grad.index_copy_(0, idx, g.to(grad.dtype))
            out.append(res.detach())
        ctx.save_for_backward(grad, at)
        return torch.cat(out) if out else x.new_zeros((0,), dtype=torch.float32)

    @staticmethod
    def backward(ctx, grad_out):
        grad, at = ctx.saved_tensors
        scale = grad_out.to(grad.dtype).unsqueeze(-1)
        grad.index_copy_(0, at, grad.index_select(0, at) * scale)  # the rows outside ``at`` stay 0
        return grad, None, None, None, None, None


def _rows_of(rest: list, chunked: list[bool], idx: torch.Tensor) -> list:
    return [_take(o, idx) if c else o for o, c in zip(rest, chunked)]
