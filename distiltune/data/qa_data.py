"""Extractive-QA rows: SQuAD's official JSON, and the checks its rows must pass before any work.

A row is ``id``, ``question``, ``context`` and ``answers`` (``{"text": [...], "answer_start": [...]}``,
the layout of the hub's ``squad``). These are the data half of the QA task (issue 21, part 2).
"""
from __future__ import annotations

import json
import os

from datasets import Dataset

from ..errors import DistilTuneError


def read_squad(path: str) -> Dataset:
    """SQuAD v1.1's official file (``{"data": [{"paragraphs": [{"context", "qas": [...]}]}]}``) as rows."""
    if not os.path.isfile(path):
        raise DistilTuneError(f"SQuAD file not found: {path}", "check the path")
    try:
        with open(path, encoding="utf-8") as f:
            doc = json.load(f)
        rows = {"id": [], "question": [], "context": [], "answers": []}
        for article in doc["data"]:
            for para in article["paragraphs"]:
                for qa in para["qas"]:
                    rows["id"].append(str(qa["id"]))
                    rows["question"].append(qa["question"])
                    rows["context"].append(para["context"])
                    rows["answers"].append({"text": [a["text"] for a in qa.get("answers", [])],
                                            "answer_start": [int(a["answer_start"]) for a in qa.get("answers", [])]})
    except (ValueError, KeyError, TypeError) as e:
        raise DistilTuneError(f"{path} is not SQuAD JSON ({type(e).__name__}: {str(e)[:80]})",
                              "give the official layout: data -> paragraphs -> context, qas -> id, question, answers") from None
    if not rows["id"]:
        raise DistilTuneError(f"{path} holds no questions", "give a SQuAD file with at least one question")
    return Dataset.from_dict(rows)


def misplaced_answers(ds: Dataset, context: str = "context") -> int:
    """Answers whose ``answer_start`` does not point at their text in the context."""
    bad = 0
    for ctx, ans in zip(ds[context], ds["answers"]):
        for text, start in zip(ans["text"], ans["answer_start"]):
            if ctx[start:start + len(text)] != text:
                bad += 1
    return bad


def check_qa_rows(ds: Dataset, split: str, max_length: int, doc_stride: int, context: str = "context",
                  question: str = "question") -> None:
    """One line naming the first problem: a missing column, a window stride that does not fit, or
    answers that are not where their ``answer_start`` says."""
    for col in (question, context, "answers"):
        if col not in ds.column_names:
            raise DistilTuneError(f"column '{col}' is missing from the {split} data (columns: {', '.join(ds.column_names)})",
                                  "give question, context and answers columns (SQuAD layout), or set question_column / context_column")
    if doc_stride >= max_length:
        raise DistilTuneError(f"doc_stride={doc_stride} is not below max_length={max_length}, so windows would not overlap "
                              "or advance", f"use a doc_stride below max_length (e.g. {max_length // 4})")
    bad = misplaced_answers(ds, context)
    if bad:
        raise DistilTuneError(f"{bad} answers in the {split} data are not at their answer_start in the context",
                              "fix answer_start (a character offset into the context) for those answers")
