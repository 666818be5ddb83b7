"""Draws from the teacher's tail in a language model's cache (``teacher_cache_tail_samples``): what the
top-k buckets cannot see of forward KL, estimated without bias in value and gradient, drawn the same
way for a row wherever it is built, and stored in half precision."""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from distiltune.config.schema import DistillConfig
from distiltune.data import teacher_cache as TC
from distiltune.losses.logits import kd_per_sample
from distiltune.models.lm import teacher_token_forms, token_topk
from lm_helpers import tiny_llama

VOCAB, K = 400, 8


def zipf_teacher(positions: int, seed: int = 0) -> torch.Tensor:
    """Logits with a heavy tail, as a language model's: log p ~ -1.1 log rank, ranks shuffled per position."""
    g = torch.Generator().manual_seed(seed)
    base = -1.1 * torch.log(torch.arange(1, VOCAB + 1, dtype=torch.float32))
    perm = torch.argsort(torch.rand(positions, VOCAB, generator=g), dim=-1)
    return base[perm] * 2.0 + 0.3 * torch.randn(positions, VOCAB, generator=g)


def cached(teacher: torch.Tensor, m: int, temperature: float, seed: int = 0):
    """The teacher as training reads it from the cache: one row of response tokens, collated and placed."""
    row = {c: x.numpy() for c, x in token_topk(teacher, K, m, seed).items()}
    batch = TC.collate([row])
    return TC.sparse_teacher(batch, torch.ones(1, len(teacher), dtype=torch.bool), VOCAB, temperature)


def kd_and_grad(student: torch.Tensor, teacher, t: float):
    s = student.clone().requires_grad_(True)
    loss = kd_per_sample(s, teacher, t).mean()
    loss.backward()
    return loss.item(), s.grad


def test_many_draws_give_the_dense_kd_and_its_gradient_where_the_buckets_fall_short():
    t = 1.0
    teacher = zipf_teacher(200)
    student = teacher + torch.randn(200, VOCAB, generator=torch.Generator().manual_seed(1)) * 1.5
    dense, g_dense = kd_and_grad(student[None], teacher[None], t)
    buckets, g_buckets = kd_and_grad(student[None], cached(teacher, 0, t), t)
    drawn, g_drawn = kd_and_grad(student[None], cached(teacher, 4000, t), t)
    rel = (lambda g: float((g - g_dense).norm() / g_dense.norm()))
    assert abs(buckets - dense) / dense > 0.03  # the top-8 of 400 misses part of the divergence
    assert abs(drawn - dense) / dense < 0.003
    assert rel(g_drawn) < 0.01 < rel(g_buckets)


@pytest.mark.parametrize("t", [2.0, 0.8])
def test_away_from_t_1_the_draws_are_not_read(t):
    """Draws at T = 1 are far from the flatter tail at T = 2, and below the grid the tail's mass is
    extrapolated: there the buckets' form applies as it is."""
    teacher = zipf_teacher(50)
    student = torch.randn(1, 50, VOCAB, generator=torch.Generator().manual_seed(1))
    assert kd_and_grad(student, cached(teacher, 10, t), t)[0] == kd_and_grad(student, cached(teacher, 0, t), t)[0]


def test_ten_draws_a_token_bring_the_kd_within_a_percent_at_t_1():
    """The cache's default: the mean over tokens averages the draws' noise out."""
    teacher = zipf_teacher(2000, seed=2)
    student = teacher + torch.randn(2000, VOCAB, generator=torch.Generator().manual_seed(3))
    dense = kd_per_sample(student, teacher, 1.0).mean().item()
    buckets = kd_per_sample(student[None], cached(teacher, 0, 1.0), 1.0).mean().item()
    drawn = kd_per_sample(student[None], cached(teacher, 10, 1.0), 1.0).mean().item()
    assert abs(drawn - dense) / dense < 0.01 < abs(buckets - dense) / dense


def test_draws_come_from_the_tail_by_the_teachers_probabilities_with_their_log_probabilities():
    teacher = zipf_teacher(3)
    form = token_topk(teacher, K, 20000, seed=5)
    logp = F.log_softmax(teacher, -1)
    ids, top = form["teacher_tail_ids"], form["teacher_topk_indices"]
    assert not (ids[:, :, None] == top[:, None, :]).any()  # never one of the top-k
    torch.testing.assert_close(form["teacher_tail_values"], logp.gather(-1, ids))
    torch.testing.assert_close(form["teacher_topk_values"], logp.gather(-1, top))
    rest = logp.exp().scatter(-1, top, 0.0)
    want = rest / rest.sum(-1, keepdim=True)
    seen = torch.zeros(3, VOCAB).scatter_add_(-1, ids, torch.ones_like(ids, dtype=torch.float32)) / 20000
    assert float((seen - want).abs().sum(-1).max()) < 0.06  # total variation of 20,000 draws
    again = token_topk(teacher, K, 20000, seed=5)["teacher_tail_ids"]
    assert torch.equal(again, ids) and not torch.equal(token_topk(teacher, K, 20000, seed=6)["teacher_tail_ids"], ids)


def test_a_rows_draws_do_not_depend_on_the_rows_built_beside_it():
    """Seeded by the row's own token ids: a resumed or re-batched build stores what an uninterrupted one would."""
    from datasets import Dataset

    from distiltune.data.lm_collate import LMCollator
    from lm_helpers import bpe_tokenizer

    g = torch.Generator().manual_seed(0)
    rows = []
    for n in (9, 6, 12):
        ids = torch.randint(3, 60, (n,), generator=g).tolist()
        rows.append({"input_ids": ids, "attention_mask": [1] * n, "response_mask": [0] * 3 + [1] * (n - 3), "length": n})
    ds = Dataset.from_list(rows)
    tok = bpe_tokenizer()
    tok.pad_token = tok.eos_token
    model, collate = tiny_llama(len(tok), seed=4).eval(), LMCollator(tok)
    cpu = torch.device("cpu")
    whole = teacher_token_forms(model, ds, collate, cpu, False, None, 8, 10)
    alone = teacher_token_forms(model, ds.select([2]), collate, cpu, False, None, 8, 10)
    assert np.array_equal(whole["teacher_tail_ids"][2], alone["teacher_tail_ids"][0])
    assert whole["teacher_tail_ids"][2].shape == (9, 10) and whole["teacher_tail_ids"][2].dtype == np.int32
    assert whole["teacher_topk_values"][0].dtype == np.float16 and whole["teacher_tail_values"][0].dtype == np.float16
    assert not np.array_equal(whole["teacher_tail_ids"][0][:6], whole["teacher_tail_ids"][1][:6])


def test_the_cache_keeps_half_precision_and_rebuilds_when_the_draws_change(tmp_path):
    from datasets import Dataset

    g = torch.Generator().manual_seed(0)
    ds = Dataset.from_dict({"input_ids": [[1, 2, 3], [4, 5], [6, 7, 8, 9]]})
    logits = [torch.randn(len(r), VOCAB, generator=g) for r in ds["input_ids"]]

    def predict(m):
        def run(rows):
            forms = [token_topk(logits[ds["input_ids"].index(r)], K, m, seed=i) for i, r in enumerate(rows["input_ids"])]
            return {c: [f[c].numpy().astype(np.int32 if c.endswith(("ids", "indices")) else np.float16) for f in forms]
                    for c in forms[0]}
        return run

    log = []
    cache = (lambda m: TC.TeacherCache(str(tmp_path), "fp", topk=K, log=log.append, form={"tail_samples": m}))
    out = cache(10).attach(ds, ds, ["input_ids"], predict(10))
    assert out.features["teacher_tail_values"].feature.feature.dtype == "float16"
    assert out.features["teacher_topk_values"].feature.feature.dtype == "float16"
    assert out.features["teacher_tail_ids"].feature.feature.dtype == "int32"
    assert np.asarray(out["teacher_tail_ids"][2]).shape == (4, 10)
    cache(4).attach(ds, ds, ["input_ids"], predict(4))
    assert any("storage form changed" in line for line in log)


@pytest.mark.parametrize("value, message", [(-1, "teacher_cache_tail_samples=-1 must be >= 0")])
def test_a_negative_number_of_draws_is_refused(value, message):
    with pytest.raises(ValueError, match=message):
        DistillConfig(output_dir="x", teacher_cache_tail_samples=value)
