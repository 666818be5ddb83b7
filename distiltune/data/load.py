"""Loading, checking, splitting and tokenising task data through ``datasets``.

Rows are tagged with ``labels`` (class id, -100 for unlabeled; float/NaN for regression).
Each model tokenises the text with its own tokenizer: never feed one model's ids to another.
"""
from __future__ import annotations

import difflib
import hashlib
import json
from dataclasses import dataclass

import numpy as np
from datasets import ClassLabel, Dataset, Value, concatenate_datasets

from ..errors import DistilTuneError
from .sources import _load_sources
from ..constants import AtMost
from ..constants import IGNORE_INDEX


@dataclass
class TaskData:
    train: Dataset          # labelled rows: text columns + ``labels``
    unlabeled: Dataset | None  # text columns + ``labels`` = IGNORE_INDEX / NaN
    validation: Dataset
    test: Dataset
    label_names: list[str] | None  # None for regression
    task_type: str          # classification | regression | token_classification
    metric: str
    text_columns: tuple[str, ...]

    @property
    def num_labels(self) -> int:
        return 1 if self.label_names is None else len(self.label_names)

    def fingerprint(self, splits: tuple[str, ...] = ("train", "unlabeled", "validation", "test")) -> str:
        """Content hash of the named splits (every text and label): stage reuse keys on it."""
        h = hashlib.sha256(repr((self.label_names, self.task_type, self.text_columns)).encode())
        for name in splits:
            ds = getattr(self, name)
            if ds is None:
                continue
            h.update(f"{name}:{len(ds)}".encode())
            for col in (*self.text_columns, "labels"):
                h.update(json.dumps(list(ds[col])).encode())
        return h.hexdigest()[:16]


def _check_columns(ds: Dataset, columns: list[str], split: str,
                   options: str = "text_column / text_pair_column / input_column / label_column") -> None:
    for col in columns:
        if col not in ds.column_names:
            near = difflib.get_close_matches(col, ds.column_names, n=1)
            hint = f"did you mean '{near[0]}'? " if near else ""
            raise DistilTuneError(f"column '{col}' is missing from the {split} data (columns: {', '.join(ds.column_names)})",
                                  f"{hint}set {options} to existing columns")


def _refuse_words(ds: Dataset, cfg, split: str) -> None:
    """Rows of words and tags given to a one-label-per-text run: say which task_type reads them."""
    words, tags = getattr(cfg, "tokens_column", "tokens"), getattr(cfg, "tags_column", "ner_tags")
    if cfg.text_column not in ds.column_names and words in ds.column_names and tags in ds.column_names:
        raise DistilTuneError(f"the {split} data holds words and tags per row ('{words}', '{tags}'), not a text and a label",
                              "set task_type: token_classification (named-entity recognition)")
    q, c = getattr(cfg, "question_column", "question"), getattr(cfg, "context_column", "context")
    if cfg.text_column not in ds.column_names and q in ds.column_names and c in ds.column_names:
        raise DistilTuneError(f"the {split} data holds questions and contexts per row ('{q}', '{c}'), not a text and a label",
                              "set task_type: question_answering (extractive QA)")


def _label_space(train: Dataset, cfg) -> tuple[str, list[str] | None]:
    feat = train.features[cfg.label_column]
    if cfg.task_type != "auto":
        task = cfg.task_type
    elif isinstance(feat, ClassLabel):
        task = "classification"
    elif isinstance(feat, Value) and feat.dtype.startswith("float"):
        task = "regression"
    else:
        task = "classification"
    if task == "regression":
        return task, None
    if isinstance(feat, ClassLabel):
        return task, list(feat.names)
    values = [v for v in train[cfg.label_column] if v is not None]
    return task, [str(v) for v in sorted(set(values), key=lambda v: (isinstance(v, str), v))]


def _encode_labels(ds: Dataset, cfg, task: str, names: list[str] | None, split: str) -> Dataset:
    col = cfg.label_column
    if task == "regression":
        try:
            vals = np.asarray(ds[col], dtype=np.float32)
        except (TypeError, ValueError):
            raise DistilTuneError(f"labels in the {split} data are not numbers but task_type is regression",
                                  "set task_type: classification or fix the label column") from None
        return ds.remove_columns([col]).add_column("labels", vals.tolist())
    feat = ds.features[col]
    if isinstance(feat, ClassLabel) and list(feat.names) == names:
        ids = ds[col]
    else:
        raw = ds[col]
        if isinstance(feat, ClassLabel):
            raw = [feat.names[i] for i in raw]
        index = {n: i for i, n in enumerate(names)}
        ids, bad = [], set()
        for v in raw:
            i = index.get(str(v))
            if i is None:
                bad.add(str(v))
            ids.append(i)
        if bad:
            raise DistilTuneError(
                f"{split} data has labels {sorted(bad)[:5]} that are not in the label set {names}",
                "make every split use the training labels, or fix label_column")
    return ds.remove_columns([col]).add_column("labels", [int(i) for i in ids])


def _take(ds: Dataset, n: int | None, seed: int) -> Dataset:
    if n is None or len(ds) <= n:
        return ds
    return ds.shuffle(seed=seed).select(range(n))


def split_labelled(train: Dataset, cfg, seed: int, what: str = "rows") -> tuple[Dataset, Dataset | None]:
    """``num_labeled``: the labelled rows kept (a seeded sample) and the rest (None when all are kept),
    refusing a num_labeled above the split (word and span tasks; ``what`` names their rows)."""
    if cfg.num_labeled is not None and cfg.num_labeled > len(train) and not isinstance(cfg.num_labeled, AtMost):
        raise DistilTuneError(f"num_labeled={cfg.num_labeled} asks for more labelled {what} than the training split has "
                              f"({len(train)})", f"lower num_labeled to at most {len(train)}, or leave it unset")
    if cfg.num_labeled is None or cfg.num_labeled >= len(train):
        return train, None
    shuffled = train.shuffle(seed=seed)
    return shuffled.select(range(cfg.num_labeled)), shuffled.select(range(cfg.num_labeled, len(shuffled)))


def _split_size(size: float, n: int) -> int:
    return int(round(size * n)) if size < 1 else int(size)


def _seeded_splits(dd, cfg, seed: int):
    """Train, validation and test: the data's own, or seeded splits of train (test first, so it never
    depends on validation_size)."""
    train = dd["train"]
    if "test" not in dd:
        n = _split_size(cfg.test_size, len(train))
        if n < 1 or n >= len(train):
            raise DistilTuneError(f"test_size={cfg.test_size} leaves no test or no training rows", "give test_file or a smaller test_size")
        parts = train.train_test_split(test_size=n, seed=seed)
        train, dd["test"] = parts["train"], parts["test"]
    if "validation" not in dd and cfg.validation_size == 0:  # asked for: every row trains (fixed budgets only)
        dd["validation"] = train.select([])
    if "validation" not in dd:
        n = _split_size(cfg.validation_size, len(train))
        if n < 1 or n >= len(train):
            raise DistilTuneError(f"validation_size={cfg.validation_size} leaves no validation or no training rows",
                                  "give validation_file or a smaller validation_size")
        parts = train.train_test_split(test_size=n, seed=seed)
        train, dd["validation"] = parts["train"], parts["test"]
    return train, dd["validation"], dd["test"]


def _with_text(ds, text_cols):
    return ds.filter(lambda r: all(isinstance(r[c], str) and r[c].strip() for c in text_cols))


def _labelled_and_extra(train, unlabeled, cfg, text_cols, seed: int, own_splits: bool):
    """The labelled rows kept (num_labeled) and the text rows the student learns from the teacher alone."""
    extra = None
    if cfg.num_labeled is not None and cfg.num_labeled > len(train) and not isinstance(cfg.num_labeled, AtMost):
        split = "" if own_splits else " after the seeded validation and test splits"
        raise DistilTuneError(f"num_labeled={cfg.num_labeled} asks for more labelled rows than the training split has "
                              f"({len(train)} rows with text{split})",
                              f"lower num_labeled to at most {len(train)}, or leave it unset to keep every label")
    if cfg.num_labeled is not None and cfg.num_labeled < len(train):
        shuffled = train.shuffle(seed=seed)
        train = shuffled.select(range(cfg.num_labeled))
        extra = shuffled.select(range(cfg.num_labeled, len(shuffled))).select_columns(text_cols)
    if unlabeled is not None:
        _check_columns(unlabeled, text_cols, "unlabeled")
        unl = _with_text(unlabeled.select_columns(text_cols), text_cols)
        if len(unl) == 0:
            raise DistilTuneError(f"unlabeled_file {cfg.unlabeled_file} has no rows with text", "give a file with text rows or drop it")
        extra = unl if extra is None else concatenate_datasets([extra, unl])
    return train, extra


def _main_metric(cfg, task: str) -> str:
    metric = cfg.metric if cfg.metric != "auto" else ("pearson" if task == "regression" else "accuracy")
    if task == "regression" and metric in ("accuracy", "f1", "matthews"):
        raise DistilTuneError(f"metric '{metric}' needs class labels but the task is regression", "use pearson or spearman")
    if metric in ("entity_f1", "token_accuracy"):
        raise DistilTuneError(f"metric '{metric}' is for tags per word, but the task is {task}",
                              "set task_type: token_classification (with tokens_column and tags_column), or use accuracy")
    if task == "classification" and metric in ("pearson", "spearman"):
        raise DistilTuneError(f"metric '{metric}' is for regression but the labels are classes", "use accuracy, f1 or matthews")
    return metric


def load_task_data(cfg) -> TaskData:
    """Read, check and split the data described by ``cfg``; raises DistilTuneError on bad input."""
    dd, unlabeled = _load_sources(cfg)
    text = not getattr(cfg, "input_column", None)
    text_cols = ([cfg.text_column] + ([cfg.text_pair_column] if cfg.text_pair_column else [])) if text else [cfg.input_column]
    for split, ds in dd.items():
        if len(ds) == 0:
            raise DistilTuneError(f"the {split} split is empty", f"give a {split} file with at least one row")
        if text:
            _refuse_words(ds, cfg, split)
        _check_columns(ds, text_cols + [cfg.label_column], split)
    task, names = _label_space(dd["train"], cfg)
    if names is not None and len(names) < 2:
        raise DistilTuneError(f"the training labels hold a single class {names}", "give data with at least two classes")
    seed = cfg.data_seed if getattr(cfg, "data_seed", None) is not None else cfg.seed
    own_splits = "test" in dd and "validation" in dd
    none_asked = "validation" not in dd and cfg.validation_size == 0  # an empty validation split, asked for
    enc = {}
    for split, ds in zip(("train", "validation", "test"), _seeded_splits(dd, cfg, seed)):
        ds = ds.select_columns(text_cols + [cfg.label_column])
        if text:
            ds = _with_text(ds, text_cols)
        if len(ds) == 0 and not (split == "validation" and none_asked):
            raise DistilTuneError(f"the {split} split has no rows with text in {text_cols}", "check text_column")
        enc[split] = _encode_labels(ds, cfg, task, names, split)
    train, extra = _labelled_and_extra(enc["train"], unlabeled, cfg, text_cols, seed, own_splits)
    if extra is not None:
        extra = _take(extra, cfg.max_unlabeled, seed)
        fill = float("nan") if task == "regression" else IGNORE_INDEX
        extra = extra.add_column("labels", [fill] * len(extra))
        extra = extra.cast(train.features)
    return TaskData(train=train, unlabeled=extra,
                    validation=_take(enc["validation"], cfg.max_validation_samples, seed),
                    test=_take(enc["test"], cfg.max_test_samples, seed),
                    label_names=names, task_type=task, metric=_main_metric(cfg, task), text_columns=tuple(text_cols))


