"""The task (hard-label) loss a model computes from its own logits, as a transformers head does."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from ..constants import IGNORE_INDEX
from .chunked import per_position


def hard_label_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Cross-entropy on labelled rows (label != -100), or MSE for one output column (regression,
    NaN = unlabeled). A batch with no labelled rows gives an exact zero that still has a graph.

    The mean over labelled rows is their sum over their count (at least 1), never a test of
    "any labelled row?": reading that flag back would stall the host on a GPU at every step."""
    if logits.shape[-1] == 1:
        logits = logits.float()
        labels = labels.float().view(-1)
        keep = torch.isfinite(labels)
        err = torch.where(keep, logits.view(-1) - labels.nan_to_num(0.0, 0.0, 0.0), 0.0)
        return err.pow(2).sum() / keep.sum().clamp(min=1)
    labels = labels.long()
    if logits.dim() > 2:  # one label per word or token: the labelled positions are rows, a chunk at a time
        labels = labels.reshape(logits.shape[:-1])
        at = (labels.reshape(-1) != IGNORE_INDEX).nonzero().squeeze(1)  # a prompt and padding: not computed at all
        per = per_position(_token_ce, logits, labels, at=at)
        return per.sum() / max(len(at), 1) if len(at) else logits.sum() * 0.0
    total = F.cross_entropy(logits.float(), labels, ignore_index=IGNORE_INDEX, reduction="sum")
    return total / (labels != IGNORE_INDEX).sum().clamp(min=1)


def _token_ce(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Cross-entropy per row (0 where the label is -100), in fp32 for this chunk only."""
    return F.cross_entropy(logits.float(), labels, ignore_index=IGNORE_INDEX, reduction="none")
