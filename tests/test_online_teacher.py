"""online_teacher_lr: a teacher that keeps learning the labels while it teaches (dynamic KD). Its own
loss reaches it only through labelled rows, never through the student's KD terms; the report keeps
the teacher from before distillation; a kill and --resume continue with the teacher the stage had."""
import json
import subprocess
import sys

import pytest

from conftest import FIXED
from distiltune.cli import main


def trainer_on(tmp_path, teacher_dir, student_dir, task_files, labels_kept: bool):
    from datasets import Dataset
    import pandas as pd

    from distiltune import DistillationTrainer, DistillConfig, Schedule, distill_objective
    from distiltune.data.collate import DistillCollator, tokenize
    from distiltune.models.hf import load_classifier, load_tokenizer

    teacher, _ = load_classifier(teacher_dir, ["neg", "pos"], "teacher")
    student, _ = load_classifier(student_dir, ["neg", "pos"], "student")
    t_tok, s_tok = load_tokenizer(teacher_dir), load_tokenizer(student_dir)
    df = pd.read_csv(task_files["train"]).head(16)
    labels = [int(l == "pos") for l in df.label] if labels_kept else [-100] * len(df)
    ds = Dataset.from_dict({"sentence": list(df.sentence), "labels": labels})
    ds = tokenize(tokenize(ds, s_tok, ("sentence",), 32), t_tok, ("sentence",), 32, prefix="teacher_")
    args = DistillConfig(output_dir=str(tmp_path), max_steps=1, per_device_train_batch_size=16, report_to="none",
                         remove_unused_columns=False, strategy="distill", save_strategy="no", mixed_precision="no")
    trainer = DistillationTrainer(model=student, args=args, train_dataset=ds, data_collator=DistillCollator(s_tok, t_tok),
                                  teacher=teacher, objective=distill_objective(Schedule("constant", 0.5)),
                                  temperature=Schedule("constant", 2.0), online_teacher_lr=1e-3)
    batch = trainer._prepare_inputs(trainer.data_collator([ds[i] for i in range(len(ds))]))
    return trainer, teacher, student, batch


@pytest.mark.parametrize("labels_kept", [False, True], ids=["unlabeled", "labelled"])
def test_the_teacher_learns_from_labels_only(tmp_path, trained_teacher, base_models, task_files, labels_kept):
    trainer, teacher, student, batch = trainer_on(tmp_path, trained_teacher, base_models["student"], task_files, labels_kept)
    student.train()
    loss = trainer.compute_loss(student, batch)
    loss.backward()
    t_grad = sum(float(p.grad.abs().sum()) for p in teacher.parameters() if p.grad is not None)
    s_grad = sum(float(p.grad.abs().sum()) for p in student.parameters() if p.grad is not None)
    assert s_grad > 0  # the student learns from the teacher either way
    if labels_kept:
        assert t_grad > 0  # its own cross-entropy on the labelled rows
    else:
        assert t_grad == 0  # the KD terms read the teacher detached: the student never pulls it


def test_the_teacher_gets_its_own_optimizer_group(tmp_path, trained_teacher, base_models, task_files):
    trainer, teacher, _, _ = trainer_on(tmp_path, trained_teacher, base_models["student"], task_files, True)
    opt = trainer.create_optimizer()
    group = next(g for g in opt.param_groups if any(p is next(teacher.parameters()) for p in g["params"]))
    assert group["lr"] == 1e-3 and teacher.training and all(p.requires_grad for p in teacher.parameters())


def online_args(task_files, out, teacher, student, *extra):
    return ["--train_file", task_files["train"], "--validation_file", task_files["validation"],
            "--test_file", task_files["test"], "--text_column", "sentence", "--teacher", teacher, "--student", student,
            "--output_dir", str(out), "--report_to", "none", "--latency_samples", "3", "--seed", "0",
            "--mixed_precision", "no", "--disable_tqdm", "true", "--strategy", "distill", "--num_labeled", "96",
            "--max_unlabeled", "32", "--num_train_epochs", "2", "--learning_rate", "3e-3",
            "--per_device_train_batch_size", "16", "--logging_steps", "1", "--baseline", "false", *FIXED, *extra]


def test_online_run_reports_the_teacher_it_was_given_and_logs_the_teachers_loss(tmp_path, task_files, base_models,
                                                                               trained_teacher):
    fixed, online = tmp_path / "fixed", tmp_path / "online"
    assert main(["run", *online_args(task_files, fixed, trained_teacher, base_models["student"])]) == 0
    assert main(["run", *online_args(task_files, online, trained_teacher, base_models["student"],
                                     "--online_teacher_lr", "1e-3")]) == 0
    a, b = (json.loads((d / "report.json").read_text())["models"] for d in (fixed, online))
    assert a["teacher"]["metrics"] == b["teacher"]["metrics"]  # the report's teacher is the one before distillation
    log = json.loads((online / "logs" / "distill.json").read_text())
    teacher_ce = [e["loss_teacher_ce"] for e in log if "loss_teacher_ce" in e]
    assert len(teacher_ce) == 16 and all(v >= 0 for v in teacher_ce)
    assert not any("loss_teacher_ce" in e for e in json.loads((fixed / "logs" / "distill.json").read_text()))
    assert "the teacher kept fine-tuning on the labelled rows at 0.001" in (online / "student" / "README.md").read_text()


def test_resume_continues_with_the_teacher_the_stage_had(tmp_path, task_files, base_models, trained_teacher):
    from test_kill_resume import env
    from test_plateau import kill_after_checkpoint, run_outcome

    def argv(out):
        return [sys.executable, "-m", "distiltune.cli", "run",
                *online_args(task_files, out, trained_teacher, base_models["student"], "--online_teacher_lr", "1e-3",
                             "--save_strategy", "steps", "--save_steps", "4", "--baseline", "true")]

    whole, run = tmp_path / "whole", tmp_path / "killed"
    subprocess.run(argv(whole), env=env(), check=True, capture_output=True, timeout=600)
    kill_after_checkpoint(argv(run), run / "checkpoints" / "distill" / "checkpoint-8", env())
    assert (run / "checkpoints" / "distill" / "checkpoint-8" / "online_teacher.safetensors").is_file()
    done = subprocess.run(argv(run) + ["--resume"], env=env(), capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "distill: resuming from checkpoints/distill/checkpoint-8" in done.stdout
    assert run_outcome(run) == run_outcome(whole)


@pytest.mark.parametrize("extra,message", [
    (["--online_teacher_lr", "0"], "online_teacher_lr=0.0 must be > 0"),
    (["--online_teacher_lr", "1e-4", "--strategy", "finetune"], "online_teacher_lr is set but strategy 'finetune'"),
], ids=["not-positive", "finetune"])
def test_online_teacher_settings_are_checked_before_anything_is_written(tmp_path, task_files, base_models, capsys,
                                                                        extra, message):
    out = tmp_path / "run"
    assert main(["run", *online_args(task_files, out, base_models["teacher"], base_models["student"], *extra)]) == 2
    err = capsys.readouterr().err
    assert message in err and "-> fix:" in err and not out.exists()
