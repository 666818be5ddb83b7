"""Extractive-QA rows: SQuAD's official JSON, and the checks its rows must pass before any work.

A row is ``id``, ``question``, ``context`` and ``answers`` (``{"text": [...], "answer_start": [...]}``,
the layout of the hub's ``squad``). These are the data half of the QA task (issue 21, part 2).
"""
from __future__ import annotations

import json
import os

from datasets import Dataset

from ..constants import IGNORE_INDEX
from ..errors import DistilTuneError
from .squad import read_squad


def misplaced_answers(ds: Dataset, context: str = "context", answers: str = "answers") -> int:
    """Answers whose ``answer_start`` does not point at their text in the context."""
    bad = 0
    for ctx, ans in zip(ds[context], ds[answers]):
        if not isinstance(ans, dict):
            continue  # the layout check names it
        for text, start in zip(ans.get("text") or [], ans.get("answer_start") or []):
            if ctx[start:start + len(text)] != text:
                bad += 1
    return bad


def check_qa_rows(ds: Dataset, split: str, max_length: int, doc_stride: int, context: str = "context",
                  question: str = "question", answers: str | None = "answers") -> None:
    """One line naming the first problem: a missing column, a window stride that does not fit, or
    answers that are not where their ``answer_start`` says (``answers`` None: unlabeled rows)."""
    for col in (question, context) + ((answers,) if answers else ()):
        if col not in ds.column_names:
            raise DistilTuneError(f"column '{col}' is missing from the {split} data (columns: {', '.join(ds.column_names)})",
                                  "give question, context and answers columns (SQuAD layout), or set question_column / "
                                  "context_column / answers_column")
    if doc_stride >= max_length:
        raise DistilTuneError(f"doc_stride={doc_stride} is not below max_length={max_length}, so windows would not overlap "
                              "or advance", f"use a doc_stride below max_length (e.g. {max_length // 4})")
    if answers is None:
        return
    bad = misplaced_answers(ds, context, answers)
    if bad:
        raise DistilTuneError(f"{bad} answers in the {split} data are not at their answer_start in the context",
                              "fix answer_start (a character offset into the context) for those answers")


def _read_qa(path: str, what: str) -> Dataset:
    """SQuAD's official JSON (a ``data`` list of articles), or the table formats (JSON lines etc.)."""
    if path.lower().endswith(".json") and os.path.isfile(path):
        try:
            with open(path, encoding="utf-8") as f:
                doc = json.load(f)
        except (ValueError, UnicodeDecodeError):
            doc = None  # JSON lines, or not JSON: the table reader says which
        if isinstance(doc, dict) and "data" in doc:
            return read_squad(path)
    from .sources import _read_file

    return _read_file(path, what)


def _answers(ds: Dataset, col: str, split: str) -> list[dict]:
    """The answers column as SQuAD dicts; one line naming a row that is not in that layout."""
    out = []
    for i, a in enumerate(ds[col]):
        ok = isinstance(a, dict) and isinstance(a.get("text"), list) and isinstance(a.get("answer_start"), list) \
            and len(a["text"]) == len(a["answer_start"])
        if not ok:
            raise DistilTuneError(f"row {i} of the {split} data has answers {str(a)[:80]!r}, not SQuAD's "
                                  "{'text': [...], 'answer_start': [...]}", "give each row its answers in SQuAD's layout "
                                  "(character offsets into the context), or set answers_column")
        out.append({"text": [str(t) for t in a["text"]], "answer_start": [int(s) for s in a["answer_start"]]})
    return out


def _rows(ds: Dataset, cfg, split: str, answered: bool) -> Dataset:
    """Rows in the task's layout: the question and context columns, ``answers``, ``labels`` (the first
    answer's character span, -100 on unlabeled rows) and ``id``."""
    q, c = cfg.question_column, cfg.context_column
    answers = _answers(ds, cfg.answers_column, split) if answered else [{"text": [], "answer_start": []}] * len(ds)
    if answered:
        empty = sum(not a["text"] for a in answers)
        if empty:
            raise DistilTuneError(f"{empty} questions of the {split} data have no answer (SQuAD v2's unanswerable "
                                  "questions are not supported)", "drop the questions without an answer")
    ids = ds["id"] if "id" in ds.column_names else [f"{split}-{i}" for i in range(len(ds))]
    labels = [[a["answer_start"][0], a["answer_start"][0] + len(a["text"][0])] if a["text"] else [IGNORE_INDEX] * 2
              for a in answers]
    return Dataset.from_dict({q: [str(x) for x in ds[q]], c: [str(x) for x in ds[c]], "answers": answers,
                              "labels": labels, "id": [str(i) for i in ids]})


def load_qa_data(cfg) -> "object":
    """Read, check and split extractive-QA data (hub ``squad``, ``demo:squad``, SQuAD JSON or JSON
    lines with question/context/answers); raises DistilTuneError on bad input, before any model loads."""
    from .load import TaskData, _seeded_splits, _take, split_labelled
    from .sources import _load_sources

    dd, unlabeled = _load_sources(cfg, read=_read_qa)
    length, stride = cfg.max_length, qa_stride(cfg)
    for split, ds in dd.items():
        if len(ds) == 0:
            raise DistilTuneError(f"the {split} split is empty", f"give a {split} file with at least one question")
        check_qa_rows(ds, split, length, stride, cfg.context_column, cfg.question_column, cfg.answers_column)
    seed = cfg.data_seed if getattr(cfg, "data_seed", None) is not None else cfg.seed
    enc = {split: _rows(ds, cfg, split, answered=True)
           for split, ds in zip(("train", "validation", "test"), _seeded_splits(dd, cfg, seed))}
    train, rest = split_labelled(enc["train"], cfg, seed, "questions")
    extra = None if rest is None else _rows(rest, cfg, "unlabeled", answered=False)
    if unlabeled is not None:
        check_qa_rows(unlabeled, "unlabeled", length, stride, cfg.context_column, cfg.question_column, answers=None)
        more = _rows(unlabeled, cfg, "unlabeled", answered=False)
        from datasets import concatenate_datasets

        extra = more if extra is None else concatenate_datasets([extra, more])
    if extra is not None:
        extra = _take(extra, cfg.max_unlabeled, seed).cast(train.features)
    metric = "f1" if cfg.metric == "auto" else cfg.metric
    if metric not in ("f1", "exact_match"):
        raise DistilTuneError(f"metric '{metric}' is not a question-answering metric", "use f1 or exact_match (SQuAD's)")
    return TaskData(train=train, unlabeled=extra, validation=_take(enc["validation"], cfg.max_validation_samples, seed),
                    test=_take(enc["test"], cfg.max_test_samples, seed), label_names=None,
                    task_type="question_answering", metric=metric, text_columns=(cfg.question_column, cfg.context_column))


def qa_stride(cfg) -> int:
    """The tokens consecutive windows share: ``doc_stride``, or a quarter of max_length."""
    return cfg.doc_stride if cfg.doc_stride is not None else max(cfg.max_length // 4, 1)
