"""Named recipes: the extra loss terms (beyond CE + the logit term) each published method uses.

A preset is data: a list of loss entries in the same form users write under ``losses:``.
Entries with ``stage: intermediate`` train first, alone (TinyBERT's and FitNets' two stages);
the rest join CE and the logit term in the main distillation stage.
"""
from __future__ import annotations

PRESETS: dict[str, dict] = {
    "distilbert": {
        "about": "logits + cosine of last hidden states; student_layers every other teacher layer when built "
                 "from the teacher (Sanh et al. 2019)",
        "losses": [{"name": "hidden_cosine", "weight": 1.0, "layers": "last"}],
    },
    "tinybert": {
        "about": "stage 1: embeddings + hidden states + attention maps (uniform map); stage 2: logits (Jiao et al. 2020)",
        "losses": [{"name": "embedding_mse", "weight": 1.0, "stage": "intermediate"},
                   {"name": "hidden_mse", "weight": 1.0, "stage": "intermediate"},
                   {"name": "attention_mse", "weight": 1.0, "stage": "intermediate"}],
    },
    "minilm": {
        "about": "logits + last-layer self-attention distribution and value relation (Wang et al. 2020)",
        "losses": [{"name": "minilm", "weight": 1.0}],
    },
    "fitnets": {
        "about": "stage 1: hint layer regression through an adapter; stage 2: logits (Romero et al. 2015)",
        "losses": [{"name": "hint", "weight": 1.0, "stage": "intermediate"}],
    },
    "rkd": {
        "about": "logits + distance and angle relations of pooled features (Park et al. 2019: weights 1 and 2)",
        "losses": [{"name": "rkd_distance", "weight": 1.0}, {"name": "rkd_angle", "weight": 2.0}],
    },
}


def preset_losses(name: str | None) -> list[dict]:
    return [dict(e) for e in PRESETS[name]["losses"]] if name else []
