"""Feature-based terms: intermediate activations of teacher and student, layer by layer.

A term reads either the HF hidden states (layers chosen by a layer map) or the outputs of named
submodules (``student_modules`` / ``teacher_modules``, paired one to one) of any ``nn.Module``.
When widths differ a learned projection (linear, or 1x1 conv for feature maps) lifts the
student's features to the teacher's width; it trains with the student and is not exported.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..models import features as FT
from ..models import layer_map
from ..errors import DistilTuneError
from .base import LossTerm, Requests, register_loss

POOLS = ("none", "mean", "cls")


# ---------- pure functions ----------

def masked_mean(values: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """Mean of ``values`` (batch, seq) over positions where ``mask`` is 1; plain mean otherwise."""
    if mask is None or values.dim() != 2 or mask.shape != values.shape:
        return values.mean()
    m = mask.to(values.dtype)
    return (values * m).sum() / m.sum().clamp_min(1.0)


def pool(h: torch.Tensor, mask: torch.Tensor | None, how: str) -> torch.Tensor:
    """(batch, seq, dim) -> (batch, dim): masked mean of tokens, or the first ([CLS]) token."""
    if h.dim() != 3 or how == "none":
        return h
    if how == "cls":
        return h[:, 0]
    if mask is None:
        return h.mean(1)
    m = mask.to(h.dtype).unsqueeze(-1)
    return (h * m).sum(1) / m.sum(1).clamp_min(1.0)


def feature_mse(s: torch.Tensor, t: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """Squared error averaged over the feature dim, then over valid positions (padding masked)."""
    per = (s.float() - t.float()).pow(2)
    if per.dim() == 3:  # (batch, seq, dim): token features
        return masked_mean(per.mean(-1), mask)
    return per.mean()


def feature_cosine(s: torch.Tensor, t: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """``1 - cos(s, t)`` along the feature dim, averaged over valid positions."""
    if s.dim() == 4:  # feature maps: one vector per example
        s, t = s.flatten(1), t.flatten(1)
    per = 1.0 - F.cosine_similarity(s.float(), t.float(), dim=-1)
    return masked_mean(per, mask)


# ---------- shared machinery ----------

def make_projection(s: torch.Tensor, t: torch.Tensor) -> nn.Module | None:
    """The smallest map from student features to the teacher's width (None when they match)."""
    if s.dim() == 4:  # (batch, channels, h, w): FitNets' 1x1 conv regressor
        return None if s.shape[1] == t.shape[1] else nn.Conv2d(s.shape[1], t.shape[1], kernel_size=1)
    return None if s.shape[-1] == t.shape[-1] else nn.Linear(s.shape[-1], t.shape[-1])


class FeaturePairs(LossTerm):
    """Base for terms comparing paired features. Subclasses implement ``compare(s, t, mask)``."""

    needs_teacher = True
    uses_logits_only = False
    default_layers = "uniform"

    def __init__(self, layers=None, student_modules: list[str] | None = None, teacher_modules: list[str] | None = None,
                 pool: str = "none", projection: bool = True):
        super().__init__()
        if pool not in POOLS:
            raise DistilTuneError(f"loss term '{self.name}': pool '{pool}' is unknown", f"use one of {', '.join(POOLS)}")
        if (student_modules is None) != (teacher_modules is None) or (
                student_modules is not None and len(student_modules) != len(teacher_modules)):
            raise DistilTuneError(f"loss term '{self.name}': student_modules and teacher_modules must pair one to one",
                                  "list the same number of module paths in both")
        self.layers = self.default_layers if layers is None else layers
        if not (isinstance(self.layers, str) and self.layers in layer_map.PRESETS + ("middle",)):
            layer_map.parse_pairs(self.layers)  # a malformed map fails at config time
        if isinstance(student_modules, str) or isinstance(teacher_modules, str):
            raise DistilTuneError(f"loss term '{self.name}': student_modules/teacher_modules must be lists of paths",
                                  "write student_modules: [block2] (a list), not student_modules: block2")
        self.student_modules, self.teacher_modules = student_modules, teacher_modules
        self.pool, self.projection = pool, projection
        # un-pooled features are per token (module paths inside a transformer too); the trainer
        # refuses them across different tokenizers, and their padding is masked
        self.token_level = pool == "none"
        self.proj = nn.ModuleDict()
        self.pairs: list[tuple] = []

    # which features: module outputs, or hidden states under a layer map
    def setup(self, student, teacher):
        if self.student_modules is not None:
            for p in self.student_modules:
                FT.resolve_module(student, p, "student")
            for p in self.teacher_modules:
                FT.resolve_module(teacher, p, "teacher")
            self.pairs = [(s, [t]) for s, t in zip(self.student_modules, self.teacher_modules)]
            return
        if not (FT.is_hf(student) and FT.is_hf(teacher)):
            raise DistilTuneError(f"loss term '{self.name}' needs module paths for a model that is not a transformers model",
                                  "add student_modules: [...] and teacher_modules: [...] to its entry (e.g. layer2, features.3)")
        n_s, n_t = FT.num_layers(student, "student"), FT.num_layers(teacher, "teacher")
        init = getattr(student.config, "distiltune_teacher_layers", None)
        self.pairs = self.layer_pairs(n_s, n_t, init)

    def layer_pairs(self, n_s, n_t, init):
        # hidden_states[i + 1] is layer i's output
        return [(s + 1, [t + 1 for t in ts]) for s, ts in layer_map.resolve(self.layers, n_s, n_t, init)]

    def requests(self):
        if self.student_modules is not None:
            return Requests(modules=list(self.student_modules)), Requests(modules=list(self.teacher_modules))
        return Requests(hidden_states=True), Requests(hidden_states=True)

    def _get(self, out, key):
        if isinstance(key, str):
            if key not in out.modules:
                raise DistilTuneError(f"loss term '{self.name}': module '{key}' did not run in the forward pass",
                                      "name a submodule that forward() calls")
            return out.modules[key]
        return out.hidden_states[key]

    def build(self, student_out, teacher_out) -> None:
        """Create projections from one sample batch's shapes (before the optimizer is made)."""
        for i, (s_key, t_keys) in enumerate(self.pairs):
            s, t = self._prepared(self._get(student_out, s_key), self._get(teacher_out, t_keys[0]), student_out, teacher_out)
            if s.dim() != t.dim():
                raise DistilTuneError(
                    f"loss term '{self.name}': student {self._label(s_key)} {tuple(s.shape[1:])} and teacher "
                    f"{self._label(t_keys[0])} {tuple(t.shape[1:])} are different kinds of feature (e.g. a vector and a map)",
                    "pair features of the same kind, or use a relation term (sp, rkd_distance) that compares examples instead")
            proj = make_projection(s, t)
            if proj is not None and not self.projection:
                raise DistilTuneError(
                    f"loss term '{self.name}': student {self._label(s_key)} has shape {tuple(s.shape[1:])} but teacher "
                    f"{self._label(t_keys[0])} has {tuple(t.shape[1:])} and projection is off",
                    "set projection: true (a learned map), or pair layers of equal width")
            if proj is None and s.shape[1:] != t.shape[1:] and not self._spatial_only(s, t):
                raise DistilTuneError(
                    f"loss term '{self.name}': student {self._label(s_key)} {tuple(s.shape[1:])} cannot be compared with "
                    f"teacher {self._label(t_keys[0])} {tuple(t.shape[1:])}", "pair features whose last dimension can be projected")
            if proj is not None:
                self.proj[str(i)] = proj.to(s.device)  # one per pair: a student module may pair twice

    @staticmethod
    def _spatial_only(s, t):
        return s.dim() == 4 and s.shape[1] == t.shape[1]

    @staticmethod
    def _label(key):
        return f"module '{key}'" if isinstance(key, str) else ("embeddings" if key == 0 else f"layer {key - 1}")

    def _prepared(self, s, t, student_out, teacher_out):
        if self.pool != "none":
            s, t = pool(s, student_out.attention_mask, self.pool), pool(t, teacher_out.attention_mask, self.pool)
        return s, t

    def _project(self, i, s, t):
        if str(i) in self.proj:
            s = self.proj[str(i)](s.to(self.proj[str(i)].weight.dtype))
        if s.dim() == 4 and s.shape[-2:] != t.shape[-2:]:
            s = F.adaptive_avg_pool2d(s, t.shape[-2:])  # FitNets needs equal maps; pool the student's to the teacher's
        return s

    def forward(self, student_out, teacher_out, batch):
        mask = batch.get("attention_mask") if self.token_level else None
        total = 0.0
        for i, (s_key, t_keys) in enumerate(self.pairs):
            per_candidate = []
            for t_key in t_keys:
                s, t = self._get(student_out, s_key), self._get(teacher_out, t_key)
                if s.shape[0] != t.shape[0] or (self.token_level and s.dim() == 3 and s.shape[1] != t.shape[1]):
                    raise DistilTuneError(
                        f"loss term '{self.name}': student {self._label(s_key)} {tuple(s.shape)} and teacher "
                        f"{self._label(t_key)} {tuple(t.shape)} do not cover the same rows/tokens",
                        "feed teacher and student the same batch (same tokenizer for token-level terms)")
                s, t = self._prepared(s, t, student_out, teacher_out)
                per_candidate.append(self.compare(self._project(i, s, t), t.detach(), mask))
            # dynamic layer choice: learn from whichever linked teacher layer is closest now
            total = total + (per_candidate[0] if len(per_candidate) == 1 else torch.stack(per_candidate).min())
        return total / len(self.pairs)

    def compare(self, s, t, mask):
        return feature_mse(s, t, mask)


@register_loss("hidden_mse")
class HiddenMSE(FeaturePairs):
    """Hidden-state MSE per layer pair (TinyBERT, Jiao et al. 2020, "TinyBERT: Distilling BERT for
    Natural Language Understanding"), projected when widths differ."""

    description = "MSE of mapped hidden states / module outputs, with projection (TinyBERT, Jiao et al. 2020)"

    def compare(self, s, t, mask):
        return feature_mse(s, t, mask)


@register_loss("hidden_cosine")
class HiddenCosine(FeaturePairs):
    """``1 - cos`` between hidden states (DistilBERT's cosine embedding loss, Sanh et al. 2019,
    "DistilBERT, a distilled version of BERT"); aligns directions, not norms."""

    description = "1 - cosine of mapped hidden states (DistilBERT, Sanh et al. 2019)"
    default_layers = "last"

    def compare(self, s, t, mask):
        return feature_cosine(s, t, mask)


@register_loss("embedding_mse")
class EmbeddingMSE(FeaturePairs):
    """MSE of the embedding-layer outputs, ``hidden_states[0]`` (TinyBERT's embedding loss)."""

    description = "MSE of embedding-layer outputs, with projection (TinyBERT, Jiao et al. 2020)"

    def layer_pairs(self, n_s, n_t, init):
        return [(0, [0])]


@register_loss("hint")
class FitNetsHint(FeaturePairs):
    """FitNets hint (Romero et al. 2015, "FitNets: Hints for Thin Deep Nets"): a student "guided"
    layer regresses the teacher's "hint" layer through a learned adapter — a 1x1 conv for CNN
    feature maps (student maps pooled to the teacher's size), a linear map for vectors. For
    transformers the default pair is the middle layers."""

    description = "FitNets hint: MSE of adapter(student feature) vs teacher feature (Romero et al. 2015)"
    default_layers = "middle"

    def layer_pairs(self, n_s, n_t, init):
        if self.layers == "middle":  # the output after half the layers of each (hidden_states index)
            return [(max(n_s // 2, 1), [max(n_t // 2, 1)])]
        return super().layer_pairs(n_s, n_t, init)

    def compare(self, s, t, mask):
        return feature_mse(s, t, mask)
