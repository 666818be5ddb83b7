"""Token-level terms under DDP: the mean over the tokens of the whole global batch, as one process
with that batch computes it.

Each rank's term is the mean over its own response tokens (or words), and DDP averages the ranks'
gradients, so a rank holding 10 tokens would weigh as much as one holding 50. Scaling each rank's
term by ``world_size * n_rank / n_all`` makes the average of the ranks' terms the mean over all
tokens: (1/W) Σ_r W (n_r / N) (s_r / n_r) = Σ_r s_r / N. One all-reduce of two counts a step
(asynchronous on a GPU: the scales stay on the device). Gradient accumulation still averages its
micro-batches' means.
"""
from __future__ import annotations

import torch
import torch.distributed as dist

from ..constants import IGNORE_INDEX


def token_scales(batch: dict, logits: torch.Tensor) -> dict[str, torch.Tensor] | None:
    """Per-rank scales of the terms that average over positions (``positions``: the KD terms' mask;
    ``labels``: the labelled tokens CE averages over), or None in one process or for one row per example."""
    if logits.dim() < 3 or not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() < 2:
        return None
    # per-position terms only (a language model's tokens, a tagger's words: a position mask of the
    # logits' leading shape); extractive QA's start/end rows keep the per-rank mean
    mask, labels = batch.get("position_mask"), batch.get("labels")
    if mask is None or tuple(mask.shape) != tuple(logits.shape[:-1]) or labels is None or labels.numel() != mask.numel():
        return None
    local = torch.stack([mask.sum().float(), (labels != IGNORE_INDEX).sum().float()])
    total = local.clone()
    dist.all_reduce(total)
    scale = local * dist.get_world_size() / total.clamp(min=1)
    return {"positions": scale[0], "labels": scale[1]}
