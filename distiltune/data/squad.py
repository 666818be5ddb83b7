"""SQuAD's official JSON file as rows (``id``, ``question``, ``context``, ``answers``)."""
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
