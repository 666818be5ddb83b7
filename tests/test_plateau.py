"""Stages that stop on a validation plateau (teacher_stop / distill_stop: plateau, the defaults): the
rule itself, the schedules' span, the refusals, and runs on the tiny task that stop early, keep their
best checkpoint and resume to the same result as an uninterrupted run."""
import json
import subprocess
import time
from types import SimpleNamespace

import numpy as np
import pytest

from distiltune.cli import main
from distiltune.schedules import Schedule, spanned


def evaluate_in_turn(callback, values, greater=True):
    """Feed ``values`` as one evaluation per epoch, the way the Trainer does (on_evaluate sees the best
    of the earlier evaluations); returns the epoch after which training stops, or None."""
    from transformers import TrainerControl, TrainerState

    args = SimpleNamespace(metric_for_best_model="accuracy", greater_is_better=greater)
    state, control = TrainerState(), TrainerControl()
    for epoch, value in enumerate(values, 1):
        state.epoch = float(epoch)
        callback.on_evaluate(args, state, control, {"eval_accuracy": value})
        if state.best_metric is None or (value > state.best_metric if greater else value < state.best_metric):
            state.best_metric = value
        if control.should_training_stop:
            return epoch
    return None


def test_plateau_rule_counts_patience_and_waits_for_the_floor():
    from distiltune.training.callbacks import PlateauStop

    curve = [0.50, 0.60, 0.60, 0.55, 0.70, 0.60, 0.60]
    assert evaluate_in_turn(PlateauStop(2), curve) == 4          # epochs 3 and 4 set no new best (a tie is none)
    assert evaluate_in_turn(PlateauStop(1), curve) == 3
    assert evaluate_in_turn(PlateauStop(2, min_epochs=5), curve) == 7  # no stop before epoch 5; 0.70 resets the count
    assert evaluate_in_turn(PlateauStop(3), curve) is None         # never three in a row without a new best
    assert evaluate_in_turn(PlateauStop(2), [0.9, 0.8, 0.85], greater=False) is None  # lower is better: 0.8 is a best


def test_plateau_rule_state_survives_a_checkpoint():
    """What the Trainer saves in a checkpoint rebuilds the callback with its floor and its count."""
    from distiltune.training.callbacks import PlateauStop

    cb = PlateauStop(3, min_epochs=2.5)
    cb.early_stopping_patience_counter = 2
    saved = cb.state()
    again = type(cb)(**saved["args"])
    for k, v in saved["attributes"].items():
        setattr(again, k, v)
    assert (again.early_stopping_patience, again.min_epochs, again.early_stopping_patience_counter) == (3, 2.5, 2)


def test_schedules_span_the_planned_epochs_then_hold_their_end_values():
    assert spanned(100, 10.0, None) == (100, 10.0)
    assert spanned(100, 10.0, 10.0) == (100, 10.0)
    assert spanned(100, 10.0, 4.0) == (40, 4.0)        # a ceiling of 10 epochs, schedules over the planned 4
    assert spanned(7, 3.0, 1.0) == (3, 1.0)            # rounded up: the end value is reached, never overshot
    linear = Schedule("linear", 4.0, 1.0)
    steps, epochs = spanned(100, 10.0, 4.0)
    assert [linear(s, steps, s / 10, epochs) for s in (0, 20, 40, 70, 100)] == [4.0, 2.5, 1.0, 1.0, 1.0]
    by_epoch = Schedule("linear", 4.0, 1.0, unit="epoch")
    assert [by_epoch(s, steps, s / 10, epochs) for s in (0, 15, 35, 90)] == [4.0, 3.0, 1.0, 1.0]
    listed = Schedule("list", values=(3.0, 2.0))
    assert [listed(s, steps, s / 10, epochs) for s in (5, 15, 95)] == [3.0, 2.0, 2.0]


# ---- bad input: one line, exit 2, nothing written ----

def plateau_args(task_files, out, teacher, student, *extra):
    return ["--train_file", task_files["train"], "--test_file", task_files["test"], "--text_column", "sentence",
            "--teacher", teacher, "--student", student, "--output_dir", str(out), "--report_to", "none",
            "--latency_samples", "3", "--seed", "0", "--mixed_precision", "no", "--disable_tqdm", "true", *extra]


@pytest.mark.parametrize("extra,message", [
    (["--validation_size", "0"], "teacher_stop: plateau and distill_stop: plateau validate during training, but the "
                                 "validation split is empty -> fix: give validation_file, or a validation_size > 0, or "
                                 "set teacher_stop: fixed and distill_stop: fixed"),
    (["--validation_size", "0", "--teacher_stop", "fixed"], "distill_stop: plateau validate during training"),
    (["--plateau_patience", "-1"], "plateau_patience=-1 must be >= 1"),
    (["--teacher_max_epochs", "1", "--plateau_min_epochs", "2"],
     "teacher_max_epochs=1 is below the floor plateau_min_epochs=2; raise teacher_max_epochs or lower plateau_min_epochs"),
    (["--distill_max_epochs", "2", "--num_train_epochs", "3"], "distill_max_epochs=2 is below num_train_epochs=3, the "
                                                               "length the schedules span -> fix: raise distill_max_epochs"),
], ids=["no-validation-rows", "no-validation-rows-distill-only", "patience", "ceiling-below-floor", "ceiling-below-plan"])
def test_plateau_settings_are_checked_before_anything_is_written(tmp_path, task_files, base_models, capsys,
                                                                  extra, message):
    out = tmp_path / "run"
    code = main(["run", *plateau_args(task_files, out, base_models["teacher"], base_models["student"],
                                      "--finetune_teacher", "yes", *extra)])
    err = capsys.readouterr().err
    assert code == 2 and message in err and "Traceback" not in err
    assert not out.exists()


def test_fixed_budgets_need_no_validation_rows(tmp_path, task_files, base_models):
    out = tmp_path / "run"
    code = main(["run", *plateau_args(task_files, out, base_models["teacher"], base_models["student"],
                                      "--finetune_teacher", "yes", "--validation_size", "0", "--teacher_stop", "fixed",
                                      "--distill_stop", "fixed", "--teacher_num_train_epochs", "1",
                                      "--num_train_epochs", "1", "--max_unlabeled", "40", "--num_labeled", "40")])
    assert code == 0 and "checkpoint_selection" not in json.loads((out / "report.json").read_text())


# ---- runs on the tiny task ----

def validation_score(out, model: str) -> float:
    from distiltune.config.io import build_config, read_yaml
    from distiltune.pipeline.checks import open_task

    task = open_task(build_config(read_yaml(str(out / "config.yaml")))).task
    loaded = task.load(str(out / model), model)
    val = task.encode(task.data.validation, loaded.tokenizer)
    predictions = task.predict(loaded.model, val, task.batcher(loaded.tokenizer))
    return float(np.mean(predictions.argmax(-1) == np.asarray(val["labels"])))


@pytest.fixture(scope="module")
def plateau_run(tmp_path_factory, task_files, base_models):
    """The defaults' plateau stops on every stage: the teacher fine-tuned from scratch, distillation
    planned over 1 epoch with a ceiling of 6 and a floor of 2, the baseline under the same rule."""
    out = tmp_path_factory.mktemp("plateau") / "run"
    code = main(["run", *plateau_args(task_files, out, base_models["teacher"], base_models["student"],
                                      "--validation_file", task_files["validation"], "--finetune_teacher", "yes",
                                      "--teacher_learning_rate", "2e-3", "--teacher_max_epochs", "12",
                                      "--plateau_patience", "1", "--plateau_min_epochs", "2", "--num_labeled", "200",
                                      "--max_unlabeled", "100", "--num_train_epochs", "1", "--distill_max_epochs", "6",
                                      "--final_finetune_epochs", "0", "--learning_rate", "3e-3",
                                      "--per_device_train_batch_size", "16", "--logging_steps", "1")])
    assert code == 0
    return out


def test_teacher_stops_at_its_plateau_and_keeps_the_best_epoch(plateau_run):
    report = json.loads((plateau_run / "report.json").read_text())
    sel = report["checkpoint_selection"]
    assert set(sel) == {"teacher", "distill", "baseline_student"}
    t = sel["teacher"]
    assert t["stopped_early"] and t["epochs_planned"] == 12 and t["epochs_run"] < 12
    assert t["best"] == max(t["evaluations"]) and t["evaluations"].index(t["best"]) + 1 == round(t["best_epoch"])
    # stopped one epoch (the patience) after its best, or at the floor
    assert round(t["epochs_run"]) == max(round(t["best_epoch"]) + 1, 2)
    assert validation_score(plateau_run, "teacher") == pytest.approx(t["best"])  # the kept epoch, not the last
    assert "teacher: kept the checkpoint of epoch" in (plateau_run / "report.md").read_text()


def test_distillation_runs_past_its_schedule_and_stops_on_its_own_plateau(plateau_run):
    report = json.loads((plateau_run / "report.json").read_text())
    d = report["checkpoint_selection"]["distill"]
    assert d["epochs_planned"] == 6 and round(d["epochs_run"]) >= 2  # the floor: past the 1 planned epoch
    assert round(d["epochs_run"]) == len(d["evaluations"]) and d["best"] == max(d["evaluations"])
    assert validation_score(plateau_run, "student") == pytest.approx(d["best"])
    log = json.loads((plateau_run / "logs" / "distill.json").read_text())
    temps = [(e["epoch"], e["temperature"]) for e in log if "temperature" in e]
    # T anneals 4 -> 1 over the planned epoch, then holds at 1
    assert temps[0][1] > 3.5 and all(t == 1.0 for epoch, t in temps if epoch > 1.0) and any(e > 1.0 for e, _ in temps)
    assert all(a >= b for (_, a), (_, b) in zip(temps, temps[1:]))
    b = report["checkpoint_selection"]["baseline_student"]
    assert b["epochs_planned"] == 6 and b["best"] == max(b["evaluations"])


def kill_after_checkpoint(cmd, folder, env, timeout=300.0) -> None:
    """SIGKILL ``cmd`` once ``folder`` is a complete (sealed) checkpoint."""
    from distiltune.training.checkpoints import is_complete

    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    t0 = time.monotonic()
    while proc.poll() is None and time.monotonic() - t0 < timeout:
        if folder.is_dir() and is_complete(str(folder)):
            proc.kill()
            proc.wait()
            return
        time.sleep(0.002)
    err = proc.stderr.read().decode()
    proc.kill()
    raise AssertionError(f"the run ended before {folder} was complete:\n{err[-3000:]}")


def test_resume_after_a_kill_stops_where_the_uninterrupted_run_stopped(tmp_path, task_files, base_models,
                                                                        trained_teacher):
    """Killed just after an epoch that set no new best (patience count 1 of 2), the resumed run
    restores the count from the checkpoint: same stop, same curves, same weights."""
    import sys

    from test_kill_resume import env

    def argv(out):
        return [sys.executable, "-m", "distiltune.cli", "run",
                *plateau_args(task_files, out, trained_teacher, base_models["student"]),
                "--validation_file", task_files["validation"], "--strategy", "distill", "--teacher_stop", "fixed",
                "--num_labeled", "96", "--max_unlabeled", "32", "--num_train_epochs", "1", "--distill_max_epochs", "10",
                "--plateau_patience", "2", "--plateau_min_epochs", "1", "--learning_rate", "3e-3",
                "--per_device_train_batch_size", "16", "--logging_steps", "1", "--save_total_limit", "2"]

    whole = tmp_path / "whole"
    subprocess.run(argv(whole), env=env(), check=True, capture_output=True, timeout=600)
    sel = json.loads((whole / "report.json").read_text())["checkpoint_selection"]["distill"]
    evals = sel["evaluations"]
    assert sel["stopped_early"], evals  # the setting must reach a plateau for this test to mean anything
    # the epoch before the stop set no new best either: the count stood at 1 of 2 in its checkpoint
    stop = len(evals)
    assert max(evals[:stop - 2]) >= max(evals[stop - 2:]), evals
    step = (stop - 1) * (sel["best_step"] // round(sel["best_epoch"]))
    run = tmp_path / "killed"
    kill_after_checkpoint(argv(run), run / "checkpoints" / "distill" / f"checkpoint-{step}", env())
    assert not (run / "report.json").exists()
    done = subprocess.run(argv(run) + ["--resume"], env=env(), capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert f"distill: resuming from checkpoints/distill/checkpoint-{step}" in done.stdout
    got = json.loads((run / "report.json").read_text())["checkpoint_selection"]["distill"]
    assert got == sel
    assert run_outcome(run) == run_outcome(whole)


def run_outcome(out) -> dict:
    """What must not depend on a kill: test metrics, each logged loss and validation score, the saved weights."""
    import hashlib

    from safetensors.torch import load_file

    report = json.loads((out / "report.json").read_text())
    # (the gradient-spike monitor's 50-step window is not part of a checkpoint: its counts are left out)
    kept = ("temperature", "grad_norm", "eval_accuracy", "eval_loss")
    logs = {stage: [(e["step"], {k: v for k, v in e.items() if k.startswith("loss") or k in kept}) for e in
                    json.loads((out / "logs" / f"{stage}.json").read_text()) if "loss" in e or "eval_accuracy" in e]
            for stage in ("distill", "baseline_student")}
    weights = {}
    for model in ("student", "baseline_student"):
        tensors = load_file(str(out / model / "model.safetensors"))
        weights[model] = hashlib.sha256(b"".join(tensors[k].numpy().tobytes() for k in sorted(tensors))).hexdigest()
    return {"metrics": {n: r["metrics"] for n, r in report["models"].items()}, "logs": logs, "weights": weights,
            "selection": report.get("checkpoint_selection")}
