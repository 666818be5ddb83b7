"""The training forward pass of a causal LM: KD terms read the response tokens only, a teacher whose
output layer has more (padding) rows is read over the student's rows, and the per-token top-k cache
gives the live teacher's losses."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.special import rel_entr, softmax

from distiltune.data import teacher_cache as TC
from distiltune.models.lm import token_topk
from distiltune.losses import build_term
from distiltune.training.forward import forward_all
from lm_helpers import tiny_llama


def batch():
    g = torch.Generator().manual_seed(3)
    ids = torch.randint(0, 60, (2, 10), generator=g)
    mask = torch.ones(2, 10, dtype=torch.long)
    mask[1, 7:] = 0
    response = torch.zeros(2, 10, dtype=torch.long)
    response[0, 4:9], response[1, 2:6] = 1, 1
    labels = torch.where(response.bool(), torch.roll(ids, -1, 1), torch.full_like(ids, -100))
    return {"input_ids": ids, "attention_mask": mask, "labels": labels, "response_mask": response}


@pytest.fixture(scope="module")
def models():
    return tiny_llama(64, seed=1).eval(), tiny_llama(72, hidden=48, seed=2).eval()  # teacher: 8 padding rows more


def test_kd_reads_response_tokens_over_the_students_rows(models):
    student, teacher = models
    terms = [build_term("kd"), build_term("ce")]
    inputs = batch()
    s_out, t_out, b = forward_all(student, teacher, dict(inputs), terms, temperature=2.0)
    kd = terms[0](s_out, t_out, b | {"temperature": 2.0})
    with torch.no_grad():
        s = student(input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"]).logits.double().numpy()
        t = teacher(input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"]).logits.double().numpy()
    per = 4.0 * rel_entr(softmax(t[..., :64] / 2, -1), softmax(s / 2, -1)).sum(-1)  # the teacher's 8 extra rows cut
    keep = inputs["response_mask"].bool().numpy()
    assert kd.item() == pytest.approx(per[keep].mean(), rel=1e-4)
    ce = terms[1](s_out, t_out, b)
    assert torch.isfinite(ce) and ce.item() > 0


def test_a_teacher_with_fewer_rows_teaches_the_students_extra_rows_to_stay_empty(models):
    student, teacher = models
    s_out, t_out, _ = forward_all(teacher, student, dict(batch()), [build_term("kd")], temperature=1.0)
    assert t_out.logits.shape[-1] == 72 and (t_out.logits[..., 64:] == -1e4).all()


@pytest.mark.parametrize("temperature", [1.0, 3.0])
def test_the_per_token_top_k_cache_gives_the_live_teachers_kd(models, temperature):
    student, teacher = models
    inputs = batch()
    with torch.no_grad():
        t = teacher(input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"]).logits[..., :64]
    rows = []
    for r in range(2):
        rows.append({c: x.numpy() for c, x in token_topk(t[r][inputs["response_mask"][r].bool()], 8).items()})
    cached = dict(inputs) | TC.collate(rows)
    term = build_term("kd")
    s_out, t_out, b = forward_all(student, None, cached, [term], temperature=temperature)  # no teacher needed
    got = term(s_out, t_out, b | {"temperature": temperature})
    from distiltune.losses import vocab as V

    s_live, _, b_live = forward_all(student, teacher, dict(inputs), [term], temperature=temperature)
    want = term(s_live, type(s_live)(logits=V.top_k(t, 8, temperature)), b_live | {"temperature": temperature})
    assert got.item() == pytest.approx(want.item(), abs=1e-6)  # the cache's log-probabilities: fp32 rounding of the shift
    live = term(*forward_all(student, teacher, dict(inputs), [term], temperature=temperature)[:2],
                b_live | {"temperature": temperature})
    assert got.item() <= live.item() + 1e-6  # top-8 of 64 buckets: a lower bound of the dense KD
    assert np.isfinite(got.item())


def test_tail_draws_in_the_cache_bring_the_kd_to_the_live_teachers_dense_kd(models):
    """Through the whole training forward (collate, placing at response positions, chunked terms)."""
    student, teacher = models
    inputs = batch()
    with torch.no_grad():
        t = teacher(input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"]).logits[..., :64]
    term = build_term("kd")
    live = term(*forward_all(student, teacher, dict(inputs), [term], temperature=1.0)[:2],
                forward_all(student, teacher, dict(inputs), [term], temperature=1.0)[2] | {"temperature": 1.0}).item()

    def from_cache(draws: int) -> float:
        rows = [{c: x.numpy() for c, x in token_topk(t[r][inputs["response_mask"][r].bool()], 8, draws, r).items()}
                for r in range(2)]
        s_out, t_out, b = forward_all(student, None, dict(inputs) | TC.collate(rows), [term], temperature=1.0)
        return term(s_out, t_out, b | {"temperature": 1.0}).item()

    assert abs(from_cache(0) - live) / live > 0.05  # top-8 of 64: the tail holds much of the divergence
    assert from_cache(3000) == pytest.approx(live, rel=0.01)
