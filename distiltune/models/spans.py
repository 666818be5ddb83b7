"""Start/end logits of extractive-QA heads as the loss terms read them: one (batch, 2, length)
tensor, so the logit terms (KD over a distribution, CE on a label) run over token positions with
no code of their own; row 0 is the start distribution and row 1 the end.
"""
from __future__ import annotations

import torch

# A logit that softmax turns into an exact zero at every temperature a schedule uses (exp(-1e4 / T)
# underflows for T <= 50), yet finite, so KL terms never meet inf - inf.
NEG = -1e4


def stacked(out) -> torch.Tensor:
    """(batch, 2, length) from a question-answering model output."""
    return torch.stack([out.start_logits, out.end_logits], dim=1)


def mask_spans(logits: torch.Tensor, span_mask: torch.Tensor) -> torch.Tensor:
    """Positions that cannot start or end an answer (question, special tokens, padding) get NEG."""
    n = min(logits.shape[-1], span_mask.shape[-1])
    logits = logits[..., :n]
    return logits.masked_fill(~span_mask[:, None, :n].bool(), NEG)


def fit_positions(logits: torch.Tensor, n: int) -> torch.Tensor:
    """Cut or zero-pad the last axis to ``n`` positions (cached rows are as long as the longest in the batch)."""
    have = logits.shape[-1]
    if have >= n:
        return logits[..., :n]
    return torch.nn.functional.pad(logits, (0, n - have))


def moved_to_student(teacher: torch.Tensor, n: int, temperature: float) -> torch.Tensor:
    """A teacher with another tokenizer: ``teacher`` is (batch, 4, teacher length) = its start and end
    logits and, as floats, each teacher token's student position + 1 for the start and for the end
    (0: none; so zero padding means none). Returns (batch, 2, n) logits for the student's positions
    whose softmax at ``temperature`` is the teacher's softened distribution moved to them: each
    teacher token's probability goes whole to one student token and several teacher tokens landing on
    one student token add up, exactly at every temperature. Teacher tokens with nowhere to go
    (question, padding) drop out and the rest is renormalised. The loss terms divide by T, so the
    values are T * log p."""
    t = float(temperature)
    logits, where = teacher[:, :2].float(), teacher[:, 2:].round().long() - 1
    valid = where >= 0
    p = torch.softmax((logits / t).masked_fill(~valid, float("-inf")), dim=-1).nan_to_num(0.0)
    out = torch.zeros(*logits.shape[:2], n, device=logits.device, dtype=p.dtype)
    out.scatter_add_(2, where.clamp(min=0, max=n - 1), p * valid)
    return t * out.clamp_min(1e-30).log().clamp(min=NEG / max(t, 1.0))
