"""The teacher-output cache's storage forms and how a batch reads them back: full logits, the top-k
form (the k largest logits, their ids and the tail's log-sum-exp on a grid of temperatures), rows of
different shapes (per word, per position), and a language model's per-token top-k placed back at its
response positions. ``data.teacher_cache`` stores and finds them; this module only converts."""
from __future__ import annotations

import bisect

import numpy as np
import torch

from ..constants import TAIL_SAMPLE_COLUMNS, TAIL_TEMPERATURES, TOPK_COLUMNS

FULL = ("teacher_logits",)
TOPK = TOPK_COLUMNS
COLUMNS = FULL + TOPK + TAIL_SAMPLE_COLUMNS
IDS = ("teacher_topk_indices", "teacher_tail_ids")  # integer columns


def compress(logits, k: int | None) -> dict[str, list]:
    """Full logits, or the top-k form: the k largest values and their indices, plus the log-sum-exp
    of the missing logits at each of TAIL_TEMPERATURES (their exact softened mass there). A list of
    arrays (one (words, C) array per row: word-level tasks) is stored whole, row by row. A dict holds
    columns a task compressed itself (a language model's per-token top-k: never a dense vocabulary)."""
    if isinstance(logits, dict):
        return logits
    if isinstance(logits, list):
        if k is not None:
            raise ValueError("teacher_cache_topk applies to one logit vector per row, not to per-word outputs")
        return {"teacher_logits": [np.asarray(a, dtype=np.float32).tolist() for a in logits]}
    n = logits.shape[-1]
    if k is None or k > n:
        return {"teacher_logits": logits.astype(np.float32).tolist()}
    idx = np.argsort(-logits, axis=-1, kind="stable")[:, :k]
    vals = np.take_along_axis(logits, idx, axis=-1)
    if k == n:  # nothing missing: the tail is never read
        tail = np.zeros((len(logits), len(TAIL_TEMPERATURES)))
    else:
        rest = logits.astype(np.float64)
        np.put_along_axis(rest, idx, -np.inf, axis=-1)
        hi = rest.max(-1, keepdims=True)
        tail = np.stack([(hi / t + np.log(np.exp((rest - hi) / t).sum(-1, keepdims=True)))[:, 0]
                         for t in TAIL_TEMPERATURES], axis=-1)
    return {"teacher_topk_values": vals.astype(np.float32).tolist(), "teacher_topk_indices": idx.astype(np.int64).tolist(),
            "teacher_tail_lse": tail.astype(np.float32).tolist()}


def tail_at(tail_lse: torch.Tensor, temperature: float) -> torch.Tensor:
    """The tail's log-sum-exp at ``temperature`` from its values on the TAIL_TEMPERATURES grid (last
    axis): exact on the grid, linear in 1/T between grid points, the end segment's slope beyond."""
    t = float(temperature)
    # the grid segment in plain Python: no small tensors to build and read back on every step
    beta = [1.0 / x for x in TAIL_TEMPERATURES]  # descending
    b = min(max(1.0 / t, beta[-1]), beta[0])
    j = min(max(bisect.bisect_left([-x for x in beta], -b), 1), len(beta) - 1)
    w = (b - beta[j - 1]) / (beta[j] - beta[j - 1])
    lo, hi = tail_lse[..., j - 1].double(), tail_lse[..., j].double()
    lse = lo * (1 - w) + hi * w
    if 1.0 / t != b:  # outside the grid: extend the end segment's slope
        lse = lse + (hi - lo) / (beta[j] - beta[j - 1]) * (1.0 / t - b)
    return lse


def dense(values: torch.Tensor, indices: torch.Tensor, tail_lse: torch.Tensor, n: int,
          temperature: float = 1.0) -> torch.Tensor:
    """Rebuild (batch, n) logits from the top-k form for a loss at ``temperature``: the k kept
    logits as they were, and the n - k missing ones all equal, at the value that gives them together
    the teacher's tail mass at that temperature (the tail's shape within is not kept)."""
    k = values.shape[-1]
    if k >= n:
        return torch.empty(values.shape[0], n, device=values.device).scatter_(1, indices.long(), values.float())
    t = float(temperature)
    lse = tail_at(tail_lse, t)
    fill = (t * (lse - np.log(n - k))).float()  # divided by T in the loss: log(mass / (n - k)) per class
    out = fill.reshape(-1, 1).expand(values.shape[0], n).clone()
    return out.scatter_(1, indices.long(), values.float())


def sparse_teacher(inputs: dict, positions: torch.Tensor, vocab: int, temperature: float = 1.0):
    """Pop a language model's cached per-token columns from a batch and place them at ``positions``
    ((batch, length) bool: the response tokens, in order) as a (batch, length, k)
    :class:`~distiltune.losses.vocab.TopK` at the step's temperature, with its tail samples where
    the cache drew them; None when not cached. Positions outside ``positions`` get the first token's
    entries, which no term reads (masked)."""
    from ..losses.vocab import TopK

    if "teacher_topk_values" not in inputs:
        return None
    vals, idx, tail = (inputs.pop(c) for c in TOPK)  # (batch, tokens, k), (batch, tokens, k), (batch, tokens, grid)
    where = (positions.long().cumsum(-1) - 1).clamp(min=0)  # the j-th response position reads entry j
    where = where.clamp(max=max(vals.shape[1] - 1, 0))

    def place(x):
        return x.gather(1, where.unsqueeze(-1).expand(*where.shape, x.shape[-1]))

    tail = place(tail)
    drawn = {}
    if TAIL_SAMPLE_COLUMNS[0] in inputs:
        s_ids, s_vals = (place(inputs.pop(c)) for c in TAIL_SAMPLE_COLUMNS)
        drawn = {"sample_ids": s_ids.long(), "sample_values": s_vals.float(), "tail_one": tail_at(tail, 1.0).float()}
    return TopK(place(idx).long(), place(vals).float(), tail_at(tail, temperature).float(), vocab,
                float(temperature), **drawn)


def collate(features: list[dict]) -> dict[str, torch.Tensor]:
    """The cached columns of a batch's rows, as tensors (every data collator uses this). Rows of
    different shapes (one (words, C) array per row for token classification) are zero-padded on
    every axis to the batch's largest; the collator's masks say which entries are real."""
    out = {}
    for col in COLUMNS:
        if col in features[0]:
            dtype = torch.long if col in IDS else torch.float32
            rows = [np.asarray(f[col]) for f in features]
            shape = tuple(max(sizes) for sizes in zip(*(r.shape for r in rows))) if rows[0].ndim else ()
            if any(r.shape != shape for r in rows):
                padded = np.zeros((len(rows), *shape), dtype=np.float32)
                for i, r in enumerate(rows):
                    padded[(i, *(slice(0, n) for n in r.shape))] = r
                out[col] = torch.from_numpy(padded).to(dtype)
            else:
                out[col] = torch.as_tensor(np.asarray(rows), dtype=dtype)
    return out


def teacher_logits_from(inputs: dict, num_classes: int, temperature: float = 1.0) -> torch.Tensor | None:
    """Pop the cached columns from a batch and return dense teacher logits (None when not cached);
    from the top-k form they are rebuilt for the step's temperature."""
    full = inputs.pop("teacher_logits", None)
    if full is not None:
        return full
    if "teacher_topk_values" not in inputs:
        return None
    vals, idx, tail = (inputs.pop(c) for c in TOPK)
    return dense(vals, idx, tail, num_classes, temperature)
