"""End-to-end through the CLI on the tiny task: outputs, distillation gain, reuse of finished stages."""
import json
import os

import pytest
import torch

from conftest import FIXED
from distiltune.cli import main


def cli_args(task_files, out, teacher, student, *extra):
    return ["--train_file", task_files["train"], "--validation_file", task_files["validation"],
            "--test_file", task_files["test"], "--text_column", "sentence", "--teacher", teacher, "--student", student,
            "--output_dir", str(out), "--latency_samples", "5", "--seed", "0", "--mixed_precision", "no", *FIXED, *extra]


@pytest.fixture(scope="module")
def distill_run(tmp_path_factory, task_files, base_models, trained_teacher):
    """40 labelled rows, 560 unlabeled: the baseline sees 40, the student learns the rest from the teacher."""
    out = tmp_path_factory.mktemp("run")
    code = main(["run", *cli_args(task_files, out, trained_teacher, base_models["student"],
                                  "--num_labeled", "40", "--num_train_epochs", "6", "--final_finetune_epochs", "1",
                                  "--learning_rate", "3e-3", "--per_device_train_batch_size", "16")])
    assert code == 0
    return out


def test_distilled_student_beats_no_teacher_baseline(distill_run):
    report = json.loads((distill_run / "report.json").read_text())
    m = report["models"]
    assert m["teacher"]["metric"] > 0.9  # the fine-tuned teacher knows the task
    assert m["student"]["metric"] >= m["baseline_student"]["metric"] + 0.05
    assert report["gain_over_baseline"] == pytest.approx(m["student"]["metric"] - m["baseline_student"]["metric"])
    assert report["retention"] == pytest.approx(m["student"]["metric"] / m["teacher"]["metric"])
    assert report["strategy"] == "distill_finetune" and report["metric"] == "accuracy"
    for name in ("teacher", "student", "baseline_student"):
        assert set(m[name]) >= {"metric", "params", "size_mb", "latency_ms_p50", "latency_ms_p95", "throughput_sps"}
    assert m["student"]["params"] < m["teacher"]["params"]
    counts = report["data"].pop("class_counts")
    assert report["data"] == {"labelled": 40, "unlabeled": 560, "validation": 60, "test": 300}
    assert sum(counts.values()) == 40 and set(counts) == {"neg", "pos"}


def test_run_writes_standard_model_folders_and_logs(distill_run):
    from transformers import pipeline

    for name in ("student", "baseline_student"):
        d = distill_run / name
        assert (d / "model.safetensors").is_file() and (d / "README.md").is_file()
        assert (d / "distiltune_config.yaml").read_text() == (distill_run / "config.yaml").read_text()
    clf = pipeline("text-classification", model=str(distill_run / "student"), device="cpu")
    assert clf("w1 good3 w2")[0]["label"] in {"neg", "pos"}
    assert (distill_run / "config.yaml").is_file() and (distill_run / "report.md").is_file()
    assert "| student |" in (distill_run / "report.md").read_text()
    assert any(f.startswith("events.out.tfevents") for _, _, fs in os.walk(distill_run / "tensorboard") for f in fs)
    assert not (distill_run / "checkpoints" / "distill").exists()  # finished stages drop their resume checkpoints


def test_schedule_values_and_terms_are_logged(distill_run):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(distill_run / "tensorboard" / "distill"))
    acc.Reload()
    tags = set(acc.Tags()["scalars"])
    assert {"train/loss_kd", "train/loss_ce", "train/temperature", "train/weight_kd"} <= tags
    temps = [e.value for e in acc.Scalars("train/temperature")]
    weights = [e.value for e in acc.Scalars("train/weight_kd")]
    assert temps[0] > temps[-1] and weights[0] > weights[-1]  # annealed high -> low, distillation-heavy early


def test_resume_reuses_finished_stages(distill_run, task_files, base_models, trained_teacher, capsys):
    before = (distill_run / "student" / "model.safetensors").stat().st_mtime
    code = main(["run", *cli_args(task_files, distill_run, trained_teacher, base_models["student"],
                                  "--num_labeled", "40", "--num_train_epochs", "6", "--final_finetune_epochs", "1",
                                  "--learning_rate", "3e-3", "--per_device_train_batch_size", "16"), "--resume"])
    assert code == 0
    assert "reusing the student" in capsys.readouterr().out
    assert (distill_run / "student" / "model.safetensors").stat().st_mtime == before


def test_python_api_distillation_trainer(tmp_path, trained_teacher, base_models, task_files):
    """The same engine from Python: DistillationTrainer with the kd objective and a live teacher."""
    from datasets import Dataset

    from distiltune import DistillationTrainer, DistillConfig, Schedule, distill_objective
    from distiltune.data.collate import DistillCollator, tokenize
    from distiltune.models.hf import load_classifier, load_tokenizer

    import pandas as pd

    teacher, _ = load_classifier(trained_teacher, ["neg", "pos"], "teacher")
    t_tok = load_tokenizer(trained_teacher)
    student, _ = load_classifier(base_models["student"], ["neg", "pos"], "student")
    s_tok = load_tokenizer(base_models["student"])
    df = pd.read_csv(task_files["train"]).head(64)
    ds = Dataset.from_dict({"sentence": list(df.sentence), "labels": [int(l == "pos") for l in df.label]})
    ds = tokenize(tokenize(ds, s_tok, ("sentence",), 32), t_tok, ("sentence",), 32, prefix="teacher_")
    args = DistillConfig(output_dir=str(tmp_path), max_steps=4, per_device_train_batch_size=16, report_to="none",
                         remove_unused_columns=False, strategy="distill", logging_steps=1, save_strategy="no")
    trainer = DistillationTrainer(model=student, args=args, train_dataset=ds, data_collator=DistillCollator(s_tok, t_tok),
                                  teacher=teacher, objective=distill_objective(Schedule("constant", 0.7)),
                                  temperature=Schedule("linear", 4.0, 1.0))
    trainer.train()
    logs = [h for h in trainer.state.log_history if "loss_kd" in h]
    assert len(logs) == 4 and all(h["weight_kd"] == 0.7 and h["weight_ce"] == pytest.approx(0.3) for h in logs)
    assert logs[0]["temperature"] > logs[-1]["temperature"]
    assert all(not p.requires_grad for p in teacher.parameters())


def test_finetune_with_frozen_embeddings_and_validation_each_epoch(tmp_path, task_files, base_models):
    from safetensors.torch import load_file
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    out = tmp_path / "ft"
    code = main(["finetune", "--train_file", task_files["train"], "--validation_file", task_files["validation"],
                 "--test_file", task_files["test"], "--text_column", "sentence", "--student", base_models["student"],
                 "--output-dir", str(out), "--num_train_epochs", "2", "--learning_rate", "3e-3",
                 "--eval_strategy", "epoch", "--freeze_embeddings", "true", "--latency_samples", "3", "--seed", "1"])
    assert code == 0
    report = json.loads((out / "report.json").read_text())
    assert set(report["models"]) == {"student"} and report["strategy"] == "finetune"
    assert report["retention"] is None
    before, after = load_file(f"{base_models['student']}/model.safetensors"), load_file(out / "student" / "model.safetensors")
    emb = "bert.embeddings.word_embeddings.weight"
    assert torch.equal(before[emb], after[emb])  # frozen
    assert not torch.equal(before["classifier.weight"], after["classifier.weight"])  # trained
    acc = EventAccumulator(str(out / "tensorboard" / "student"))
    acc.Reload()
    assert len(acc.Scalars("eval/accuracy")) == 2  # one validation pass per epoch


def test_resume_after_config_change_retrains_only_what_changed(distill_run, task_files, base_models, trained_teacher,
                                                               capsys):
    """New temperature + live teacher: the student is redone (from scratch, not from a stale checkpoint),
    the baseline, which does not depend on either, is reused."""
    student_before = (distill_run / "student" / "model.safetensors").stat().st_mtime_ns
    baseline_before = (distill_run / "baseline_student" / "model.safetensors").stat().st_mtime_ns
    code = main(["run", *cli_args(task_files, distill_run, trained_teacher, base_models["student"],
                                  "--num_labeled", "40", "--num_train_epochs", "6", "--final_finetune_epochs", "1",
                                  "--learning_rate", "3e-3", "--per_device_train_batch_size", "16",
                                  "--temperature", "2", "--teacher_cache", "false"), "--resume"])
    assert code == 0
    assert (distill_run / "student" / "model.safetensors").stat().st_mtime_ns != student_before
    assert (distill_run / "baseline_student" / "model.safetensors").stat().st_mtime_ns == baseline_before
    report = json.loads((distill_run / "report.json").read_text())
    assert report["gain_over_baseline"] > 0.05  # the live teacher (its own tokenizer) teaches as well as the cache


def test_data_fingerprint_sees_every_row(task_files):
    from distiltune.config.io import build_config
    from distiltune.data.load import load_task_data

    base = {"train_file": task_files["train"], "test_file": task_files["test"], "validation_file": task_files["validation"],
            "text_column": "sentence", "report_to": "none"}
    a = load_task_data(build_config({**base, "num_labeled": 40, "max_unlabeled": 300}))
    b = load_task_data(build_config({**base, "num_labeled": 40, "max_unlabeled": 299}))
    assert a.fingerprint(("train",)) == b.fingerprint(("train",))
    assert a.fingerprint() != b.fingerprint()


def test_student_built_from_teacher_layers(tmp_path, task_files, trained_teacher):
    out = tmp_path / "ft"
    code = main(["distill", *cli_args(task_files, out, trained_teacher, "from_teacher", "--student_layers", "0", "3",
                                      "--num_train_epochs", "1", "--learning_rate", "1e-3")])
    assert code == 0
    report = json.loads((out / "report.json").read_text())
    assert set(report["models"]) == {"teacher", "student"} and report["strategy"] == "distill"
    assert 0.3 < report["param_fraction"] < 0.8
    import transformers

    cfg = transformers.AutoConfig.from_pretrained(out / "student")
    assert cfg.num_hidden_layers == 2 and cfg.distiltune_teacher_layers == [0, 3]


def test_evaluate_command_reads_the_saved_config(distill_run):
    """`distiltune evaluate` with the run's own config.yaml: the resolved config loads back, and the
    evaluation goes to its own folder, leaving the run untouched."""
    before = (distill_run / "report.json").read_text()
    code = main(["evaluate", "--config", str(distill_run / "config.yaml"), "--model", str(distill_run / "student"),
                 "--model", str(distill_run / "baseline_student"), "--latency_samples", "3"])
    assert code == 0
    report = json.loads((distill_run / "evaluation" / "report.json").read_text())
    run = json.loads(before)
    assert set(report["models"]) == {"teacher", "student", "model_1"}
    assert report["models"]["student"]["metric"] == pytest.approx(run["models"]["student"]["metric"], abs=0.02)
    assert (distill_run / "report.json").read_text() == before


def test_report_plots_render_and_html_embeds_them(distill_run):
    """The report's PNGs are real, non-blank images; report.md links them; report.html is one
    self-contained file with every plot inside."""
    import matplotlib.image as mpimg

    report = json.loads((distill_run / "report.json").read_text())
    assert set(report["plots"]) == {"metric_vs_latency", "metric_vs_size", "training_curves", "confusion_matrix"}
    md = (distill_run / "report.md").read_text()
    page = (distill_run / "report.html").read_text()
    for name, rel in report["plots"].items():
        img = mpimg.imread(distill_run / rel)
        assert img.shape[0] >= 300 and img.shape[1] >= 400 and img[..., :3].std() > 0.05, name
        assert f"]({rel})" in md
    assert page.count("data:image/png;base64,") == 4 and "<table>" in page and "student" in page
    assert (distill_run / "logs" / "distill.json").is_file()  # the curves' source: the Trainer's log history


def test_pareto_front():
    from distiltune.report.plots import pareto_front

    pts = {"teacher": (60.0, 0.86), "student": (11.0, 0.83), "baseline": (10.5, 0.79), "int8": (4.3, 0.83),
           "onnx": (7.5, 0.83)}
    # int8 matches the students' best accuracy at the lowest latency; only the more accurate teacher survives beside it
    assert pareto_front(pts) == ["int8", "teacher"]
    pts["int8"] = (4.3, 0.82)
    assert pareto_front(pts) == ["int8", "onnx", "teacher"]  # giving up accuracy puts onnx back on the front


def test_validation_each_epoch_keeps_the_best_checkpoint_and_stops_early(tmp_path, task_files, base_models,
                                                                          trained_teacher):
    """distill_stop plateau: validation accuracy every epoch, the best checkpoint is what is saved,
    the stage stops once the metric stops improving, and the report says which epoch was kept."""
    import numpy as np

    from distiltune.config.io import build_config, read_yaml
    from distiltune.pipeline.checks import open_task

    out = tmp_path / "run"
    code = main(["distill", *cli_args(task_files, out, trained_teacher, base_models["student"], "--num_labeled", "40",
                                      "--num_train_epochs", "8", "--learning_rate", "3e-3",
                                      "--per_device_train_batch_size", "16", "--distill_stop", "plateau",
                                      "--distill_max_epochs", "8", "--plateau_patience", "1",
                                      "--report_to", "none", "--disable_tqdm", "true")])
    assert code == 0
    report = json.loads((out / "report.json").read_text())
    c = report["checkpoint_selection"]["distill"]
    assert c["metric"] == "accuracy" and c["best"] == max(c["evaluations"])
    assert c["stopped_early"] and c["epochs_run"] < 8 and len(c["evaluations"]) == round(c["epochs_run"])
    assert c["evaluations"].index(c["best"]) + 1 == round(c["best_epoch"])
    assert f"kept the checkpoint of epoch {c['best_epoch']:g}" in (out / "report.md").read_text()
    # The saved student is the best checkpoint, not the last one: same validation accuracy.
    cfg = build_config(read_yaml(str(out / "config.yaml")))
    task = open_task(cfg).task
    student = task.load(str(out / "student"), "student")
    val = task.encode(task.data.validation, student.tokenizer)
    predictions = task.predict(student.model, val, task.batcher(student.tokenizer))
    acc = float(np.mean(predictions.argmax(-1) == np.asarray(val["labels"])))
    assert acc == pytest.approx(c["best"])


def test_plateau_stop_needs_a_positive_patience(tmp_path, task_files, base_models, capsys):
    code = main(["finetune", *cli_args(task_files, tmp_path / "o", base_models["teacher"], base_models["student"],
                                       "--plateau_patience", "0")])
    assert code == 2 and "plateau_patience=0 must be >= 1" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def test_compare_runs_each_strategy_over_seeds_with_one_teacher(tmp_path, task_files, base_models, trained_teacher, capsys):
    """compare: three strategies x 2 seeds on one student and epoch budget; the summary is the
    mean/std of the runs' own reports; the given (trained) teacher is shared, not retrained."""
    import statistics

    out = tmp_path / "cmp"
    code = main(["compare", "--seeds", "2", *cli_args(task_files, out, trained_teacher, base_models["student"],
                                                       "--num_labeled", "40", "--num_train_epochs", "4",
                                                       "--final_finetune_epochs", "1", "--learning_rate", "3e-3",
                                                       "--per_device_train_batch_size", "16", "--report_to", "none",
                                                       "--disable_tqdm", "true")])
    assert code == 0
    r = json.loads((out / "compare.json").read_text())
    assert set(r["strategies"]) == {"finetune", "distill", "distill_finetune"} and r["seeds"] == [0, 1]
    for name, s in r["strategies"].items():
        per_seed = [json.loads((out / f"{name}-seed{seed}" / "report.json").read_text())["models"]["student"]["metric"]
                    for seed in (0, 1)]
        assert s["per_seed"] == per_seed
        assert s["metric"]["mean"] == pytest.approx(statistics.mean(per_seed))
        assert s["metric"]["std"] == pytest.approx(statistics.stdev(per_seed))
        assert (s["teacher_forward_passes"] > 0) == (name != "finetune")
    cfg = (out / "distill-seed0" / "config.yaml").read_text()
    assert "num_train_epochs: 5.0" in cfg and "final_finetune_epochs: 0.0" in cfg  # same 5-epoch budget
    # 40 labels: learning from the teacher's soft labels on the other rows beats labels alone
    assert r["strategies"]["distill"]["metric"]["mean"] > r["strategies"]["finetune"]["metric"]["mean"]
    assert r["teacher"]["metric"] > 0.9 and not (out / "teacher_run" / "teacher").exists()
    assert (out / r["plots"]["strategies"]).is_file() and "| finetune |" in (out / "report.md").read_text()


def test_compare_fine_tunes_an_untrained_teacher_once(tmp_path, task_files, base_models):
    from conftest import tiny_bert

    model, tok = tiny_bert(tmp_path / "bare", hidden=64, layers=2, heads=2, save=False)
    model.bert.save_pretrained(tmp_path / "bare")  # an encoder without a classifier head
    out = tmp_path / "cmp"
    code = main(["compare", "--seeds", "1", "--strategies", "distill", *cli_args(
        task_files, out, str(tmp_path / "bare"), base_models["student"], "--num_train_epochs", "1",
        "--teacher_num_train_epochs", "1", "--report_to", "none", "--disable_tqdm", "true")])
    assert code == 0
    r = json.loads((out / "compare.json").read_text())
    assert r["teacher"]["fine_tuned_here"] and (out / "teacher_run" / "teacher" / "model.safetensors").is_file()
    assert "teacher: " + str(out / "teacher_run" / "teacher") in (out / "distill-seed0" / "config.yaml").read_text()


def test_report_has_per_class_scores_the_majority_class_and_schedules_in_words(distill_run):
    report = json.loads((distill_run / "report.json").read_text())
    for name, classes in report["per_class"].items():
        support = sum(c["support"] for c in classes.values())
        # recall weighted by support is accuracy; the per-class F1s average to the macro-F1 of the table
        acc = sum(c["recall"] * c["support"] for c in classes.values()) / support
        assert acc == pytest.approx(report["models"][name]["metrics"]["accuracy"], abs=1e-5)
        assert sum(c["f1"] for c in classes.values()) / len(classes) == pytest.approx(
            report["models"][name]["metrics"]["f1"], abs=1e-5)
    mb = report["majority_baseline"]
    assert mb["label"] in ("neg", "pos") and 0.3 < mb["metric"] < 0.7
    import re

    temperature = report["schedules"]["temperature"]
    assert re.fullmatch(r"linear \d+\.\d+ → 1\.0 by step", temperature), temperature  # annealed, in words
    md = (distill_run / "report.md").read_text()
    assert "| model | accuracy | macro-F1 |" in md and "## Diagnostics" in md
    assert f"Schedules: temperature {temperature}, distill_weight linear 0.9 → 0.2 by step." in md
    assert [d["check"] for d in report["diagnostics"]] == []  # a teacher at 0.99 and a student that learned: nothing off
