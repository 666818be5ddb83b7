"""Final-answer checkers for generated text, registered by name (``answer_checker``).

A checker reads the final answer out of a text; a generation is correct when its answer equals the
gold response's. Numbers are compared as numbers written plainly: ``$1,250.00``, ``1250`` and
``1250.`` are one answer (GSM8K's solutions write thousands with commas, models often do not).

- ``gsm8k``: the number after ``####`` (GSM8K's worked solutions end in ``#### 42``; its own
  evaluation reads the text after the marker);
- ``boxed``: the last ``\\boxed{...}`` (MATH, AIME and R1-style reasoning traces), braces matched;
- ``last_number``: the last number in the text.

``auto`` picks the first of gsm8k and boxed that reads an answer from every gold test response, and
no checker otherwise (free text has no final answer to check).
"""
from __future__ import annotations

import re
from typing import Callable

from ..registry import Registry

CHECKERS = Registry("answer checker")
_NUMBER = r"-?\$?\s*\d[\d,]*(?:\.\d+)?"


def plain_number(text: str) -> str | None:
    """A number as one string per value: no $, no thousands commas, no trailing zeros after a point."""
    s = text.replace("$", "").replace(",", "").replace(" ", "").rstrip(".")
    try:
        value = float(s)
    except ValueError:
        return None
    return str(int(value)) if value == int(value) and abs(value) < 1e15 else repr(value)


def _plain(answer: str | None) -> str | None:
    if answer is None:
        return None
    answer = answer.strip()
    return plain_number(answer) or (answer or None)


@CHECKERS.register("gsm8k")
def gsm8k(text: str) -> str | None:
    m = re.search(r"####\s*(" + _NUMBER + ")", text)
    return plain_number(m.group(1)) if m else None


@CHECKERS.register("boxed")
def boxed(text: str) -> str | None:
    start = text.rfind("\\boxed{")
    if start < 0:
        return None
    depth, i = 1, start + len("\\boxed{")
    for j in range(i, len(text)):
        depth += {"{": 1, "}": -1}.get(text[j], 0)
        if depth == 0:
            return _plain(text[i:j])
    return None  # unclosed: the generation was cut off before its answer ended


@CHECKERS.register("last_number")
def last_number(text: str) -> str | None:
    found = re.findall(_NUMBER, text)
    return plain_number(found[-1]) if found else None


AUTO_ORDER = ("gsm8k", "boxed")


def checker(name: str) -> Callable[[str], str | None]:
    return CHECKERS.get(name)


def detect(golds: list[str]) -> str | None:
    """The checker that reads an answer from every gold response, or None."""
    for name in AUTO_ORDER:
        if golds and all(checker(name)(g) is not None for g in golds):
            return name
    return None


def is_correct(name: str, generated: str, gold: str) -> bool:
    read = checker(name)
    answer = read(generated)
    return answer is not None and answer == read(gold)


__all__ = ["CHECKERS", "detect", "is_correct", "plain_number"]
