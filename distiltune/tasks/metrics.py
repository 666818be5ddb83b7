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


def word_sequences(predictions: np.ndarray, labels: np.ndarray, names: list[str]) -> tuple[list, list]:
    """Gold and predicted tag names per row, over the words that have a label (-100 marks padding
    and unlabeled words). ``predictions`` is (rows, words, tags) logits or (rows, words) tag ids."""
    pred = predictions.argmax(-1) if predictions.ndim == 3 else predictions
    gold_rows, pred_rows = [], []
    for p, g in zip(pred, labels):
        keep = g != -100
        gold_rows.append([names[i] for i in g[keep]])
        pred_rows.append([names[i] for i in np.clip(p[keep], 0, len(names) - 1)])
    return gold_rows, pred_rows


def entity_metrics(predictions: np.ndarray, labels: np.ndarray, names: list[str]) -> dict[str, float]:
    """Entity-level precision, recall and F1 (seqeval, scored as conlleval does: an entity counts when
    its type and span both match), per entity type, and word accuracy."""
    from seqeval.metrics import classification_report

    gold, pred = word_sequences(predictions, labels, names)
    report = classification_report(gold, pred, output_dict=True, zero_division=0)
    micro = report["micro avg"]
    flat_gold = [t for row in gold for t in row]
    flat_pred = [t for row in pred for t in row]
    out = {"entity_f1": float(micro["f1-score"]), "entity_precision": float(micro["precision"]),
           "entity_recall": float(micro["recall"]),
           "token_accuracy": float(np.mean([a == b for a, b in zip(flat_gold, flat_pred)])) if flat_gold else 0.0}
    for kind, row in report.items():
        if not kind.endswith(" avg"):
            out[f"f1_{kind}"] = float(row["f1-score"])
    return out
