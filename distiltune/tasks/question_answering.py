"""Extractive question answering (SQuAD): the answer is a span of the context, scored by SQuAD's
exact match and F1 after the best span over all windows of a context is taken.

A model's output for a window is its start and end logits, handled as one (2, length) array so the
logit terms run over token positions (KD over the start and end distributions, with temperature,
mixed with the span CE). A teacher with another tokenizer reads the same characters as each student
window, and its start/end distributions are moved to the student's tokens through the character
offsets (:mod:`distiltune.data.windows`, :func:`distiltune.models.spans.moved_to_student`).
"""
from __future__ import annotations

import numpy as np

from ..data.qa_data import qa_stride
from ..data.windows import SpanCollator, SpanPadder, encode_teacher_windows, encode_windows
from ..errors import DistilTuneError
from ..models.inference import predict_span_logits
from .base import Loaded
from .qa_spans import SpanLabels, span_metrics
from .text_classification import TextClassification, pad_multiple

# The longest input a teacher with its own tokenizer reads: a student window's characters plus the
# question, in the teacher's tokens (up to its own limit).
TEACHER_MAX_LENGTH = 512


def pad_windows(rows: list[np.ndarray]) -> np.ndarray:
    """(windows, 2, L) from one (2, L_i) array per window; padding positions get a very low logit."""
    n = max((r.shape[-1] for r in rows), default=0)
    out = np.full((len(rows), 2, n), -1e4, dtype=np.float32)
    for i, r in enumerate(rows):
        out[i, :, :r.shape[-1]] = r
    return out


class QuestionAnswering(TextClassification):
    name = "question_answering"
    pipeline_tag = "question-answering"
    export_kind = "qa"
    head = "ForQuestionAnswering"

    @staticmethod
    def auto_class():
        from transformers import AutoModelForQuestionAnswering

        return AutoModelForQuestionAnswering

    @classmethod
    def load_data(cls, cfg):
        from ..data.qa_data import load_qa_data

        return load_qa_data(cfg)

    @classmethod
    def check_config(cls, cfg, problems) -> None:
        stride = qa_stride(cfg)  # doc_stride >= max_length: the data's check (data/qa_data.check_qa_rows) says so
        refusals = [
            (stride < 0, f"doc_stride={stride} is negative", "use 0 or more tokens of overlap"),
            (cfg.max_answer_length < 1, f"max_answer_length={cfg.max_answer_length} allows no answer",
             "use at least 1 (SQuAD's answers are up to about 30 tokens)"),
            (cfg.teacher_cache_topk is not None, "teacher_cache_topk keeps the top logits of one vector per row, but "
             "question answering caches a start and an end distribution per window", "remove teacher_cache_topk"),
            (bool(cfg.augment), "augment edits the words of a text, which would move the answers in their contexts",
             "remove augment (unlabeled questions give the student more rows to learn from)"),
            (cfg.online_teacher_lr is not None, "online_teacher_lr (a teacher that keeps learning while it teaches) "
             "is built for sequence classification: the teacher is read per window on its own tokens, so its loss "
             "on the student's labels is not defined",
             "remove online_teacher_lr"),
            (bool(cfg.text_pair_column), "question answering reads question_column and context_column",
             "remove text_pair_column"),
        ]
        for bad, problem, fix in refusals:
            if bad:
                problems.found.append(DistilTuneError(f"task_type question_answering: {problem}", fix))

    # ---- models ----
    def load(self, name: str, role: str) -> Loaded:
        loaded = super().load(name, role)
        loaded.tokenizer.padding_side = "right"  # positions, labels and maps count from the row's start
        return loaded

    def check_pair(self, teacher, student) -> None:
        """Both predict a start and an end per token: nothing to match."""

    # ---- rows ----
    def tokenize(self, rows, tokenizer, length: int, prefix: str):
        q, c = self.data.text_columns
        if prefix:  # a teacher with another tokenizer reads the student's windows
            limit = tokenizer.model_max_length
            return encode_teacher_windows(rows, tokenizer, q, c, min(limit if 0 < limit < 100_000 else TEACHER_MAX_LENGTH,
                                                                       TEACHER_MAX_LENGTH))
        return encode_windows(rows, tokenizer, q, c, length, qa_stride(self.cfg))

    def collator(self, tokenizer, teacher_tokenizer=None):
        return SpanCollator(tokenizer, teacher_tokenizer, pad_to_multiple_of=pad_multiple(self.cfg))

    def batcher(self, tokenizer, teacher_tokenizer=None, exact: bool = False):
        return SpanPadder(tokenizer, teacher_tokenizer, pad_to_multiple_of=None if exact else pad_multiple(self.cfg))

    def training_overrides(self) -> dict:
        # not the QA heads' start_positions / end_positions; "window" joins validation rows to questions
        return {"label_names": ["labels", "window"]}

    # ---- teacher outputs: start and end logits per window (and the maps, across tokenizers) ----
    def teacher_outputs(self, teacher, rows, batcher, prefix: str = ""):
        cfg = self.cfg
        teacher.to(cfg.device)
        out = predict_span_logits(teacher, batcher, rows, batch_size=64 if cfg.device.type == "cpu" else 256, bf16=cfg.bf16,
                                  desc="teacher start/end logits", prefix=prefix,
                                  progress=not cfg.disable_tqdm and len(rows) > 64)
        if prefix and "teacher_start_map" in rows.column_names:
            maps = rows.select_columns(["teacher_start_map", "teacher_end_map"])[:]
            out = [np.concatenate([o, np.stack([np.asarray(s) + 1, np.asarray(e) + 1]).astype(np.float32)])
                   for o, s, e in zip(out, maps["teacher_start_map"], maps["teacher_end_map"])]
        return out

    # ---- predict and score ----
    def predict(self, model, rows, batcher, desc: str = "predicting", bf16: bool = False) -> np.ndarray:
        """(windows, 2, L) start/end logits."""
        return pad_windows(predict_span_logits(model, batcher, rows, bf16=bf16, desc=desc,
                                               progress=not self.cfg.disable_tqdm))

    def labels(self, rows) -> SpanLabels:
        cols = rows.select_columns(["example", "offset_start", "offset_end", self.data.text_columns[1], "answers"])[:]
        offsets = [[(a, b) if a >= 0 else None for a, b in zip(s, e)] for s, e in zip(cols["offset_start"], cols["offset_end"])]
        contexts, golds = {}, {}
        for q, ctx, ans in zip(cols["example"], cols[self.data.text_columns[1]], cols["answers"]):
            contexts[q], golds[q] = ctx, ans["text"] or [""]
        return SpanLabels(np.asarray(cols["example"]), offsets, contexts, golds, self.cfg.max_answer_length)

    def metrics(self, predictions, labels: SpanLabels) -> dict[str, float]:
        return span_metrics(predictions, labels)

    def compute_metrics(self, pred) -> dict:
        """Validation SQuAD scores. Windows come back in the sampler's order with their place in the
        encoding (``window``); the encoding is the validation rows' for the model being trained, found
        among the task's encodings by its labels (which differ between tokenizers)."""
        label_ids, window = (np.asarray(x) for x in pred.label_ids)
        preds = pred.predictions
        starts, ends = (preds[0], preds[1]) if isinstance(preds, (tuple, list)) else (preds[:, 0], preds[:, 1])
        for enc in self.encoded.values():
            if len(enc) != len(label_ids) or "window" not in enc.column_names:
                continue
            order = np.argsort(window, kind="stable")
            if np.array_equal(window[order], np.arange(len(enc))) and \
                    np.array_equal(np.asarray(enc["labels"]), label_ids[order]):
                return self.metrics((np.asarray(starts)[order], np.asarray(ends)[order]), self.labels(enc))
        raise DistilTuneError("validation windows could not be matched to their questions",
                              "report this; the validation rows were encoded differently from the ones evaluated")

    # ---- export ----
    def export_plan(self, model, tokenizer, test, batcher, source: str) -> dict:
        """As for texts, plus what predict.py needs to cut a context into the same windows."""
        plan = super().export_plan(model, tokenizer, test, batcher, source)
        plan["meta"].update(doc_stride=qa_stride(self.cfg), max_answer_length=self.cfg.max_answer_length,
                            question_column=self.data.text_columns[0], context_column=self.data.text_columns[1])
        return plan

    def agreement(self, reference, predictions, labels: SpanLabels) -> dict:
        """The share of questions whose predicted answer text is the same."""
        from .qa_spans import answers

        a, b = answers(reference, labels), answers(predictions, labels)
        same = [a[q] == b[q] for q in a]
        n = min(reference.shape[-1], predictions.shape[-1])
        real = reference[..., :n] > -1e3
        diff = np.abs(reference[..., :n] - predictions[..., :n])[real]
        return {"agreement": float(np.mean(same)) if same else 1.0,
                "max_abs_logit_diff": float(diff.max()) if diff.size else 0.0}
