"""Loading and checking word-level data (token classification): words and one tag per word.

Sources are those of sequence classification (hub datasets such as ``conll2003``, factories,
local files) plus CoNLL-format text files. Tags are IOB2 names (or ids of a ``ClassLabel`` sequence);
every check runs before a model is loaded.
"""
from __future__ import annotations

import os
import re

from datasets import ClassLabel, Dataset

from ..constants import IGNORE_INDEX
from ..errors import DistilTuneError
from .load import TaskData, _check_columns, _seeded_splits, _take, split_labelled
from .sources import _load_sources, _read_file
from .words import CONLL_SUFFIXES, looks_like_sentences, read_conll, read_sentences

IOB = re.compile(r"^(O|[BI]-.+)$")


def _read_words(path: str, what: str) -> Dataset:
    if os.path.splitext(path)[1].lower() in CONLL_SUFFIXES:
        if not os.path.isfile(path):
            raise DistilTuneError(f"{what} not found: {path}", f"check the path given for {what}")
        if what == "unlabeled_file" and looks_like_sentences(path):  # plain text: one sentence a line
            return read_sentences(path)
        return read_conll(path)
    return _read_file(path, what)


def _tag_names(ds: Dataset, col: str) -> tuple[list[str] | None, list]:
    """The split's tag names per word (from a ClassLabel sequence, or the values themselves)."""
    feat = ds.features[col]
    inner = getattr(feat, "feature", None)
    if isinstance(inner, ClassLabel):
        return list(inner.names), [[inner.names[i] for i in row] for row in ds[col]]
    return None, [[str(t) for t in row] for row in ds[col]]


def iob_problems(rows: list[list[str]]) -> int:
    """Rows whose IOB2 sequence is invalid: an ``I-X`` that does not continue a ``B-X`` or ``I-X``."""
    bad = 0
    for tags in rows:
        prev = "O"
        for t in tags:
            if t.startswith("I-") and prev[2:] != t[2:]:
                bad += 1
                break
            prev = t
    return bad


def _check_rows(ds: Dataset, cfg, split: str, tagged: bool) -> None:
    cols = [cfg.tokens_column] + ([cfg.tags_column] if tagged else [])
    _check_columns(ds, cols, split, options="tokens_column / tags_column")
    first = ds[0][cfg.tokens_column]
    if not isinstance(first, list) or not all(isinstance(w, str) for w in first):
        raise DistilTuneError(f"column '{cfg.tokens_column}' of the {split} data holds {type(first).__name__}, not a list "
                              "of words", "give each row its words as a list (JSON lines: {\"tokens\": [...], \"ner_tags\": [...]}) "
                              "or a CoNLL file, or set tokens_column")
    if tagged:
        short = sum(len(w) != len(t) for w, t in zip(ds[cfg.tokens_column], ds[cfg.tags_column]))
        if short:
            raise DistilTuneError(f"{short} rows of the {split} data have a different number of words and tags",
                                  f"give one tag per word in '{cfg.tags_column}'")


def _encode_tags(ds: Dataset, cfg, names: list[str], split: str) -> Dataset:
    _, tags = _tag_names(ds, cfg.tags_column)
    index = {n: i for i, n in enumerate(names)}
    bad = sorted({t for row in tags for t in row if t not in index})
    if bad:
        raise DistilTuneError(f"the {split} data has tags {bad[:5]} that are not in the training tag set {names}",
                              "give every split the training data's tags, or fix tags_column")
    if all(IOB.match(n) for n in names):
        n_bad = iob_problems(tags)
        if n_bad:
            raise DistilTuneError(f"{n_bad} rows of the {split} data have an invalid IOB2 tag sequence (an I-X that "
                                  "does not follow B-X or I-X); refused, not repaired", "convert the tags to IOB2 (an "
                                  "entity starts with B-), or fix those rows")
    return Dataset.from_dict({cfg.tokens_column: ds[cfg.tokens_column],
                              "labels": [[index[t] for t in row] for row in tags]})


def _label_set(train: Dataset, cfg) -> list[str]:
    names, tags = _tag_names(train, cfg.tags_column)
    if names is None:
        seen = sorted({t for row in tags for t in row})
        # "O" first, then entity types with B- before I-, as the CoNLL label lists are ordered
        names = sorted(seen, key=lambda t: (t != "O", t[2:] if IOB.match(t) else t, t))
    if len(names) < 2:
        raise DistilTuneError(f"the training tags hold a single tag {names}", "give data with at least two tags")
    return names


def _unlabeled(ds: Dataset, cfg) -> Dataset:
    words = [w for w in ds[cfg.tokens_column] if w]
    return Dataset.from_dict({cfg.tokens_column: words, "labels": [[IGNORE_INDEX] * len(w) for w in words]})


def load_word_data(cfg) -> TaskData:
    """Read, check and split token-classification data; raises DistilTuneError on bad input."""
    dd, unlabeled = _load_sources(cfg, read=_read_words)
    for split, ds in dd.items():
        if len(ds) == 0:
            raise DistilTuneError(f"the {split} split is empty", f"give a {split} file with at least one row")
        _check_rows(ds, cfg, split, tagged=True)
    names = _label_set(dd["train"], cfg)
    seed = cfg.data_seed if getattr(cfg, "data_seed", None) is not None else cfg.seed
    enc = {split: _encode_tags(ds.filter(lambda r: len(r[cfg.tokens_column]) > 0), cfg, names, split)
           for split, ds in zip(("train", "validation", "test"), _seeded_splits(dd, cfg, seed))}
    train, rest = split_labelled(enc["train"], cfg, seed)
    extra = None if rest is None else _unlabeled(rest, cfg)
    if unlabeled is not None:
        _check_rows(unlabeled, cfg, "unlabeled", tagged=False)
        more = _unlabeled(unlabeled, cfg)
        if len(more) == 0:
            raise DistilTuneError(f"unlabeled_file {cfg.unlabeled_file} has no rows with words", "give a file with words")
        from datasets import concatenate_datasets

        extra = more if extra is None else concatenate_datasets([extra, more])
    if extra is not None:
        extra = _take(extra, cfg.max_unlabeled, seed).cast(train.features)
    metric = "entity_f1" if cfg.metric == "auto" else cfg.metric
    if metric not in ("entity_f1", "token_accuracy"):
        raise DistilTuneError(f"metric '{metric}' is not a token-classification metric", "use entity_f1 or token_accuracy")
    return TaskData(train=train, unlabeled=extra, validation=_take(enc["validation"], cfg.max_validation_samples, seed),
                    test=_take(enc["test"], cfg.max_test_samples, seed), label_names=names,
                    task_type="token_classification", metric=metric, text_columns=(cfg.tokens_column,))


__all__ = ["iob_problems", "load_word_data"]
