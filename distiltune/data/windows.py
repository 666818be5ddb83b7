"""Extractive-QA rows as model inputs: each question with its context, cut into overlapping windows.

A context longer than ``max_length`` (with its question) becomes several windows that share
``doc_stride`` tokens, the question repeated in each (transformers' ``return_overflowing_tokens``).
A window row keeps what post-processing needs: its question's row (``example``), each token's
character span in the context (``offset_start`` / ``offset_end``, -1 outside the context),
``span_mask`` (the positions an answer may start or end at: context tokens and the "no answer
here" token), and as ``labels`` the answer's start and end token (both at that token when the
answer is not inside the window; -100 on unlabeled rows).

A teacher with another tokenizer reads, per student window, the question and the same characters
of the context, so the two models see the same text; ``teacher_start_map`` / ``teacher_end_map``
send each teacher token to the student token that holds its first / last character
(:func:`position_map`).
"""
from __future__ import annotations

import numpy as np
import torch
from datasets import Dataset

from ..constants import IGNORE_INDEX
from ..errors import DistilTuneError
from .collate import MODEL_KEYS, Padder, pad_rows
from .teacher_cache import collate as cached_columns

META = ("example", "offset_start", "offset_end", "span_mask")


def no_answer_index(tokenizer, input_ids: list[int]) -> int:
    """The "no answer in this window" position: the classifier token (BERT's [CLS], RoBERTa's <s>)."""
    cls = tokenizer.cls_token_id if tokenizer.cls_token_id is not None else tokenizer.bos_token_id
    return input_ids.index(cls) if cls is not None and cls in input_ids else 0


def _token_span(starts: np.ndarray, ends: np.ndarray, c0: int, c1: int) -> tuple[int, int] | None:
    """Start and end token of the characters [c0, c1) when the window's context holds all of them."""
    inside = starts >= 0
    if not inside.any() or c0 < starts[inside].min() or c1 > ends[inside].max():
        return None
    first = np.nonzero(inside & (ends > c0))[0]
    last = np.nonzero(inside & (starts < c1))[0]
    if not len(first) or not len(last) or last[-1] < first[0]:
        return None
    return int(first[0]), int(last[-1])


def encode_windows(ds: Dataset, tokenizer, question: str, context: str, max_length: int, stride: int,
                   prefix: str = "") -> Dataset:
    """One row per window, with the model inputs, ``length``, :data:`META` and ``labels``."""
    if not getattr(tokenizer, "is_fast", False):
        raise DistilTuneError(f"the tokenizer {type(tokenizer).__name__} is not a fast tokenizer, so tokens cannot be "
                              "mapped to characters of the context", "use a model folder with a tokenizer.json")
    keep = [c for c in ds.column_names if c not in ("labels",)]

    def enc(batch, indices):
        try:
            out = tokenizer([q.lstrip() for q in batch[question]], batch[context], truncation="only_second",
                            max_length=max_length, stride=stride, return_overflowing_tokens=True,
                            return_offsets_mapping=True)
        except Exception as e:  # a question that leaves no room for the context and its overlap
            raise DistilTuneError(f"questions do not fit max_length={max_length} with doc_stride={stride} "
                                  f"({str(e).splitlines()[0][:120]})", "raise max_length or lower doc_stride") from None
        res = {k: [] for k in (*(f"{prefix}{k}" for k in MODEL_KEYS if k in out), "length", "labels", *META, *keep)}
        res[f"{prefix}length"] = res.pop("length")
        for w, row in enumerate(out["overflow_to_sample_mapping"]):
            ids, seq = out["input_ids"][w], out.sequence_ids(w)
            starts = np.array([o[0] if s == 1 else -1 for o, s in zip(out["offset_mapping"][w], seq)], dtype=np.int64)
            ends = np.array([o[1] if s == 1 else -1 for o, s in zip(out["offset_mapping"][w], seq)], dtype=np.int64)
            cls = no_answer_index(tokenizer, ids)
            mask = (starts >= 0).astype(np.int64)
            mask[cls] = 1
            c0, c1 = batch["labels"][row]
            if c0 == IGNORE_INDEX:
                label = [IGNORE_INDEX, IGNORE_INDEX]
            else:
                span = _token_span(starts, ends, c0, c1)
                label = list(span) if span else [cls, cls]
            for k in MODEL_KEYS:
                if k in out:
                    res[f"{prefix}{k}"].append(out[k][w])
            res[f"{prefix}length"].append(len(ids))
            res["labels"].append(label)
            res["example"].append(int(indices[row]))
            res["offset_start"].append(starts.tolist())
            res["offset_end"].append(ends.tolist())
            res["span_mask"].append(mask.tolist())
            for c in keep:
                res[c].append(batch[c][row])
        return res

    out = ds.map(enc, batched=True, with_indices=True, remove_columns=ds.column_names,
                 desc=f"cutting contexts into windows{' for ' + prefix.rstrip('_') if prefix else ''}")
    # each window's place in the encoding: validation batches come back in the sampler's order (grouped
    # by length, or split over processes), and scoring must join each window to its question
    return out.add_column("window", list(range(len(out))))


def encode_teacher_windows(windows: Dataset, tokenizer, question: str, context: str, max_length: int) -> Dataset:
    """The student's windows as a teacher with another tokenizer reads them: the question and the
    window's characters of the context, plus the maps from teacher tokens to student tokens."""
    def enc(batch):
        slices = []
        for ctx, s, e in zip(batch[context], batch["offset_start"], batch["offset_end"]):
            s, e = np.asarray(s), np.asarray(e)
            inside = s >= 0
            c0, c1 = (int(s[inside].min()), int(e[inside].max())) if inside.any() else (0, 0)
            slices.append((c0, ctx[c0:c1]))
        out = tokenizer([q.lstrip() for q in batch[question]], [t for _, t in slices], truncation="only_second",
                        max_length=max_length, return_offsets_mapping=True)
        res = {f"teacher_{k}": out[k] for k in MODEL_KEYS if k in out}
        res["teacher_length"] = [len(x) for x in out["input_ids"]]
        res["teacher_start_map"], res["teacher_end_map"] = [], []
        for i, (c0, _) in enumerate(slices):
            seq = out.sequence_ids(i)
            teacher = [(o[0] + c0, o[1] + c0) if s == 1 and o[1] > o[0] else None
                       for o, s in zip(out["offset_mapping"][i], seq)]
            student = [(a, b) if a >= 0 and b > a else None for a, b in zip(batch["offset_start"][i], batch["offset_end"][i])]
            t_cls = no_answer_index(tokenizer, out["input_ids"][i])
            s_cls = int(np.nonzero(np.asarray(batch["span_mask"][i]) & (np.asarray(batch["offset_start"][i]) < 0))[0][0])
            for side in ("start", "end"):
                m = position_map(teacher, student, side)
                m[t_cls] = s_cls  # "no answer here" is the same statement in both models
                res[f"teacher_{side}_map"].append(m.tolist())
        return res

    return windows.map(enc, batched=True, desc="the teacher's tokens of each window")


def position_map(source_offsets: list, target_offsets: list, side: str) -> np.ndarray:
    """For each source token, the target token that receives its start (or end) mass, -1 for none:
    the target token holding the source token's first character (``side="start"``) or last character
    (``"end"``), or for a character no target token holds (a space) the first target token after it.
    The rule of :func:`distiltune.tasks.qa_spans.move_distribution`, for whole windows at once (``searchsorted``, not a scan)."""
    spans = [(s[0], s[1], j) for j, s in enumerate(target_offsets) if s is not None and s[1] > s[0]]
    out = np.full(len(source_offsets), -1, dtype=np.int64)
    if not spans:
        return out
    spans.sort()
    starts = np.array([a for a, _, _ in spans])
    ends = np.array([b for _, b, _ in spans])
    ids = np.array([j for _, _, j in spans])
    for k, span in enumerate(source_offsets):
        if span is None or span[1] <= span[0]:
            continue
        char = span[0] if side == "start" else span[1] - 1
        i = int(np.searchsorted(starts, char, side="right")) - 1
        if i >= 0 and ends[i] > char:
            out[k] = ids[i]
        elif i + 1 < len(ids):
            out[k] = ids[i + 1]
    return out


def pad_column(rows: list[list[int]], n: int, fill: int, left: bool = False) -> torch.Tensor:
    out = np.full((len(rows), n), fill, dtype=np.int64)
    for i, r in enumerate(rows):
        if left:
            out[i, n - len(r):] = r
        else:
            out[i, :len(r)] = r
    return torch.from_numpy(out)


class SpanPadder(Padder):
    """Pads window rows; the teacher's maps are part of what the teacher reads (the cache keys on
    them) but not a model input."""

    keys = (*MODEL_KEYS, "start_map", "end_map")

    def batch(self, rows: list[dict]) -> dict:
        return self.tokenizer_pad([{k: r[k] for k in MODEL_KEYS if k in r} for r in rows])


class SpanCollator:
    """Training batches of windows: each model's tokens padded with its tokenizer, ``span_mask``,
    ``labels`` (batch, 2), the teacher's maps (-1 on padding) and the cached teacher outputs."""

    def __init__(self, tokenizer, teacher_tokenizer=None, pad_to_multiple_of: int | None = None):
        self.tokenizer, self.teacher_tokenizer, self.pad_to_multiple_of = tokenizer, teacher_tokenizer, pad_to_multiple_of

    def __call__(self, features: list[dict]) -> dict:
        # right padding (the QA task sets it): token positions, labels and maps count from the row's start
        batch = pad_rows(self.tokenizer, [{k: f[k] for k in MODEL_KEYS if k in f} for f in features], self.pad_to_multiple_of)
        batch["span_mask"] = pad_column([f["span_mask"] for f in features], batch["input_ids"].shape[1], 0, False).bool()
        if self.teacher_tokenizer is not None and "teacher_input_ids" in features[0]:
            t = pad_rows(self.teacher_tokenizer, [{k: f["teacher_" + k] for k in MODEL_KEYS if "teacher_" + k in f}
                                                  for f in features], self.pad_to_multiple_of)
            for side in ("start_map", "end_map"):
                t[side] = pad_column([f[f"teacher_{side}"] for f in features], t["input_ids"].shape[1], -1, False)
            batch.update({f"teacher_{k}": v for k, v in t.items()})
        if "labels" in features[0]:
            batch["labels"] = torch.tensor([f["labels"] for f in features], dtype=torch.long)
        if "window" in features[0]:
            batch["window"] = torch.tensor([f["window"] for f in features], dtype=torch.long)
        batch.update(cached_columns(features))
        return batch
