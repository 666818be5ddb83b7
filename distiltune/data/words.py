"""Word-level rows (token classification): reading CoNLL files, and each model's own sub-tokens.

A row is a list of words (``tokens``) with one tag id per word (``labels``; -100 on unlabeled
rows). Each model tokenises the words itself: the model input is its sub-tokens, and
``word_index`` holds, per word, the position of that word's first sub-token. The label of a word
goes to its first sub-token and the other sub-tokens are ignored (the convention of BERT's NER
fine-tuning), so what two models with different tokenizers say about a row can be compared word by
word: that is how KD works across tokenizers here.
"""
from __future__ import annotations

import os

import numpy as np
import torch
from datasets import Dataset

from ..constants import IGNORE_INDEX
from ..errors import DistilTuneError
from .collate import MODEL_KEYS, Padder, pad_rows
from .teacher_cache import collate as cached_columns

CONLL_SUFFIXES = (".txt", ".conll", ".iob", ".iob2", ".bio")


def read_conll(path: str, tag_column: int = -1) -> Dataset:
    """A CoNLL-format file: one word per line with its columns (word first, tag last), a blank line
    between sentences, ``-DOCSTART-`` lines skipped. A file with one column (words only) gives rows
    without tags (unlabeled text)."""
    if not os.path.isfile(path):
        raise DistilTuneError(f"CoNLL file not found: {path}", "check the path")
    sentences, tags, words, wtags, widths = [], [], [], [], set()

    def close():
        if words:
            sentences.append(list(words))
            tags.append(list(wtags))
        words.clear()
        wtags.clear()

    try:
        with open(path, encoding="utf-8") as f:
            for line in f:
                parts = line.split()
                if not parts:
                    close()
                    continue
                if parts[0] == "-DOCSTART-":
                    close()
                    continue
                widths.add(len(parts))
                words.append(parts[0])
                wtags.append(parts[tag_column] if len(parts) > 1 else None)
    except UnicodeDecodeError:
        raise DistilTuneError(f"{path} is not UTF-8 text", "give a CoNLL file: one word per line, tag last") from None
    close()
    if not sentences:
        raise DistilTuneError(f"{path} holds no sentences", "give a CoNLL file: one word per line, tag last, "
                                                            "a blank line between sentences")
    if len(widths) > 1:
        raise DistilTuneError(f"{path} has lines with {sorted(widths)} columns", "give every word line the same columns")
    if widths == {1}:
        return Dataset.from_dict({"tokens": sentences})
    return Dataset.from_dict({"tokens": sentences, "ner_tags": tags})


WORD = r"\w+(?:[-'.]\w+)*|[^\w\s]"  # a run of letters and digits (with inner - ' .), or one punctuation mark


def split_words(text: str) -> list[str]:
    """A sentence as CoNLL tokenises it: words and punctuation marks (also predict.py's rule)."""
    import re

    return re.findall(WORD, text)


def read_sentences(path: str) -> Dataset:
    """Unlabeled text, one sentence per line, as rows of words."""
    with open(path, encoding="utf-8") as f:
        rows = [split_words(line) for line in f]
    return Dataset.from_dict({"tokens": [r for r in rows if r]})


def looks_like_sentences(path: str, probe: int = 200) -> bool:
    """A text file of sentences, not CoNLL: its first lines hold different numbers of fields (a CoNLL
    file has one word per line with the same columns on every line, so it never does)."""
    widths = set()
    with open(path, encoding="utf-8", errors="replace") as f:
        for i, line in enumerate(f):
            if i >= probe:
                break
            if line.split():
                widths.add(len(line.split()))
    return len(widths) > 1


def encode_words(ds: Dataset, tokenizer, words_column: str, max_length: int, prefix: str = "",
                 cut_labels: bool = True) -> Dataset:
    """Add ``{prefix}input_ids`` (etc.), ``{prefix}word_index`` and ``{prefix}length``. Words whose
    first sub-token falls past ``max_length`` are dropped from ``word_index`` (and, with
    ``cut_labels``, from ``labels``), so a row's words and labels always match."""
    if not getattr(tokenizer, "is_fast", False):
        raise DistilTuneError(f"the tokenizer {type(tokenizer).__name__} is not a fast tokenizer, so sub-tokens "
                              "cannot be mapped back to words", "use a model folder with a tokenizer.json")

    def enc(batch):
        out = tokenizer(batch[words_column], is_split_into_words=True, truncation=True, max_length=max_length)
        res = {f"{prefix}{k}": v for k, v in out.items() if k in ("input_ids", "attention_mask", "token_type_ids")}
        index = []
        for i in range(len(batch[words_column])):
            first = {}
            for pos, w in enumerate(out.word_ids(i)):
                if w is not None and w not in first:
                    first[w] = pos
            # words 0..n-1 in order (truncation cuts the tail); a word with no sub-token of its own (a
            # character the tokenizer drops) reads the position before it, so words and labels stay aligned
            row, last = [], 0
            for w in range(max(first) + 1 if first else 0):
                last = first.get(w, last)
                row.append(last)
            index.append(row)
        res[f"{prefix}word_index"] = index
        res[f"{prefix}length"] = [len(x) for x in out["input_ids"]]
        if cut_labels and "labels" in batch:
            res["labels"] = [labels[:len(idx)] for labels, idx in zip(batch["labels"], index)]
        return res

    return ds.map(enc, batched=True, desc=f"tokenising words{' for ' + prefix.rstrip('_') if prefix else ''}")


def pad_words(rows: list[list[int]], lengths: list[int], padded_length: int, left: bool) -> torch.Tensor:
    """(batch, words) first-sub-token positions in the padded batch, -1 past each row's last word."""
    n = max((len(r) for r in rows), default=0)
    out = np.full((len(rows), n), -1, dtype=np.int64)
    for i, (r, length) in enumerate(zip(rows, lengths)):
        out[i, :len(r)] = np.asarray(r, dtype=np.int64) + (padded_length - length if left else 0)
    return torch.from_numpy(out)


class WordPadder(Padder):
    """Pads word-encoded rows; ``word_index`` is part of what the teacher reads (the cache keys on it)
    but not a model input."""

    keys = (*MODEL_KEYS, "word_index")

    def batch(self, rows: list[dict]) -> dict:
        return self.tokenizer_pad([{k: r[k] for k in MODEL_KEYS if k in r} for r in rows])


class WordCollator:
    """Training batches of word rows: each model's sub-tokens padded with its tokenizer, its
    ``word_index`` (``teacher_word_index`` for a teacher with another tokenizer), per-word labels
    padded with -100, and the cached per-word teacher outputs."""

    def __init__(self, tokenizer, teacher_tokenizer=None, pad_to_multiple_of: int | None = None):
        self.tokenizer, self.teacher_tokenizer, self.pad_to_multiple_of = tokenizer, teacher_tokenizer, pad_to_multiple_of

    def _side(self, features, prefix, tokenizer) -> dict:
        rows = [{k: f[prefix + k] for k in MODEL_KEYS if prefix + k in f} for f in features]
        out = pad_rows(tokenizer, rows, self.pad_to_multiple_of)
        out["word_index"] = pad_words([f[prefix + "word_index"] for f in features], [len(r["input_ids"]) for r in rows],
                                      out["input_ids"].shape[1], tokenizer.padding_side == "left")
        return {prefix + k: v for k, v in out.items()}

    def __call__(self, features: list[dict]) -> dict:
        batch = self._side(features, "", self.tokenizer)
        if self.teacher_tokenizer is not None and "teacher_input_ids" in features[0]:
            batch.update(self._side(features, "teacher_", self.teacher_tokenizer))
        if "labels" in features[0]:
            labels = np.full(tuple(batch["word_index"].shape), IGNORE_INDEX, dtype=np.int64)
            for i, f in enumerate(features):
                labels[i, :len(f["labels"])] = f["labels"]
            batch["labels"] = torch.from_numpy(labels)
        batch.update(cached_columns(features))  # per-word teacher outputs, zero-padded
        return batch
