"""``--quick``: the same pipeline on a small slice, for smoke tests and CI."""
from __future__ import annotations


def quick_overrides(values: dict) -> dict:
    """--quick: the same pipeline on a small slice, one epoch each, for smoke tests and CI."""
    return {
        "num_labeled": min(300 if values.get("num_labeled") is None else values["num_labeled"], 300),
        "max_unlabeled": min(300 if values.get("max_unlabeled") is None else values["max_unlabeled"], 300),
        "max_validation_samples": 100,
        "max_test_samples": 300,
        "num_train_epochs": 1.0,
        "teacher_num_train_epochs": 1.0,
        "final_finetune_epochs": min(values.get("final_finetune_epochs", 0.0), 1.0),
        "latency_samples": 20,
    }
