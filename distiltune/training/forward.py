"""The forward passes of a training step: the student, and the teacher only when a term needs more
than the cached teacher outputs, each capturing just what the active terms read."""
from __future__ import annotations

import torch

from ..data import teacher_cache as TC
from ..errors import DistilTuneError
from ..losses import Requests
from ..models import features as FT
from .monitor import check_alignment


def forward_all(model, teacher, inputs: dict, terms: list, temperature: float = 1.0, hook_model=None):
    """Student and (if needed) teacher outputs with what ``terms`` read, plus the batch dict
    (labels, attention masks). Pops the label, cached and ``teacher_*`` columns from ``inputs``."""
    batch = {"labels": inputs.pop("labels", None)}
    cache_cols = {c: inputs.pop(c) for c in TC.COLUMNS if c in inputs}
    teacher_inputs = {k[len("teacher_"):]: inputs.pop(k) for k in list(inputs) if k.startswith("teacher_")}
    s_req, t_req = Requests(), Requests()
    for term in terms:
        s, t = term.requests()
        s_req, t_req = s_req.merge(s), t_req.merge(t)
    student_out = FT.forward(model, inputs, s_req.hidden_states, s_req.attentions, s_req.modules, "student",
                             hook_model=hook_model)
    teacher_out = None
    cached = TC.teacher_logits_from(cache_cols, student_out.logits.shape[-1], temperature) if cache_cols else None
    teaching = [t for t in terms if t.needs_teacher]
    if teaching:
        if cached is not None and all(t.uses_logits_only for t in teaching):
            teacher_out = FT.Outputs(logits=cached)
        else:
            if teacher is None:
                raise DistilTuneError("a loss term needs the teacher's features but no teacher was given",
                                      "pass teacher=<model>")
            check_alignment([t for t in teaching if t.token_level], inputs, teacher_inputs)
            with torch.no_grad():
                teacher_out = FT.forward(teacher, teacher_inputs or inputs, t_req.hidden_states, t_req.attentions,
                                         t_req.modules, "teacher")
    batch.update(attention_mask=inputs.get("attention_mask"),
                 teacher_attention_mask=(teacher_inputs or inputs).get("attention_mask"))
    return student_out, teacher_out, batch
