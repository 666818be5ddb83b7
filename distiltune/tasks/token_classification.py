"""Token classification (NER): one tag per word, scored per entity (seqeval).

Each model tokenises the words itself and is read at each word's first sub-token, so the teacher's
output for a row is one logit vector per *word*: that is what the teacher cache stores, and what KD
compares. A teacher with another tokenizer (MPNet teaching a BERT-vocabulary MiniLM) therefore
teaches word by word, with no sub-token alignment needed.
"""
from __future__ import annotations

import numpy as np

from ..data.words import WordCollator, WordPadder, encode_words
from ..errors import DistilTuneError
from ..models import hf as M
from ..models.inference import predict_word_logits
from .metrics import entity_metrics
from .base import Loaded
from .text_classification import TextClassification, pad_multiple

# The longest input a teacher with its own tokenizer reads (its own limit, up to this): it sees every
# word the student kept, whatever the two tokenizers make of them.
TEACHER_MAX_LENGTH = 512


def words_tokenizer(tokenizer, name: str):
    """The tokenizer as it must read words: byte-level BPE tokenizers (RoBERTa, GPT-2) mark a word
    start with a space, so given words they need ``add_prefix_space`` or every word after the first
    is tokenised as if glued to the one before it."""
    if getattr(tokenizer, "add_prefix_space", None) is False:
        return M.load_tokenizer(name, add_prefix_space=True)
    return tokenizer


def pad_rows_of_words(rows: list[np.ndarray], fill: float = 0.0) -> np.ndarray:
    """(rows, words, C) from one (words, C) array per row."""
    n = max((len(r) for r in rows), default=0)
    c = next((r.shape[-1] for r in rows if r.ndim == 2 and r.size), 0)
    out = np.full((len(rows), n, c), fill, dtype=np.float32)
    for i, r in enumerate(rows):
        out[i, :len(r)] = r
    return out


class TokenClassification(TextClassification):
    name = "token_classification"
    pipeline_tag = "token-classification"
    export_kind = "words"  # export_plan as for texts; the exported predict.py splits texts into words
    head = "ForTokenClassification"

    @staticmethod
    def auto_class():
        from transformers import AutoModelForTokenClassification

        return AutoModelForTokenClassification

    @classmethod
    def load_data(cls, cfg):
        from ..data.word_data import load_word_data

        return load_word_data(cfg)

    @classmethod
    def check_config(cls, cfg, problems) -> None:
        refusals = [
            (cfg.teacher_cache_topk is not None, "teacher_cache_topk keeps the top logits of one vector per row, but "
             "token classification caches a few tags per word in full", "remove teacher_cache_topk"),
            (bool(cfg.augment), "augment edits the words of a text, which would shift the tags of a tagged sentence",
             "remove augment (unlabeled sentences, unlabeled_file, give the student more rows to learn from)"),
            (cfg.online_teacher_lr is not None, "online_teacher_lr (a teacher that keeps learning while it teaches) "
             "is built for sequence classification: the teacher is read per word on its own tokens, so its loss "
             "on the student's labels is not defined",
             "remove online_teacher_lr"),
            (bool(cfg.text_pair_column), "token classification reads one list of words per row, not text pairs",
             "remove text_pair_column"),
        ]
        for bad, problem, fix in refusals:
            if bad:
                problems.found.append(DistilTuneError(f"task_type token_classification: {problem}", fix))

    def load(self, name: str, role: str):
        loaded = super().load(name, role)
        return Loaded(loaded.model, words_tokenizer(loaded.tokenizer, name), loaded.trained)

    # ---- rows ----
    def tokenize(self, rows, tokenizer, length: int, prefix: str):
        """Each model's sub-tokens of the words (``encode`` memoises it); the student's encoding also
        cuts the labels to the words that fit."""
        return encode_words(rows, tokenizer, self.data.text_columns[0], length, prefix, cut_labels=not prefix)

    def collator(self, tokenizer, teacher_tokenizer=None):
        return WordCollator(tokenizer, teacher_tokenizer, pad_to_multiple_of=pad_multiple(self.cfg))

    def batcher(self, tokenizer, teacher_tokenizer=None, exact: bool = False):
        return WordPadder(tokenizer, teacher_tokenizer, pad_to_multiple_of=None if exact else pad_multiple(self.cfg))

    def teacher_inputs(self, rows, tokenizer, teacher_tokenizer, same: bool):
        if same:
            return rows, ""
        limit = teacher_tokenizer.model_max_length
        length = min(limit if 0 < limit < 100_000 else TEACHER_MAX_LENGTH, TEACHER_MAX_LENGTH)
        return self.encode(rows, teacher_tokenizer, prefix="teacher_", length=max(length, self.max_length(teacher_tokenizer))), "teacher_"

    # ---- teacher outputs: one logit vector per word ----
    def teacher_outputs(self, teacher, rows, batcher, prefix: str = ""):
        cfg = self.cfg
        teacher.to(cfg.device)
        return predict_word_logits(teacher, batcher, rows, batch_size=64 if cfg.device.type == "cpu" else 256,
                                   bf16=cfg.bf16, desc="teacher logits per word", prefix=prefix,
                                   progress=not cfg.disable_tqdm and len(rows) > 64)

    # ---- predict and score ----
    def predict(self, model, rows, batcher, desc: str = "predicting", bf16: bool = False) -> np.ndarray:
        """(rows, words, tags) logits, zero past each row's last word."""
        return pad_rows_of_words(predict_word_logits(model, batcher, rows, bf16=bf16, desc=desc,
                                                     progress=not self.cfg.disable_tqdm))

    def labels(self, rows) -> np.ndarray:
        """(rows, words) tag ids, -100 past each row's last word."""
        tags = rows["labels"]
        out = np.full((len(tags), max((len(t) for t in tags), default=0)), -100, dtype=np.int64)
        for i, t in enumerate(tags):
            out[i, :len(t)] = t
        return out

    def metrics(self, predictions, labels) -> dict[str, float]:
        return entity_metrics(np.asarray(predictions), np.asarray(labels), list(self.data.label_names))

    def agreement(self, reference, predictions, labels) -> dict:
        keep = labels != -100
        same = reference.argmax(-1)[keep] == predictions.argmax(-1)[keep]
        return {"agreement": float(same.mean()) if same.size else 1.0,
                "max_abs_logit_diff": float(np.abs(reference - predictions).max()) if reference.size else 0.0}
