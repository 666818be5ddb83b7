"""One contract for every registered loss term (one row per term), on tiny models built here.

Each row: a finite scalar; zero when the student is its own teacher; gradients reach the
student and the term's projection but never the teacher; a shape mismatch gives one clear error.
"""
from __future__ import annotations

import copy
import math

import pytest
import torch
from torch import nn
from transformers import BertConfig, BertForSequenceClassification

from distiltune.models import features as FT
from distiltune.errors import DistilTuneError
from distiltune.losses import LOSSES, build_term

# Options per term for a 64-wide/4-layer/4-head teacher and a 32-wide/2-layer/2-head student.
ROWS = {
    "ce": {}, "kd": {}, "reverse_kl": {}, "js": {}, "gjsd": {"beta": 0.3}, "tv": {}, "logit_mse": {},
    "hidden_mse": {}, "hidden_cosine": {}, "embedding_mse": {}, "hint": {},
    "attention_kl": {"heads": "mean"}, "attention_mse": {"heads": "mean"}, "minilm": {"relation_heads": 2},
    "rkd_distance": {}, "rkd_angle": {}, "sp": {},
}


def bert(hidden, layers, heads, labels=2, seed=0):
    torch.manual_seed(seed)
    cfg = BertConfig(vocab_size=40, hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=heads,
                     intermediate_size=hidden * 2, max_position_embeddings=32, num_labels=labels,
                     attn_implementation="eager")
    return BertForSequenceClassification(cfg)


def batch():
    torch.manual_seed(1)
    ids = torch.randint(5, 40, (4, 9))
    mask = torch.ones_like(ids)
    mask[2, 6:] = 0  # one padded row: padding must be masked
    mask[3, 4:] = 0
    return {"input_ids": ids, "attention_mask": mask}


def run(term, student, teacher, inputs, teacher_grad=False):
    s_req, t_req = term.requests()
    s = FT.forward(student, inputs, s_req.hidden_states, s_req.attentions, s_req.modules, "student")
    with torch.set_grad_enabled(teacher_grad):
        t = FT.forward(teacher, inputs, t_req.hidden_states, t_req.attentions, t_req.modules, "teacher")
    return s, t


def evaluate(name, student, teacher, inputs, teacher_grad=False, **options):
    term = build_term(name, **{**ROWS[name], **options})
    term.setup(student, teacher)
    s, t = run(term, student, teacher, inputs, teacher_grad)
    term.build(s, t)
    labels = torch.tensor([0, 1, -100, 1])
    value = term(s, t, {"labels": labels, "attention_mask": inputs["attention_mask"], "temperature": 2.0})
    return term, value


def test_matrix_covers_every_builtin_term():
    builtin = {n for n in LOSSES.names() if LOSSES.get(n).__module__.startswith("distiltune.")}
    assert builtin == set(ROWS)


@pytest.mark.parametrize("name", sorted(ROWS))
def test_zero_for_a_student_that_is_its_own_teacher(name):
    student = bert(32, 2, 2)
    student.eval()  # dropout off: identical models must give identical outputs
    twin = copy.deepcopy(student)
    term, value = evaluate(name, student, twin, batch())
    assert value.dim() == 0 and math.isfinite(value.item())
    if name == "ce":  # no teacher: equals the reference cross-entropy over labelled rows
        logits = student(**batch()).logits
        ref = nn.functional.cross_entropy(logits[[0, 1, 3]], torch.tensor([0, 1, 1]))
        assert value.item() == pytest.approx(ref.item(), rel=1e-5)
    else:
        assert abs(value.item()) < 1e-5, f"{name} is {value.item()} for identical models"
        assert not list(term.parameters()), "equal widths need no projection"


@pytest.mark.parametrize("name", sorted(ROWS))
def test_gradient_reaches_student_and_projection_never_teacher(name):
    student, teacher = bert(32, 2, 2, seed=1), bert(64, 4, 4, seed=2)
    teacher.requires_grad_(True)  # so a leak through the teacher would show up as a .grad
    term, value = evaluate(name, student, teacher, batch(), teacher_grad=True)
    assert math.isfinite(value.item()) and value.item() > 0
    value.backward()
    grads = [p.grad for p in student.parameters() if p.grad is not None]
    assert grads and any(g.abs().sum() > 0 for g in grads)
    assert all(p.grad is None for p in teacher.parameters()), f"{name} sends gradient into the teacher"
    for p in term.parameters():  # projections (768 -> 384 in the demo; 32 -> 64 here) learn too
        assert p.grad is not None and p.grad.abs().sum() > 0
    if name in ("hidden_mse", "hidden_cosine", "embedding_mse", "hint"):
        assert list(term.parameters()), "different widths need a projection"


def _bad(name):
    """A shape problem each term must name in one line."""
    inputs = batch()
    if name in ("kd", "reverse_kl", "js", "gjsd", "tv", "logit_mse"):
        return evaluate(name, bert(32, 2, 2), bert(64, 4, 4, labels=3), inputs)
    if name == "ce":
        term = build_term("ce")
        out = FT.Outputs(logits=torch.zeros(4, 2))
        return term(out, None, {"labels": torch.tensor([0, 1])})
    if name in ("hidden_mse", "hidden_cosine", "embedding_mse", "hint"):
        return evaluate(name, bert(32, 2, 2), bert(64, 4, 4), inputs, projection=False)
    if name in ("attention_kl", "attention_mse"):
        return evaluate(name, bert(32, 2, 2), bert(64, 4, 4), inputs, heads="match")
    if name == "minilm":
        return evaluate(name, bert(32, 2, 2), bert(48, 4, 4), inputs, relation_heads=5)
    # relation terms: teacher outputs for other rows than the student's
    term = build_term(name)
    student, teacher = bert(32, 2, 2), bert(64, 4, 4)
    term.setup(student, teacher)
    s, _ = run(term, student, teacher, inputs)
    _, t = run(term, student, teacher, {k: v[:3] for k, v in inputs.items()})
    return term(s, t, {"attention_mask": inputs["attention_mask"]})


@pytest.mark.parametrize("name", sorted(ROWS))
def test_shape_problems_get_one_clear_line(name):
    with pytest.raises(DistilTuneError) as err:
        _bad(name)
    msg = str(err.value)
    # every row, ce included: one line, with a fix, naming the term (and, for ce, the labels it got)
    assert "\n" not in msg and "-> fix:" in msg and f"loss term '{name}'" in msg, msg
    if name == "ce":
        assert "labels" in msg, msg
