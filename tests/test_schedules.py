import math

import pytest

from distiltune.schedules import Schedule, constant, cosine, linear, per_epoch


def test_pure_curves():
    assert constant(3.0, 1.0, 0.7) == 3.0
    assert linear(4.0, 1.0, 0.0) == 4.0 and linear(4.0, 1.0, 1.0) == 1.0 and linear(4.0, 1.0, 0.5) == 2.5
    assert linear(4.0, 1.0, 2.0) == 1.0  # clipped past the end
    assert cosine(4.0, 1.0, 0.0) == 4.0 and cosine(4.0, 1.0, 1.0) == pytest.approx(1.0)
    assert cosine(4.0, 1.0, 0.5) == pytest.approx(2.5)
    assert cosine(4.0, 1.0, 0.25) == pytest.approx(1.0 + 3.0 * 0.5 * (1 + math.cos(math.pi / 4)))
    assert per_epoch([0.9, 0.5, 0.1], 0.0) == 0.9 and per_epoch([0.9, 0.5, 0.1], 1.99) == 0.5
    assert per_epoch([0.9, 0.5, 0.1], 7) == 0.1


def test_schedule_by_step_and_by_epoch():
    s = Schedule("linear", 0.9, 0.2, unit="step")
    assert s(0, 100, 0.0, 2) == pytest.approx(0.9)
    assert s(50, 100, 1.0, 2) == pytest.approx(0.55)
    assert s(100, 100, 2.0, 2) == pytest.approx(0.2)
    e = Schedule("linear", 4.0, 1.0, unit="epoch")
    # 3 epochs: 4 during epoch 0, 2.5 during epoch 1, 1 during epoch 2, whatever the step.
    assert [e(step, 300, ep, 3) for step, ep in ((10, 0.3), (150, 1.5), (290, 2.9))] == [4.0, 2.5, 1.0]
    lst = Schedule("list", values=(0.9, 0.5, 0.1))
    assert [lst(0, 9, ep, 3) for ep in (0.1, 1.2, 2.5)] == [0.9, 0.5, 0.1]
    assert Schedule("constant", 2.0)(5, 10, 0.5, 1) == 2.0
    assert lst.extremes() == (0.1, 0.9)


def test_schedule_rejects_bad_specs():
    with pytest.raises(ValueError, match="unknown schedule kind"):
        Schedule("exponential", 1.0)
    with pytest.raises(ValueError, match="unknown schedule unit"):
        Schedule("linear", 1.0, 0.0, unit="batch")
    with pytest.raises(ValueError, match="at least one value"):
        Schedule("list")


def test_distill_finetune_defaults_follow_best_practice():
    """Distillation-heavy early, task-heavy late; temperature annealed high -> low."""
    from distiltune.config.schema import DistillConfig

    cfg = DistillConfig(strategy="distill_finetune", output_dir="/tmp/unused", report_to="none")
    w, T = cfg.distill_weight_sched, cfg.temperature_sched
    assert w(0, 100, 0, 3) > 0.5 > w(100, 100, 3, 3)
    assert T(0, 100, 0, 3) > T(100, 100, 3, 3) >= 1.0
    plain = DistillConfig(strategy="distill", output_dir="/tmp/unused", report_to="none")
    assert plain.distill_weight_sched.kind == "constant" and plain.distill_weight == 0.5


def test_schedules_read_in_words():
    assert str(Schedule("linear", 4.0, 1.0)) == "linear 4.0 → 1.0 by step"
    assert str(Schedule("cosine", 0.9, 0.5, unit="epoch")) == "cosine 0.9 → 0.5 by epoch"
    assert str(Schedule("constant", 0.5)) == "constant 0.5"
    assert str(Schedule("linear", 2.0, 2.0)) == "constant 2.0"  # a line that goes nowhere
    assert str(Schedule("list", values=(3, 2))) == "per epoch 3.0, 2.0"


def test_log_axis_ticks_are_plain_numbers():
    from distiltune.report.plots import nice_ticks

    assert nice_ticks(4.5, 67.5) == [5.0, 10.0, 20.0, 30.0, 50.0]  # the demo's latencies, in ms
    assert nice_ticks(23.0, 438.0) == [20.0, 30.0, 50.0, 100.0, 200.0, 300.0, 500.0]
    assert len(nice_ticks(0.01, 5000.0)) <= 8
    assert nice_ticks(0.0, 10.0) == []
