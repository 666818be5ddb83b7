"""Batches of a causal LM's encoded rows (``data.lm_rows``), for training and for inference."""
from __future__ import annotations

import torch

from .collate import pad_rows
from .teacher_cache import collate as cached_columns


class LMCollator:
    """Pads a batch of encoded rows: ids with the pad token, attention 0, labels -100, response_mask 0;
    the cached per-token teacher columns are padded by the cache's own collate."""

    def __init__(self, tokenizer, pad_to_multiple_of: int | None = None):
        self.tokenizer, self.pad_to_multiple_of = tokenizer, pad_to_multiple_of
        self.keys = ("input_ids", "attention_mask")

    def tokenizer_pad(self, rows: list[dict], prefix: str = "") -> dict:
        return pad_rows(self.tokenizer, [{k: r[prefix + k] for k in self.keys} for r in rows], self.pad_to_multiple_of)

    def batch(self, rows: list[dict]) -> dict:
        return self.tokenizer_pad(rows)

    def __call__(self, features: list[dict]) -> dict:
        batch = self.tokenizer_pad(features)
        n = batch["input_ids"].shape[1]
        for key, fill in (("labels", -100), ("response_mask", 0)):
            if key in features[0]:
                out = torch.full((len(features), n), fill, dtype=torch.long)
                for i, f in enumerate(features):
                    out[i, :len(f[key])] = torch.as_tensor(f[key], dtype=torch.long)
                batch[key] = out
        batch.update(cached_columns(features))
        return batch
