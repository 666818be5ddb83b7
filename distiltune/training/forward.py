"""The forward passes of a training step: the student, and the teacher only when a term needs more
than the cached teacher outputs, each capturing just what the active terms read."""
from __future__ import annotations

import torch

from ..data import teacher_cache as TC
from ..errors import DistilTuneError
from ..losses import Requests
from ..models import features as FT
from ..models import spans as SP
from ..models.inference import gather_words
from ..models.lm import student_vocabulary
from .monitor import check_alignment


def forward_all(model, teacher, inputs: dict, terms: list, temperature: float = 1.0, hook_model=None,
                teacher_learns: bool = False):
    """Student and (if needed) teacher outputs with what ``terms`` read, plus the batch dict
    (labels, attention masks). Pops the label, cached and ``teacher_*`` columns from ``inputs``.
    ``teacher_learns`` (an online teacher): the teacher always runs, with gradients."""
    batch = {"labels": inputs.pop("labels", None)}
    words = inputs.pop("word_index", None)  # word-level tasks: logits are read at each word's first sub-token
    span_mask = inputs.pop("span_mask", None)  # extractive QA: where an answer may start or end
    positions = inputs.pop("response_mask", None)  # causal LM: the response tokens, which the KD terms read
    inputs.pop("window", None)  # (QA) which window a row is: read by validation scoring, not by a model
    cache_cols = {c: inputs.pop(c) for c in TC.COLUMNS if c in inputs}
    teacher_inputs = {k[len("teacher_"):]: inputs.pop(k) for k in list(inputs) if k.startswith("teacher_")}
    t_words = teacher_inputs.pop("word_index", words)
    t_maps = [teacher_inputs.pop(k) for k in ("start_map", "end_map") if k in teacher_inputs]
    s_req, t_req = Requests(), Requests()
    for term in terms:
        s, t = term.requests()
        s_req, t_req = s_req.merge(s), t_req.merge(t)
    student_out = FT.forward(model, inputs, s_req.hidden_states, s_req.attentions, s_req.modules, "student",
                             hook_model=hook_model)
    if words is not None:
        student_out.logits = gather_words(student_out.logits, words)
        batch["position_mask"] = words >= 0
    if span_mask is not None:
        student_out.logits = SP.mask_spans(student_out.logits, span_mask)
    if positions is not None:
        batch["position_mask"] = positions.bool()
    teacher_out = None
    if positions is not None and cache_cols:  # a language model's per-token top-k, never a dense vocabulary
        cached = TC.sparse_teacher(cache_cols, positions, student_out.logits.shape[-1], temperature)
    else:
        cached = TC.teacher_logits_from(cache_cols, student_out.logits.shape[-1], temperature) if cache_cols else None
    if cached is not None and words is not None:
        cached = fit_words(cached, words.shape[1])
    if cached is not None and span_mask is not None:
        cached = teacher_spans(cached, span_mask, temperature)
    teaching = [t for t in terms if t.needs_teacher]
    if teaching or teacher_learns:
        if cached is not None and all(t.uses_logits_only for t in teaching) and not teacher_learns:
            teacher_out = FT.Outputs(logits=cached)
        else:
            if teacher is None:
                raise DistilTuneError("a loss term needs the teacher's features but no teacher was given",
                                      "pass teacher=<model>")
            check_alignment([t for t in teaching if t.token_level], inputs, teacher_inputs)
            with torch.set_grad_enabled(teacher_learns):
                teacher_out = FT.forward(teacher, teacher_inputs or inputs, t_req.hidden_states, t_req.attentions,
                                         t_req.modules, "teacher")
            if words is not None:
                teacher_out.logits = fit_words(gather_words(teacher_out.logits, t_words), words.shape[1])
            if positions is not None:
                teacher_out.logits = student_vocabulary(teacher_out.logits, student_out.logits.shape[-1])
            if span_mask is not None:
                logits = teacher_out.logits
                if t_maps:  # another tokenizer: the same (batch, 4, length) form as a cached row
                    logits = torch.cat([logits.float(), torch.stack(t_maps, 1).float() + 1], dim=1)
                teacher_out.logits = teacher_spans(logits, span_mask, temperature)
    batch.update(attention_mask=inputs.get("attention_mask"),
                 teacher_attention_mask=(teacher_inputs or inputs).get("attention_mask"))
    return student_out, teacher_out, batch


def fit_words(teacher_logits: torch.Tensor, n: int) -> torch.Tensor:
    """The teacher's per-word logits cut or zero-padded to the student's ``n`` words. The teacher reads
    each row up to its own length limit, so it has at least the words the student kept; the extra ones
    (past the student's max_length) teach nothing."""
    have = teacher_logits.shape[1]
    if have >= n:
        return teacher_logits[:, :n]
    return torch.nn.functional.pad(teacher_logits, (0, 0, 0, n - have))


def teacher_spans(teacher: torch.Tensor, span_mask: torch.Tensor, temperature: float) -> torch.Tensor:
    """The teacher's (batch, 2, length) start/end logits on the student's positions, masked like the
    student's: moved through the character maps when it has another tokenizer (4 rows), else cut or
    padded to the student's length."""
    n = span_mask.shape[1]
    if teacher.shape[1] == 4:
        return SP.mask_spans(SP.moved_to_student(teacher, n, temperature), span_mask)
    return SP.mask_spans(SP.fit_positions(teacher, n), span_mask)


def eval_forward(model, inputs: dict):
    """The model's outputs for validation (labels and teacher columns already removed), with word-level
    logits where the batch has words. A span head's output keeps its start/end logits (what the
    Trainer gathers for the metric) and gains ``.logits``, the masked (batch, 2, length) the loss reads."""
    words = inputs.pop("word_index", None)
    span_mask = inputs.pop("span_mask", None)
    inputs.pop("window", None)
    inputs.pop("response_mask", None)  # causal LM: the labels already mark what is scored
    outputs = model(**inputs)
    if words is not None:
        outputs.logits = gather_words(outputs.logits, words)
    if span_mask is not None:
        outputs.logits = SP.mask_spans(SP.stacked(outputs), span_mask)
    return outputs
