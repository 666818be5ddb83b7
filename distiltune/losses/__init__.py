"""Loss terms, registered by name. ``distiltune losses`` lists them; ``register_loss`` adds yours.

Response (logits): ce, kd, reverse_kl, js, gjsd, tv, logit_mse, over classes or a vocabulary
(vocab.py: chunked, dense or top-k teacher). Feature: hidden_mse, hidden_cosine, embedding_mse, hint. Attention/relation: attention_kl, attention_mse, minilm, rkd_distance,
rkd_angle, sp.
"""
from ..constants import IGNORE_INDEX
from .base import LOSSES, LossTerm, Requests, build_term, register_loss
from ..models.task_loss import hard_label_loss
from .logits import kd_loss, teacher_confidence
from . import feature  # noqa: F401  (registers its terms)
from . import attention  # noqa: F401
from . import relation  # noqa: F401

__all__ = ["IGNORE_INDEX", "LOSSES", "LossTerm", "Requests", "build_term", "register_loss", "hard_label_loss",
           "kd_loss", "teacher_confidence"]
