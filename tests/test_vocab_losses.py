"""Divergences over a vocabulary: each against a direct reference computation, GKD's generalized JSD
between its two KLs, the chunked computation equal to the whole one (value and gradient) while it
keeps no fp32 vocabulary-sized tensor for the backward pass, and the sparse top-k teacher."""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from scipy.special import rel_entr, softmax

from distiltune.errors import DistilTuneError
from distiltune.losses import build_term
from distiltune.losses import vocab as V
from distiltune.losses.logits import js_per_sample, kd_per_sample, teacher_confidence
from distiltune.models.features import Outputs


def logits(*shape, seed=0, scale=2.0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(*shape, generator=g) * scale


def test_divergences_match_a_direct_reference():
    s, t = logits(6, 50, seed=1), logits(6, 50, seed=2)
    p_s, p_t = softmax(s.double().numpy() / 2, -1), softmax(t.double().numpy() / 2, -1)
    log_t, log_s = V.log_probs(s, t, 2.0)
    np.testing.assert_allclose(V.forward_kl(log_t, log_s), rel_entr(p_t, p_s).sum(-1), rtol=1e-4)
    np.testing.assert_allclose(V.reverse_kl(log_t, log_s), rel_entr(p_s, p_t).sum(-1), rtol=1e-4)
    np.testing.assert_allclose(V.total_variation(log_t, log_s), 0.5 * np.abs(p_t - p_s).sum(-1), rtol=1e-4)
    beta = 0.3
    m = beta * p_t + (1 - beta) * p_s
    ref = (beta * rel_entr(p_t, m).sum(-1) + (1 - beta) * rel_entr(p_s, m).sum(-1)) / (beta * (1 - beta))
    np.testing.assert_allclose(V.generalized_jsd(log_t, log_s, beta), ref, rtol=1e-4)


def test_generalized_jsd_runs_from_forward_to_reverse_kl():
    log_t, log_s = V.log_probs(logits(8, 30, seed=3), logits(8, 30, seed=4), 1.0)
    fwd, rev = V.forward_kl(log_t, log_s), V.reverse_kl(log_t, log_s)
    assert not torch.allclose(fwd, rev, rtol=0.05)  # the two ends differ, so the checks below can fail
    torch.testing.assert_close(V.generalized_jsd(log_t, log_s, 0.0), fwd)
    torch.testing.assert_close(V.generalized_jsd(log_t, log_s, 1.0), rev)
    s, t = logits(8, 30, seed=3), logits(8, 30, seed=4)
    torch.testing.assert_close(V.generalized_jsd(log_t, log_s, 0.5), 4 * js_per_sample(s, t, 1.0))
    # continuous at both ends (the gap shrinks as O(beta) times how far the two distributions' ratio
    # strays from 1: gentler logits here)
    log_t, log_s = V.log_probs(logits(8, 30, seed=3, scale=0.5), logits(8, 30, seed=4, scale=0.5), 1.0)
    for end, kl, near in ((0.0, V.forward_kl, (0.1, 0.01)), (1.0, V.reverse_kl, (0.9, 0.99))):
        ref = kl(log_t, log_s)
        gaps = [(V.generalized_jsd(log_t, log_s, b) - ref).abs().max().item() for b in near]
        assert gaps[1] < gaps[0] / 5 and gaps[1] < 0.02 * ref.max().item(), (end, gaps)


@pytest.mark.parametrize("name", ["kd", "reverse_kl", "js", "gjsd", "tv"])
def test_a_term_over_tokens_is_the_mean_over_response_tokens(name):
    """(batch, length, vocabulary) logits and a mask of response tokens: the term is the mean of the
    per-token divergence over the masked tokens of the whole batch, computed here directly."""
    s, t = logits(3, 7, 40, seed=5), logits(3, 7, 40, seed=6)
    mask = torch.zeros(3, 7, dtype=torch.bool)
    mask[0, 2:6], mask[1, 1:], mask[2, 5:] = True, True, True  # responses of 4, 6 and 2 tokens
    term = build_term(name)
    value = term(Outputs(logits=s), Outputs(logits=t), {"temperature": 1.5, "position_mask": mask})
    p_s, p_t = softmax(s.double().numpy() / 1.5, -1), softmax(t.double().numpy() / 1.5, -1)
    m = 0.5 * (p_s + p_t)
    per = {"kd": 1.5 ** 2 * rel_entr(p_t, p_s).sum(-1), "reverse_kl": 1.5 ** 2 * rel_entr(p_s, p_t).sum(-1),
           "js": 1.5 ** 2 * 0.5 * (rel_entr(p_t, m) + rel_entr(p_s, m)).sum(-1),
           "gjsd": 1.5 ** 2 * 2 * (rel_entr(p_t, m) + rel_entr(p_s, m)).sum(-1),  # beta 0.5: 4 * JS
           "tv": 1.5 * 0.5 * np.abs(p_t - p_s).sum(-1)}[name]
    assert value.item() == pytest.approx(per[mask.numpy()].mean(), rel=1e-4)
    # not the mean of per-row means (which would weigh the 2-token response like the 6-token one)
    rows = [per[i][mask[i].numpy()].mean() for i in range(3)]
    assert abs(value.item() - np.mean(rows)) > 1e-3


@pytest.mark.parametrize("sparse", [False, True])
def test_confidence_weighted_term_over_tokens_and_its_gradient_read_only_the_masked_tokens(sparse):
    """Dynamic KD per token: the confidence-weighted mean over the masked tokens, equal to the dense
    reference computed here over the whole tensor; positions outside the mask get no gradient."""
    s, t = logits(3, 7, 40, seed=5).requires_grad_(True), logits(3, 7, 40, seed=6)
    mask = torch.zeros(3, 7, dtype=torch.bool)
    mask[0, 2:6], mask[1, 1:], mask[2, 5:] = True, True, True
    labels = torch.randint(0, 40, (3, 7)).masked_fill(~mask, -100)
    teacher = V.top_k(t, 40, 1.0) if sparse else t  # every class kept: exact, through the sparse path
    value = build_term("kd", weighting="confidence")(Outputs(logits=s), Outputs(logits=teacher),
                                                             {"temperature": 1.0, "position_mask": mask, "labels": labels})
    p_t = torch.softmax(t.double(), -1)
    per = (p_t * (p_t.log() - torch.log_softmax(s.double(), -1))).sum(-1)
    w = p_t.gather(-1, labels.clamp(min=0)[..., None])[..., 0]
    want = (per * w)[mask].sum() / w[mask].sum()
    assert value.item() == pytest.approx(want.item(), rel=1e-4)
    value.backward()
    assert s.grad[~mask].abs().max() == 0 and s.grad[mask].abs().max() > 0


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_chunks_give_the_whole_value_and_gradient(dtype):
    t = logits(4, 9, 300, seed=8)
    grads, values = [], []
    for chunk in (10 ** 9, 300 * 5):  # one chunk; 5 positions a chunk (8 chunks, the last one short)
        s = logits(4, 9, 300, seed=7).to(dtype).requires_grad_(True)
        v = V.per_position(kd_per_sample, s, t, 2.0, chunk_elements=chunk)
        (v * torch.arange(36.0).view(4, 9)).sum().backward()  # a different weight per position
        values.append(v.detach())
        grads.append(s.grad.float())
    torch.testing.assert_close(values[1], values[0], rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(grads[1], grads[0], rtol=1e-5, atol=1e-6)


def test_chunks_at_a_masks_positions_give_the_whole_value_and_gradient():
    """The positions of a mask (a language model's response tokens), a few a chunk, each chunk's
    gradient written into the logits' gradient: equal to computing them all at once."""
    t = logits(4, 9, 300, seed=8)
    at = torch.tensor([0, 3, 4, 5, 9, 10, 17, 20, 21, 22, 30, 35])
    w = torch.arange(1.0, len(at) + 1)  # a different weight per position
    s = logits(4, 9, 300, seed=7).requires_grad_(True)
    want = kd_per_sample(s.reshape(36, 300)[at], t.reshape(36, 300)[at], 2.0)
    (want * w).sum().backward()
    g_want, s.grad = s.grad.clone(), None
    got = V.per_position(kd_per_sample, s, t, 2.0, chunk_elements=300 * 5, at=at)
    (got * w).sum().backward()
    torch.testing.assert_close(got.detach(), want.detach(), rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(s.grad, g_want, rtol=1e-5, atol=1e-6)
    assert s.grad.reshape(36, 300)[[i for i in range(36) if i not in at.tolist()]].abs().max() == 0


def saved_bytes(fn) -> int:
    """Bytes of the tensors autograd still keeps for the backward pass when ``fn`` has returned (a
    chunk's own graph, built and freed while its gradient is taken, is not kept)."""
    import gc
    import weakref

    seen = []

    def pack(x):
        seen.append((x.untyped_storage().nbytes(), weakref.ref(x)))
        return x

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda x: x):
        out = fn()
    gc.collect()
    alive = {}
    for nbytes, ref in seen:
        if (x := ref()) is not None:
            alive[x.untyped_storage().data_ptr()] = nbytes
    del out
    return sum(alive.values())


def test_chunks_keep_no_fp32_vocabulary_tensor_for_the_backward_pass():
    positions, vocab = 256, 4096
    s = logits(positions, vocab, seed=9).to(torch.bfloat16).requires_grad_(True)
    t = logits(positions, vocab, seed=10).to(torch.bfloat16)
    whole = saved_bytes(lambda: kd_per_sample(s, t, 2.0).mean())
    chunked = saved_bytes(lambda: V.per_position(kd_per_sample, s, t, 2.0, chunk_elements=vocab * 16).mean())
    fp32, inputs = positions * vocab * 4, 2 * positions * vocab * 2  # the bf16 student and teacher logits
    assert whole >= 2 * fp32  # log-softmaxes and probabilities of the whole batch, in fp32
    assert chunked <= inputs + fp32 / 16, (chunked, inputs)  # the inputs (views), and no fp32 copy


def test_top_k_with_every_class_is_the_dense_teacher():
    s, t = logits(5, 12, seed=11), logits(5, 12, seed=12)
    for temperature in (1.0, 3.0):
        torch.testing.assert_close(kd_per_sample(s, V.top_k(t, 12, temperature), temperature),
                                   kd_per_sample(s, t, temperature))


@pytest.mark.parametrize("temperature", [1.0, 2.5])
def test_top_k_buckets_are_exact_and_bound_the_dense_kl_from_below(temperature):
    s, t = logits(6, 80, seed=13), logits(6, 80, seed=14)
    sparse = V.top_k(t, 8, temperature)
    p_t = softmax(t.double().numpy() / temperature, -1)
    p_s = softmax(s.double().numpy() / temperature, -1)
    ids = sparse.ids.numpy()
    top_t, top_s = np.take_along_axis(p_t, ids, -1), np.take_along_axis(p_s, ids, -1)
    np.testing.assert_allclose(sparse.log_probs().exp().numpy()[:, :8], top_t, rtol=1e-4)  # the tail is exact
    bucket_t = np.concatenate([top_t, 1 - top_t.sum(-1, keepdims=True)], -1)
    bucket_s = np.concatenate([top_s, 1 - top_s.sum(-1, keepdims=True)], -1)
    got = kd_per_sample(s, sparse, temperature)
    np.testing.assert_allclose(got, temperature ** 2 * rel_entr(bucket_t, bucket_s).sum(-1), rtol=1e-4)
    assert (got <= kd_per_sample(s, t, temperature) + 1e-6).all()
    with pytest.raises(ValueError, match="read at temperature"):
        kd_per_sample(s, sparse, temperature + 1)


def test_top_k_student_rest_stays_finite_for_a_confident_student():
    """A student with all its mass on the teacher's top-k: its rest bucket comes from its other logits
    directly, so value and gradient stay finite (1 - sum(top) would be 0 in fp32)."""
    t = logits(2, 50, seed=15)
    sparse = V.top_k(t, 4)
    s = torch.full((2, 50), -60.0)
    s.scatter_(-1, sparse.ids, 60.0)
    s.requires_grad_(True)
    value = kd_per_sample(s, sparse, 1.0).sum()
    value.backward()
    assert torch.isfinite(value) and torch.isfinite(s.grad).all()


def test_confidence_weights_of_a_top_k_teacher():
    t = logits(4, 20, seed=16)
    labels = torch.tensor([0, 1, -100, 2])
    dense = teacher_confidence(t, labels)
    sparse = V.top_k(t, 20)
    torch.testing.assert_close(teacher_confidence(sparse, labels), dense)
    few = V.top_k(t, 2)
    kept = (few.ids == labels.clamp(min=0)[:, None]).any(-1) | (labels == -100)
    got = teacher_confidence(few, labels)
    torch.testing.assert_close(got[kept], dense[kept])
    assert (got[~kept] == 0).all()  # a label outside the teacher's top-k: the teacher is wrong there


def test_bad_options_and_a_raw_logit_term_on_a_sparse_teacher_get_one_line():
    with pytest.raises(DistilTuneError, match="beta 1.5 is outside") as err:
        build_term("gjsd", beta=1.5)
    assert "\n" not in str(err.value) and "-> fix:" in str(err.value)
    s = logits(2, 3, 30, seed=17)
    with pytest.raises(DistilTuneError, match="compares raw logits"):
        build_term("logit_mse")(Outputs(logits=s), Outputs(logits=V.top_k(logits(2, 3, 30, seed=18), 4)), {})
    term = build_term("kd")
    value = term(Outputs(logits=s), Outputs(logits=V.top_k(logits(2, 3, 30, seed=18), 4)), {"temperature": 1.0})
    assert torch.isfinite(value) and value > 0


def test_token_cross_entropy_is_the_mean_over_labelled_tokens_and_keeps_no_fp32_copy():
    from distiltune.models.task_loss import hard_label_loss

    vocab = 32768  # 4 x 80 x 32768 = 10.5M logits: past one chunk (CHUNK_ELEMENTS), as a real vocabulary is
    s = logits(4, 80, vocab, seed=19).to(torch.bfloat16).requires_grad_(True)
    labels = torch.randint(0, vocab, (4, 80), generator=torch.Generator().manual_seed(20))
    labels[:, :20] = -100  # the prompt: no loss there
    labels[3, 40:] = -100  # padding
    ref = F.cross_entropy(s.float().reshape(-1, vocab), labels.reshape(-1), ignore_index=-100)
    got = hard_label_loss(s, labels)
    assert got.item() == pytest.approx(ref.item(), rel=1e-5)
    g_ref, = torch.autograd.grad(ref, s)
    g_got, = torch.autograd.grad(hard_label_loss(s, labels), s)
    torch.testing.assert_close(g_got.float(), g_ref.float(), rtol=1e-2, atol=1e-6)
    kept = saved_bytes(lambda: hard_label_loss(s, labels))
    assert kept <= s.numel() * 2 + labels.numel() * 8 + s.numel() * 4 // 16, kept  # the bf16 logits, no fp32 copy


@pytest.mark.parametrize("t, k, draws, dtype", [(1.0, 8, 0, torch.float32), (2.0, 8, 0, torch.float32),
                                                (1.0, 8, 6, torch.float32), (1.0, 300, 0, torch.float32),
                                                (1.0, 8, 6, torch.bfloat16), (3.0, 300, 0, torch.float32)])
def test_sparse_kd_in_closed_form_is_autograds_value_and_gradient(t, k, draws, dtype):
    """kd on a top-k teacher (with or without tail draws) against the same formula through autograd."""
    from distiltune.data import cache_forms as CF
    from distiltune.models.lm import token_topk

    teacher = logits(40, 300, seed=21) * 2
    form = {c: x.numpy() for c, x in token_topk(teacher, k, draws, seed=3).items()}
    sparse = CF.sparse_teacher(CF.collate([form]), torch.ones(1, 40, dtype=torch.bool), 300, t)
    s = (logits(1, 40, 300, seed=22) * 2).to(dtype).requires_grad_(True)
    w = torch.arange(1.0, 41.0).view(1, 40)
    got = kd_per_sample(s, sparse, t)
    (got * w).sum().backward()
    g_got, s.grad = s.grad.clone(), None
    log_t, log_s = V.log_probs(s, sparse, t)
    want = V.forward_kl(log_t, log_s) * t * t
    if sparse.sampled:
        want = V.sampled_forward_kl(s, sparse, t) * t * t
    (want * w).sum().backward()
    tol = 1e-5 if dtype == torch.float32 else 1e-2
    torch.testing.assert_close(got.detach(), want.detach(), rtol=tol, atol=tol)
    torch.testing.assert_close(g_got.float(), s.grad.float(), rtol=tol, atol=tol * 0.1)
