"""The report's diagnostics on synthetic reports and log histories: each fires on what it is about,
stays quiet on a healthy run, and names its fix; `distiltune advise --run` reads them from a run's files."""
import json

import numpy as np
import pytest

from distiltune.cli import main
from distiltune.report.diagnostics import diagnose


def report(teacher=0.90, student=0.86, baseline=0.84, metric="accuracy", **extra):
    models = {n: {"metric": m} for n, m in (("teacher", teacher), ("student", student), ("baseline_student", baseline))
              if m is not None}
    return {"metric": metric, "models": models, "logit_term": "kd", "data": {}} | extra


def losses(values, key="loss", every=10):
    return [{"step": (i + 1) * every, key: float(v)} for i, v in enumerate(values)]


def flattening(n=20, start=1.0, floor=0.2):
    """A training loss that falls fast, then flattens (a stage that ran to its end)."""
    return floor + (start - floor) * np.exp(-np.arange(n) / 2.5)


def selection(evals, stopped_early=True, planned=10):
    best = int(np.argmax(evals))
    return {"metric": "accuracy", "best": max(evals), "best_step": (best + 1) * 10, "best_epoch": float(best + 1),
            "epochs_run": float(len(evals)), "epochs_planned": float(planned), "stopped_early": stopped_early,
            "evaluations": list(evals)}


def fired(rep, histories=None):
    return [d["check"] for d in diagnose(rep, histories or {})]


def healthy_histories():
    kd = losses(flattening(20, 2.0, 0.5), "loss_kd")
    return {"teacher": losses(flattening()), "distill": [a | b for a, b in zip(losses(flattening()), kd)]}


def test_a_healthy_run_fires_nothing():
    rep = report(checkpoint_selection={"teacher": selection([0.80, 0.86, 0.88, 0.87, 0.875])},
                 data={"class_counts": {"neg": 500, "pos": 480}},
                 majority_baseline={"label": "neg", "metric": 0.51})
    assert fired(rep, healthy_histories()) == []


def test_a_teacher_below_its_student_or_baseline():
    lines = diagnose(report(teacher=0.905, student=0.933, baseline=0.91), {})
    assert [d["check"] for d in lines] == ["teacher_below_students"]
    assert "the teacher (0.9050 accuracy) scores below the student (0.9330) and the baseline student (0.9100)" in lines[0]["line"]
    assert "-> fix: let it train to its plateau" in lines[0]["line"]
    assert fired(report(teacher=0.90, student=0.88, baseline=0.905)) == ["teacher_below_students"]
    assert fired(report(teacher=0.90, student=0.90, baseline=None)) == []  # a tie is not below
    assert fired(report(teacher=0.9967, student=1.0, baseline=None)) == []  # one test row in 300: noise


def test_a_loss_still_falling_steeply_at_the_end_of_a_fixed_stage():
    falling = np.linspace(1.0, 0.3, 20)  # a straight line down: no flattening
    lines = diagnose(report(), {"teacher": losses(falling)})
    assert [d["check"] for d in lines] == ["still_learning"]
    assert lines[0]["line"].startswith("the teacher's fine-tune's training loss was still falling steeply at the end")
    assert "teacher_num_train_epochs" in lines[0]["line"]
    assert fired(report(), {"teacher": losses(flattening())}) == []
    assert fired(report(), {"teacher": losses(falling[:6])}) == []  # too few points to judge
    # near zero after a long fall, halving again is no sign of an unfinished stage
    tail = np.concatenate([np.linspace(0.7, 0.002, 12), np.linspace(0.0014, 0.0007, 8)])
    assert fired(report(), {"teacher": losses(tail)}) == []


def test_a_plateau_stage_that_hit_its_ceiling_while_improving():
    rep = report(checkpoint_selection={"distill": selection([0.7, 0.75, 0.78, 0.80], stopped_early=False, planned=4)})
    lines = diagnose(rep, {"distill": losses(np.linspace(1, 0.3, 20))})
    assert [d["check"] for d in lines] == ["still_learning"]
    assert "ceiling of 4 epochs" in lines[0]["line"] and "raise distill_max_epochs" in lines[0]["line"]
    # stopped on its plateau: whatever the training loss did, the validation metric had flattened
    rep = report(checkpoint_selection={"distill": selection([0.7, 0.80, 0.79, 0.795])})
    assert fired(rep, {"distill": losses(np.linspace(1, 0.3, 20))}) == []


def test_a_validation_metric_that_peaked_early():
    rep = report(checkpoint_selection={"teacher": selection([0.85, 0.88, 0.86, 0.85, 0.84, 0.83])})
    lines = diagnose(rep, {})
    assert [d["check"] for d in lines] == ["peaked_early"]
    assert "peaked at evaluation 2 of 6 (0.8800) and fell to 0.8300: over-fitting" in lines[0]["line"]
    # a late best, or a small dip after an early best, is no over-fitting
    assert fired(report(checkpoint_selection={"teacher": selection([0.8, 0.85, 0.86, 0.88, 0.87])})) == []
    assert fired(report(checkpoint_selection={"teacher": selection([0.85, 0.88, 0.875, 0.877, 0.876, 0.875])})) == []


def test_a_kd_term_that_did_not_fall():
    flat = losses(np.full(20, 0.5) + np.random.default_rng(0).normal(0, 0.01, 20), "loss_kd")
    lines = diagnose(report(), {"distill": flat})
    assert [d["check"] for d in lines] == ["kd_did_not_fall"]
    assert "the distillation's kd term did not fall" in lines[0]["line"]
    assert fired(report(), {"distill": losses(np.linspace(0.5, 0.3, 20), "loss_kd")}) == []
    # the term of the run's own logit loss is read
    mse = losses(np.full(20, 0.5), "loss_mse")
    assert fired(report(logit_term="mse"), {"distill": mse}) == ["kd_did_not_fall"]
    assert fired(report(), {"distill": mse}) == []


def test_a_teacher_barely_above_the_majority_class():
    rep = report(teacher=0.64, student=0.63, baseline=0.62, majority_baseline={"label": "pos", "metric": 0.63})
    lines = diagnose(rep, {})
    assert [d["check"] for d in lines] == ["teacher_near_majority"]
    assert "0.6400 is barely above the 0.6300 of always predicting the most frequent class ('pos')" in lines[0]["line"]
    assert fired(report(teacher=0.70, student=0.68, baseline=0.66, majority_baseline={"label": "pos", "metric": 0.63})) == []


def test_class_imbalance_under_accuracy():
    counts = {"a": 900, "b": 80, "c": 20}
    lines = diagnose(report(data={"class_counts": counts}), {})
    assert [d["check"] for d in lines] == ["class_imbalance"]
    assert "'a' 900 labelled rows, 'c' 20: 45x" in lines[0]["line"] and "metric: f1" in lines[0]["line"]
    assert fired(report(metric="f1", data={"class_counts": counts})) == []  # macro-F1 already
    assert fired(report(data={"class_counts": {"a": 400, "b": 100}})) == []  # 4x: below the threshold


def test_advise_reads_the_diagnostics_of_a_finished_run(tmp_path, capsys):
    run = tmp_path / "run"
    (run / "logs").mkdir(parents=True)
    (run / "report.json").write_text(json.dumps(report(teacher=0.905, student=0.933)))
    (run / "logs" / "teacher.json").write_text(json.dumps(losses(np.linspace(1.0, 0.3, 20))))
    assert main(["advise", "--run", str(run)]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"{run}: 2 diagnostic(s)") and "scores below the student" in out and "still falling" in out
    assert main(["advise", "--run", str(run), "--json"]) == 0
    assert [d["check"] for d in json.loads(capsys.readouterr().out)] == ["teacher_below_students", "still_learning"]


@pytest.mark.parametrize("make,message", [
    (lambda d: None, "no report.json there"),
    (lambda d: (d.mkdir(), (d / "report.json").write_text("{half")), "report.json cannot be read"),
])
def test_advise_run_refuses_a_folder_without_a_readable_report(tmp_path, capsys, make, message):
    run = tmp_path / "run"
    make(run)
    assert main(["advise", "--run", str(run)]) == 2
    err = capsys.readouterr().err
    assert message in err and "-> fix:" in err and "Traceback" not in err


def test_advise_run_refuses_shape_options_it_would_ignore(tmp_path, capsys):
    run = tmp_path / "run"
    (run / "logs").mkdir(parents=True)
    (run / "report.json").write_text(json.dumps(report()))
    assert main(["advise", "--run", str(run), "--teacher", "demo:all-mpnet-base-v2", "--latency-ms", "5"]) == 2
    err = capsys.readouterr().err
    assert "--teacher, --latency-ms only apply to measuring student shapes" in err and "-> fix:" in err


def test_a_short_stage_logs_often_enough_for_its_curve_to_be_read():
    """The demo's LM distillation is 48 steps: every 10 steps would give 4 losses, below the 8 the
    still-falling diagnostic reads; short stages log at least 20 times, long ones as asked."""
    from distiltune.pipeline.train import logging_every, planned_steps

    assert planned_steps(384, 8, 1, 1.0) == 48 and planned_steps(385, 8, 1, 1.0) == 49
    assert planned_steps(100, 8, 4, 2.0) == 6 and planned_steps(3, 8, 1, 0.5) == 1
    assert logging_every(10, 48) == 2 and logging_every(10, 10) == 1
    assert logging_every(10, 5000) == 10 and logging_every(0.05, 48) == 0.05
