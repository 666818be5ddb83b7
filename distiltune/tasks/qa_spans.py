"""Extractive QA, the parts that are pure functions: SQuAD's answer normalisation and EM/F1 (the
official v1.1 definition), the best answer span over a context's windows, and moving a start or end
distribution from one tokenizer's tokens to another's through character offsets.

These are the building blocks of the QA task (issue 21, part 2); the task itself plugs them into
the task interface as token classification does.
"""
from __future__ import annotations

import collections
import re
import string
from dataclasses import dataclass

import numpy as np


# ---- SQuAD v1.1 metrics (official evaluation script's definitions) ----

def normalize_answer(s: str) -> str:
    """Lower case, drop punctuation and the articles a/an/the, collapse whitespace."""
    s = "".join(ch for ch in s.lower() if ch not in set(string.punctuation))
    s = re.sub(r"\b(a|an|the)\b", " ", s)
    return " ".join(s.split())


def exact_match(prediction: str, gold: str) -> float:
    return float(normalize_answer(prediction) == normalize_answer(gold))


def f1(prediction: str, gold: str) -> float:
    pred, ref = normalize_answer(prediction).split(), normalize_answer(gold).split()
    common = collections.Counter(pred) & collections.Counter(ref)
    same = sum(common.values())
    if same == 0:
        return 0.0
    precision, recall = same / len(pred), same / len(ref)
    return 2 * precision * recall / (precision + recall)


def squad_scores(predictions: list[str], golds: list[list[str]]) -> dict[str, float]:
    """Exact match and F1 in percent, each question scored against its best gold answer."""
    if not predictions:
        return {"exact_match": 0.0, "f1": 0.0}
    em = [max(exact_match(p, g) for g in gs) for p, gs in zip(predictions, golds)]
    f = [max(f1(p, g) for g in gs) for p, gs in zip(predictions, golds)]
    return {"exact_match": 100.0 * float(np.mean(em)), "f1": 100.0 * float(np.mean(f))}


# ---- the best span over windows ----

def best_span(windows: list[tuple[np.ndarray, np.ndarray, list]], max_answer_length: int = 30,
              n_best: int = 20) -> tuple[int, int, float] | None:
    """``(char_start, char_end, score)`` of the best answer over a context's windows, or None.

    Each window is ``(start_logits, end_logits, offsets)``; ``offsets[i]`` is token i's character span
    in the context, or None for a token outside it (question, special tokens, padding). A span is a
    start token and an end token of the context, end not before start and at most
    ``max_answer_length`` tokens long, scored by start logit + end logit (as BERT's SQuAD code); the
    ``n_best`` highest starts and ends of each window are searched.
    """
    best = None
    for start_logits, end_logits, offsets in windows:
        starts = np.argsort(-start_logits)[:n_best]
        ends = np.argsort(-end_logits)[:n_best]
        for i in starts:
            if i >= len(offsets) or offsets[i] is None:
                continue
            for j in ends:
                if j >= len(offsets) or offsets[j] is None or j < i or j - i + 1 > max_answer_length:
                    continue
                score = float(start_logits[i] + end_logits[j])
                if best is None or score > best[2]:
                    best = (int(offsets[i][0]), int(offsets[j][1]), score)
    return best


# ---- distributions across tokenizers, through characters ----

def token_at(char: int, offsets: list) -> int | None:
    """The token whose span holds ``char`` (or, for a character between tokens such as a space, the
    first token after it); None when the character is past the last token."""
    after = None
    for k, span in enumerate(offsets):
        if span is None or span[1] <= span[0]:
            continue
        if span[0] <= char < span[1]:
            return k
        if span[0] > char and (after is None or span[0] < offsets[after][0]):
            after = k
    return after


def move_distribution(probs: np.ndarray, source_offsets: list, target_offsets: list, side: str) -> tuple[np.ndarray, float]:
    """A start (or end) distribution over the source tokenizer's tokens, as a distribution over the
    target's, and the mass that had nowhere to go (characters outside the target's window).

    A start is a point, the first character of an answer; so the whole mass of source token k moves
    to the one target token that holds k's first character (``side="start"``) or its last character
    (``side="end"``), never split over several target tokens: mass is conserved exactly when the
    target covers those characters, and a target token that only continues a source token gets none.
    Source tokens outside the context (None offsets) carry no answer, and their mass is dropped too.
    """
    out = np.zeros(len(target_offsets), dtype=np.float64)
    lost = 0.0
    for k, p in enumerate(np.asarray(probs, dtype=np.float64)):
        span = source_offsets[k] if k < len(source_offsets) else None
        if span is None or span[1] <= span[0]:
            lost += p
            continue
        j = token_at(span[0] if side == "start" else span[1] - 1, target_offsets)
        if j is None:
            lost += p
        else:
            out[j] += p
    return out, float(lost)


# ---- post-processing: window logits -> one answer per question -> SQuAD scores ----

@dataclass
class SpanLabels:
    """What scoring a set of windows needs, window by window: the question each belongs to, its
    tokens' character spans (None outside the context), and per question the context and gold answers."""

    example: np.ndarray            # (windows,) question index
    offsets: list                  # per window: [(start, end) or None] per token
    contexts: dict                 # question index -> context
    golds: dict                    # question index -> gold answer texts
    max_answer_length: int = 30

    @property
    def n_windows(self) -> int:
        return len(self.example)


def window_logits(predictions, i: int) -> tuple[np.ndarray, np.ndarray]:
    """Window i's start and end logits from (windows, 2, L) arrays, a list of (2, L_i) arrays, or the
    Trainer's (starts, ends) pair."""
    if isinstance(predictions, tuple):
        return np.asarray(predictions[0][i]), np.asarray(predictions[1][i])
    p = predictions[i]
    return np.asarray(p[0]), np.asarray(p[1])


def answers(predictions, labels: SpanLabels) -> dict[int, str]:
    """The best answer text of each question over all its windows ('' when no valid span)."""
    by_question: dict[int, list] = collections.defaultdict(list)
    for i, q in enumerate(labels.example):
        s, e = window_logits(predictions, i)
        n = len(labels.offsets[i])
        by_question[int(q)].append((s[:n], e[:n], labels.offsets[i]))
    out = {}
    for q, windows in by_question.items():
        best = best_span(windows, labels.max_answer_length)
        out[q] = labels.contexts[q][best[0]:best[1]] if best else ""
    return out


LENGTH_BUCKETS = ((1, 1, "1"), (2, 2, "2"), (3, 3, "3"), (4, 5, "4-5"), (6, 10**9, "6+"))


def span_metrics(predictions, labels: SpanLabels) -> dict[str, float]:
    """SQuAD v1.1 exact match and F1 as fractions, and both by the gold answer's length in words
    (``em_len_<bucket>`` / ``f1_len_<bucket>``, the first gold answer's word count)."""
    texts = answers(predictions, labels)
    qs = sorted(texts)
    scores = squad_scores([texts[q] for q in qs], [labels.golds[q] for q in qs])
    out = {"exact_match": scores["exact_match"] / 100, "f1": scores["f1"] / 100}
    for lo, hi, name in LENGTH_BUCKETS:
        pick = [q for q in qs if lo <= len(labels.golds[q][0].split()) <= hi]
        if pick:
            s = squad_scores([texts[q] for q in pick], [labels.golds[q] for q in pick])
            out[f"em_len_{name}"], out[f"f1_len_{name}"] = s["exact_match"] / 100, s["f1"] / 100
    return out
