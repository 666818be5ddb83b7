"""Attention-based terms: attention maps (TinyBERT) and self-attention relations (MiniLM).

Attention maps are compared per head and need the teacher and student token positions to line
up (same tokenizer). HF models only return attention maps with the eager attention
implementation; distiltune run switches to it when such a term is used.
"""
from __future__ import annotations

import math

import torch

from ..models import features as FT
from ..models import layer_map
from ..errors import DistilTuneError
from .base import LossTerm, Requests, register_loss

_NEG = -1e9  # masked scores: exp() underflows to an exact 0 without producing NaN


# ---------- pure functions ----------

def _row_mask(mask: torch.Tensor | None, like: torch.Tensor) -> torch.Tensor:
    """(batch, seq) token mask -> (batch, 1, seq) float weights for query rows."""
    if mask is None:  # like: (batch, heads, q)
        return torch.ones(like.shape[0], 1, like.shape[-1], device=like.device)
    return mask.to(like.device).float().unsqueeze(1)


def attention_kl(s_att: torch.Tensor, t_att: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """KL(teacher || student) between attention distributions (batch, heads, q, k), summed over
    keys, averaged over heads and real (non-padding) query positions."""
    t, s = t_att.float().clamp_min(1e-12), s_att.float().clamp_min(1e-12)
    per_row = (t * (t.log() - s.log())).sum(-1)  # (batch, heads, q)
    w = _row_mask(mask, per_row)
    return (per_row * w).sum() / (w.sum() * per_row.shape[1]).clamp_min(1.0)


def attention_mse(s_att: torch.Tensor, t_att: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """MSE between attention maps over real query x key positions (TinyBERT's attention loss,
    here on probabilities: bounded, and unaffected by how a model masks its scores)."""
    se = (s_att.float() - t_att.float()).pow(2)
    if mask is None:
        return se.mean()
    m = mask.to(se.device).float()
    pair = m[:, None, :, None] * m[:, None, None, :]
    return (se * pair).sum() / (pair.sum() * se.shape[1]).clamp_min(1.0)


def relation_logits(a: torch.Tensor, b: torch.Tensor, heads: int, mask: torch.Tensor | None) -> torch.Tensor:
    """Log-softmax of scaled dot products between the ``heads`` slices of (batch, seq, dim) vectors:
    (batch, heads, seq, seq). Padding keys are masked out."""
    bsz, seq, dim = a.shape
    d = dim // heads
    a = a.float().view(bsz, seq, heads, d).transpose(1, 2)
    b = b.float().view(bsz, seq, heads, d).transpose(1, 2)
    scores = a @ b.transpose(-1, -2) / math.sqrt(d)
    if mask is not None:
        scores = scores.masked_fill(~mask.bool()[:, None, None, :], _NEG)
    return torch.log_softmax(scores, dim=-1)


def relation_kl(log_t: torch.Tensor, log_s: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    per_row = (log_t.exp() * (log_t - log_s)).sum(-1)
    w = _row_mask(mask, per_row)
    return (per_row * w).sum() / (w.sum() * per_row.shape[1]).clamp_min(1.0)


# ---------- registered terms ----------

class _AttentionMaps(LossTerm):
    needs_teacher = True
    uses_logits_only = False
    token_level = True
    reads_attentions = True
    compare = staticmethod(attention_kl)

    def __init__(self, layers="uniform", heads: str = "match"):
        super().__init__()
        if heads not in ("match", "mean"):
            raise DistilTuneError(f"loss term '{self.name}': heads '{heads}' is unknown", "use heads: match or heads: mean")
        if not (isinstance(layers, str) and layers in layer_map.PRESETS):
            layer_map.parse_pairs(layers)  # a malformed map fails at config time
        self.layers, self.heads = layers, heads
        self.pairs: list = []

    def setup(self, student, teacher):
        for model, role in ((student, "student"), (teacher, "teacher")):
            if not FT.is_hf(model):
                raise DistilTuneError(f"loss term '{self.name}' reads attention maps, which the {role} (not a transformers "
                                      "model) does not expose", "use a feature term with student_modules/teacher_modules")
        hs, ht = FT.num_heads(student), FT.num_heads(teacher)
        if hs != ht and self.heads == "match":
            raise DistilTuneError(f"loss term '{self.name}': the student has {hs} attention heads, the teacher {ht}",
                                  "use minilm (relation heads work across head counts), or heads: mean")
        self.pairs = layer_map.resolve(self.layers, FT.num_layers(student, "student"), FT.num_layers(teacher, "teacher"),
                                       getattr(student.config, "distiltune_teacher_layers", None))

    def requests(self):
        return Requests(attentions=True), Requests(attentions=True)

    def forward(self, student_out, teacher_out, batch):
        mask = batch.get("attention_mask")
        total = 0.0
        for s_i, t_is in self.pairs:
            losses = []
            for t_i in t_is:
                s, t = student_out.attentions[s_i], teacher_out.attentions[t_i].detach()
                if s.shape[0] != t.shape[0] or s.shape[-1] != t.shape[-1]:
                    raise DistilTuneError(f"loss term '{self.name}': student attention {tuple(s.shape)} vs teacher "
                                          f"{tuple(t.shape)}: rows or token positions differ",
                                          "feed both models the same batch tokenised by the same tokenizer")
                if self.heads == "mean":
                    s, t = s.mean(1, keepdim=True), t.mean(1, keepdim=True)
                losses.append(self.compare(s, t, mask))
            total = total + (losses[0] if len(losses) == 1 else torch.stack(losses).min())
        return total / len(self.pairs)


@register_loss("attention_kl")
class AttentionKL(_AttentionMaps):
    """KL between teacher and student attention maps per mapped layer and head, padding masked
    (TinyBERT, Jiao et al. 2020; KL form as in MiniLM, Wang et al. 2020)."""

    description = "KL of attention maps per mapped layer and head, padding masked (TinyBERT/MiniLM)"
    compare = staticmethod(attention_kl)


@register_loss("attention_mse")
class AttentionMSE(_AttentionMaps):
    """MSE between attention maps per mapped layer and head (TinyBERT, Jiao et al. 2020)."""

    description = "MSE of attention maps per mapped layer and head, padding masked (TinyBERT, Jiao et al. 2020)"
    compare = staticmethod(attention_mse)


@register_loss("minilm")
class MiniLMRelations(LossTerm):
    """Self-attention relation transfer (MiniLM, Wang et al. 2020, "MiniLM: Deep Self-Attention
    Distillation for Task-Agnostic Compression of Pre-Trained Transformers"; relation heads from
    MiniLMv2, Wang et al. 2021). Queries, keys and values of one layer are split into
    ``relation_heads`` slices; ``qk`` is the attention distribution softmax(QK^T/sqrt d), ``vv`` the
    value relation softmax(VV^T/sqrt d). KL(teacher || student) per relation. The relation
    matrices are seq x seq in both models, so hidden sizes and head counts may differ."""

    description = "MiniLM: self-attention distribution (QK) + value relation (VV) of the last layer, any widths"
    needs_teacher = True
    uses_logits_only = False
    token_level = True
    RELATIONS = {"qk": (0, 1), "qq": (0, 0), "kk": (1, 1), "vv": (2, 2)}

    def __init__(self, student_layer: int = -1, teacher_layer: int = -1, relation_heads: int | None = None,
                 relations: tuple | list = ("qk", "vv")):
        super().__init__()
        bad = [r for r in relations if r not in self.RELATIONS]
        if bad or not relations:
            raise DistilTuneError(f"loss term 'minilm': relations {list(relations)} not understood",
                                  f"use some of {', '.join(self.RELATIONS)}")
        for opt, v in (("student_layer", student_layer), ("teacher_layer", teacher_layer), ("relation_heads", relation_heads)):
            if v is not None and (not isinstance(v, int) or isinstance(v, bool) or (opt == "relation_heads" and v < 1)):
                raise DistilTuneError(f"loss term 'minilm': {opt}={v!r} must be an integer"
                                      + (" >= 1" if opt == "relation_heads" else " (-1 = last layer)"), f"write {opt}: 12")
        self.student_layer, self.teacher_layer = student_layer, teacher_layer
        self.relation_heads, self.relations = relation_heads, list(relations)

    def setup(self, student, teacher):
        paths = []
        for model, role, layer in ((student, "student", self.student_layer), (teacher, "teacher", self.teacher_layer)):
            if not FT.is_hf(model):
                raise DistilTuneError(f"loss term 'minilm' reads self-attention projections, which the {role} (not a "
                                      "transformers encoder) does not have", "use rkd_distance/sp or a feature term")
            n = FT.num_layers(model, role)
            idx = layer if layer >= 0 else n + layer
            if not 0 <= idx < n:
                raise DistilTuneError(f"loss term 'minilm': {role}_layer {layer} is out of range ({role} has {n} layers)",
                                      f"use a layer between 0 and {n - 1}, or -1 for the last")
            paths.append(list(FT.qkv_paths(model, idx, role)))
        self.s_paths, self.t_paths = paths
        ws, wt = FT.hidden_size(student), FT.hidden_size(teacher)
        heads = self.relation_heads or FT.num_heads(student)
        if ws % heads or wt % heads:
            common = [h for h in range(1, math.gcd(ws, wt) + 1) if math.gcd(ws, wt) % h == 0 and math.gcd(ws, wt) // h >= 16]
            raise DistilTuneError(f"loss term 'minilm': relation_heads={heads} must divide both widths ({ws}, {wt})",
                                  f"set relation_heads to a common divisor such as {common[-1] if common else 1}")
        self.heads = heads

    def requests(self):
        return Requests(modules=list(self.s_paths)), Requests(modules=list(self.t_paths))

    def forward(self, student_out, teacher_out, batch):
        mask = batch.get("attention_mask")
        s = [student_out.modules[p] for p in self.s_paths]
        t = [teacher_out.modules[p].detach() for p in self.t_paths]
        if s[0].shape[:2] != t[0].shape[:2]:
            raise DistilTuneError(f"loss term 'minilm': student queries {tuple(s[0].shape)} vs teacher {tuple(t[0].shape)}: "
                                  "rows or token positions differ", "feed both models the same batch and tokenizer")
        total = 0.0
        for r in self.relations:
            i, j = self.RELATIONS[r]
            log_t = relation_logits(t[i], t[j], self.heads, mask)
            log_s = relation_logits(s[i], s[j], self.heads, mask)
            total = total + relation_kl(log_t, log_s, mask)
        return total


