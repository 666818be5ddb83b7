"""Task metrics of classification and regression (scikit-learn / scipy)."""
from __future__ import annotations

import numpy as np


def task_metrics(logits: np.ndarray, labels: np.ndarray, task_type: str) -> dict[str, float]:
    from scipy.stats import pearsonr, spearmanr
    from sklearn.metrics import accuracy_score, f1_score, matthews_corrcoef

    if task_type == "regression":
        pred = logits.reshape(-1)
        return {"pearson": float(pearsonr(pred, labels)[0]), "spearman": float(spearmanr(pred, labels)[0]),
                "mse": float(np.mean((pred - labels) ** 2))}
    pred = logits.argmax(-1)
    return {"accuracy": float(accuracy_score(labels, pred)), "f1": float(f1_score(labels, pred, average="macro")),
            "matthews": float(matthews_corrcoef(labels, pred))}
