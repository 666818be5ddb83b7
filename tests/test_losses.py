
import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from distiltune.constants import IGNORE_INDEX
from distiltune.losses import LOSSES, kd_loss, register_loss
from distiltune.models.task_loss import hard_label_loss
from distiltune.registry import Registry


def reference_kd(s, t, T):
    """T^2 * mean over rows of sum_c p_t log(p_t / p_s), written out with numpy."""
    s, t = np.asarray(s, dtype=np.float64) / T, np.asarray(t, dtype=np.float64) / T
    ps = np.exp(s - s.max(1, keepdims=True)); ps /= ps.sum(1, keepdims=True)
    pt = np.exp(t - t.max(1, keepdims=True)); pt /= pt.sum(1, keepdims=True)
    return T * T * float(np.mean(np.sum(pt * (np.log(pt) - np.log(ps)), axis=1)))


logit_rows = st.lists(st.lists(st.floats(-20, 20), min_size=3, max_size=3), min_size=1, max_size=6)


@settings(max_examples=60, deadline=None)
@given(s=logit_rows, T=st.floats(0.5, 10))
def test_kd_zero_for_identical_logits(s, T):
    x = torch.tensor(s)
    assert kd_loss(x, x.clone(), T).item() == pytest.approx(0.0, abs=1e-5)


@settings(max_examples=60, deadline=None)
@given(data=st.data(), T=st.floats(0.5, 10))
def test_kd_matches_reference_and_is_nonnegative(data, T):
    n = data.draw(st.integers(1, 6))
    row = st.lists(st.floats(-15, 15), min_size=4, max_size=4)
    s = data.draw(st.lists(row, min_size=n, max_size=n))
    t = data.draw(st.lists(row, min_size=n, max_size=n))
    got = kd_loss(torch.tensor(s), torch.tensor(t), T).item()
    assert got >= -1e-5
    assert got == pytest.approx(reference_kd(s, t, T), rel=1e-3, abs=1e-4)


def _grad_norm(T, scale_t2=True):
    torch.manual_seed(0)
    s = (torch.randn(64, 5) * 2).requires_grad_()
    t = torch.randn(64, 5) * 2
    loss = kd_loss(s, t, T) if scale_t2 else kd_loss(s, t, T) / (T * T)
    loss.backward()
    return s.grad.norm().item()


def test_t_squared_keeps_gradient_scale_comparable():
    with_t2 = [_grad_norm(T) for T in (2, 4, 8, 16)]
    without = [_grad_norm(T, scale_t2=False) for T in (2, 4, 8, 16)]
    # With T^2 the gradient tends to a T-independent limit (s - t)/N; without it, it shrinks ~1/T^2.
    assert max(with_t2) / min(with_t2) < 1.6
    assert without[0] / without[-1] > 30


def test_hard_label_loss_skips_unlabeled_rows():
    logits = torch.tensor([[2.0, 0.0], [0.0, 3.0], [5.0, -5.0]])
    labels = torch.tensor([0, IGNORE_INDEX, 1])
    expected = torch.nn.functional.cross_entropy(logits[[0, 2]], labels[[0, 2]])
    assert hard_label_loss(logits, labels).item() == pytest.approx(expected.item())
    x = logits.clone().requires_grad_()
    zero = hard_label_loss(x, torch.full((3,), IGNORE_INDEX))
    assert zero.item() == 0.0
    zero.backward()  # still part of the graph
    assert torch.all(x.grad == 0)


def test_regression_losses_use_mse_and_nan_means_unlabeled():
    s = torch.tensor([[1.0], [2.0], [3.0]])
    labels = torch.tensor([1.5, float("nan"), 2.0])
    assert hard_label_loss(s, labels).item() == pytest.approx(((1 - 1.5) ** 2 + (3 - 2) ** 2) / 2)
    assert kd_loss(s, s + 1, 4.0).item() == pytest.approx(1.0)
    y = s.clone().requires_grad_()
    hard_label_loss(y, labels).backward()  # gradient to the labelled rows only
    assert y.grad.view(-1).tolist() == pytest.approx([2 * (1 - 1.5) / 2, 0.0, 2 * (3 - 2) / 2])
    z = s.clone().requires_grad_()
    zero = hard_label_loss(z, torch.full((3,), float("nan")))
    assert zero.item() == 0.0
    zero.backward()  # still part of the graph
    assert torch.all(z.grad == 0)


def test_registry_rejects_duplicates_and_suggests_names():
    assert {"ce", "kd"} <= set(LOSSES.names())
    with pytest.raises(ValueError, match="already registered"):
        register_loss("kd")(type("Dup", (), {}))
    with pytest.raises(KeyError, match="did you mean 'kd'"):
        LOSSES.get("kdd")
    r = Registry("thing")
    r.register("a")(int)
    assert r.get("a") is int and "a" in r
