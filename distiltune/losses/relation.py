"""Relation-based terms: how examples in a batch relate to each other, compared between models.

Each model's relations are computed in its own feature space, so widths never need to match
and no projection is learned. Features are sequence-level (pooled hidden states, or a named
submodule's output flattened per example), so different tokenizers are fine.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from ..errors import DistilTuneError
from .base import register_loss
from .feature import FeaturePairs, pool

# ---------- pure functions on (batch, dim) features ----------


def _normalised_distances(x: torch.Tensor) -> torch.Tensor:
    d = torch.cdist(x, x, p=2)
    off = ~torch.eye(len(x), dtype=torch.bool, device=x.device)
    return d[off] / d[off].mean().clamp_min(1e-8)


def rkd_distance(s: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """RKD distance loss (Park et al. 2019, "Relational Knowledge Distillation"): Huber loss between
    the pairwise-distance matrices of the batch, each divided by its mean distance."""
    if len(s) < 2:
        return s.sum() * 0.0
    with torch.no_grad():
        td = _normalised_distances(t.float())
    return F.smooth_l1_loss(_normalised_distances(s.float()), td)


def _angles(x: torch.Tensor) -> torch.Tensor:
    e = F.normalize(x.unsqueeze(0) - x.unsqueeze(1), p=2, dim=2)  # e[i, j] = unit(x_j - x_i)
    return torch.bmm(e, e.transpose(1, 2)).reshape(-1)  # cos of the angle at i between j and k


def rkd_angle(s: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """RKD angle loss (Park et al. 2019): Huber loss between the cosines of all triplet angles."""
    if len(s) < 3:
        return s.sum() * 0.0
    with torch.no_grad():
        ta = _angles(t.float())
    return F.smooth_l1_loss(_angles(s.float()), ta)


def sp_loss(s: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """Similarity-preserving KD (Tung & Mori 2019, "Similarity-Preserving Knowledge Distillation"):
    ``||G_s - G_t||_F^2 / b^2`` with ``G = row_normalise(F F^T)`` the batch similarity matrix."""
    s, t = s.float().flatten(1), t.float().flatten(1)
    gs = F.normalize(s @ s.t(), p=2, dim=1)
    gt = F.normalize(t @ t.t(), p=2, dim=1)
    return (gs - gt.detach()).pow(2).sum() / (len(s) ** 2)


# ---------- registered terms ----------

class _RelationTerm(FeaturePairs):
    """Pairs features like the feature terms, but compares within-model relations: no projection."""

    default_layers = "last"
    relation = staticmethod(rkd_distance)

    def __init__(self, layers=None, student_modules=None, teacher_modules=None, pool: str = "mean"):
        if pool == "none":
            raise DistilTuneError(f"loss term '{self.name}' compares examples, so it needs one vector per example",
                                  "use pool: mean or pool: cls")
        super().__init__(layers, student_modules, teacher_modules, pool=pool, projection=False)
        self.token_level = False

    def build(self, student_out, teacher_out):
        pass  # nothing to learn

    def _prepared(self, s, t, student_out, teacher_out):
        s, t = pool(s, student_out.attention_mask, self.pool), pool(t, teacher_out.attention_mask, self.pool)
        return s.flatten(1), t.flatten(1)

    def _project(self, i, s, t):
        return s

    def compare(self, s, t, mask):
        return self.relation(s, t)


@register_loss("rkd_distance")
class RKDDistance(_RelationTerm):
    description = "RKD distance: pairwise distances within the batch (Park et al. 2019)"
    relation = staticmethod(rkd_distance)


@register_loss("rkd_angle")
class RKDAngle(_RelationTerm):
    description = "RKD angle: angles of example triplets within the batch (Park et al. 2019)"
    relation = staticmethod(rkd_angle)


@register_loss("sp")
class SimilarityPreserving(_RelationTerm):
    description = "similarity-preserving KD: batch similarity matrices (Tung & Mori 2019)"
    relation = staticmethod(sp_loss)
