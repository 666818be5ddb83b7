"""Networks and data for the digits example: scikit-learn's bundled 8x8 handwritten digits (1,797 images,
10 classes, no download). Each builder is a factory distiltune can name: ``examples/digits/models.py:cnn_teacher``.

Blocks are named so feature pairs read naturally: ``block2`` of both CNNs outputs a 4x4 map
(teacher 64 channels, student 16), the FitNets hint pair; a 1x1 conv adapter bridges the widths.
"""
from __future__ import annotations

import numpy as np
from torch import nn


def _conv(c_in: int, c_out: int, pool: bool) -> nn.Sequential:
    layers = [nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU()]
    return nn.Sequential(*layers, nn.MaxPool2d(2)) if pool else nn.Sequential(*layers)


class CNN(nn.Module):
    """Conv blocks (3x3 conv, BN, ReLU; max-pool halves the map), then a linear head on the flat map."""

    def __init__(self, widths: tuple[int, ...], pools: tuple[bool, ...], num_labels: int = 10):
        super().__init__()
        c_in, size = 1, 8
        for i, (width, pool) in enumerate(zip(widths, pools), start=1):
            self.add_module(f"block{i}", _conv(c_in, width, pool))
            c_in, size = width, size // 2 if pool else size
        self.head = nn.Sequential(nn.Flatten(), nn.Dropout(0.2), nn.Linear(c_in * size * size, num_labels))
        self.num_blocks = len(widths)

    def forward(self, x):  # x: (batch, 1, 8, 8) in [0, 1] -> logits (batch, num_labels)
        for i in range(1, self.num_blocks + 1):
            x = getattr(self, f"block{i}")(x)
        return self.head(x)


def cnn_teacher(num_labels: int = 10) -> CNN:
    """Three blocks, 32 -> 64 -> 128 channels, maps 8x8 -> 4x4 -> 2x2."""
    return CNN((32, 64, 128), (False, True, True), num_labels)


def cnn_student(num_labels: int = 10, width: int = 16) -> CNN:
    """Two blocks, ``width // 2`` -> ``width`` channels, maps 8x8 -> 4x4: at width 16, 4% of the
    teacher's parameters."""
    return CNN((width // 2, width), (False, True), num_labels)


def mlp_student(num_labels: int = 10, hidden: int = 32) -> nn.Sequential:
    """The 64 pixels through one hidden layer; its ``hidden`` output is a vector, so pair it with
    vector features (logit terms work as for any student)."""
    return nn.Sequential(nn.Flatten(), nn.Linear(64, hidden), nn.ReLU(), nn.Linear(hidden, num_labels))


def load_digits_splits(seed: int = 0, test_size: float = 0.2, validation_size: float = 0.1):
    """``DatasetDict`` with train/validation/test: ``pixel_values`` (1x8x8 floats in [0, 1]) and
    ``label`` (0-9), split stratified by class with a fixed seed. Sizes are fractions of all rows."""
    from datasets import ClassLabel, Dataset, DatasetDict, Features, Sequence, Value
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    x = (digits.images / 16.0).astype(np.float32)[:, None]  # pixel intensities are 0..16
    y = digits.target.astype(np.int64)
    idx = np.arange(len(y))
    rest, test = train_test_split(idx, test_size=test_size, stratify=y, random_state=seed)
    train, val = train_test_split(rest, test_size=validation_size / (1 - test_size), stratify=y[rest], random_state=seed)
    features = Features({"pixel_values": Sequence(Sequence(Sequence(Value("float32")))),
                         "label": ClassLabel(names=[str(d) for d in range(10)])})
    return DatasetDict({name: Dataset.from_dict({"pixel_values": x[rows].tolist(), "label": y[rows].tolist()}, features=features)
                        for name, rows in (("train", train), ("validation", val), ("test", test))})
