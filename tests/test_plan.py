"""A run is planned and checked before anything on disk changes: a refused run leaves its output
folder exactly as it was (a previous run included), with one line and exit code 2."""
from __future__ import annotations

import hashlib
import json
import os

import pytest

from conftest import FIXED
from distiltune.cli import main


def snapshot(folder) -> dict | None:
    """Every file under ``folder`` with its content hash (None when the folder does not exist)."""
    if not os.path.exists(folder):
        return None
    out = {}
    for root, _, files in os.walk(folder):
        for f in files:
            p = os.path.join(root, f)
            out[os.path.relpath(p, folder)] = hashlib.sha1(open(p, "rb").read()).hexdigest()
    return out


def args(task_files, out, teacher, student, *extra):
    return ["--train_file", task_files["train"], "--validation_file", task_files["validation"],
            "--test_file", task_files["test"], "--text_column", "sentence", "--teacher", teacher, "--student", student,
            "--output_dir", str(out), "--report_to", "none", "--num_train_epochs", "1", "--latency_samples", "2",
            "--per_device_train_batch_size", "32", "--mixed_precision", "no", "--disable_tqdm", "true", *FIXED, *extra]


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory, task_files, base_models):
    """A finished fine-tune run whose folder a refused --overwrite must leave as it was."""
    out = tmp_path_factory.mktemp("finished") / "run"
    assert main(["finetune", *args(task_files, out, base_models["teacher"], base_models["student"])]) == 0
    assert (out / "report.json").is_file()
    return out


@pytest.fixture()
def no_weights(tmp_path, base_models):
    """A model folder with config.json and tokenizer files but no weights."""
    import shutil

    d = tmp_path / "no_weights"
    shutil.copytree(base_models["teacher"], d)
    for f in os.listdir(d):
        if f.endswith((".safetensors", ".bin")):
            os.remove(d / f)
    return str(d)


def cases(task_files, base_models, trained_teacher, no_weights, tmp_path, finished_run):
    T, S = trained_teacher, base_models["student"]
    fresh = tmp_path / "fresh"
    return {
        # the previous run's report.json was deleted before the missing weights were found
        "--overwrite, teacher folder without weights": (
            ["run", *args(task_files, finished_run, no_weights, S), "--overwrite"], finished_run,
            "holds no weights"),
        "--overwrite, student folder without weights": (
            ["finetune", *args(task_files, finished_run, T, no_weights), "--overwrite"], finished_run,
            "holds no weights"),
        # trained from scratch, silently
        "--resume on a folder with no run": (
            ["run", *args(task_files, fresh, T, S), "--resume"], fresh, "holds no run to continue"),
        # failed at run time, after the output folder was made
        "freeze_layers beyond the model's depth": (
            ["finetune", *args(task_files, fresh, T, base_models["teacher"], "--freeze_layers", "9")], fresh,
            "freeze_layers=9 but the student .* has only 4 layers"),
        "freeze_layers beyond the teacher's depth": (
            ["run", *args(task_files, fresh, base_models["teacher"], S, "--freeze_layers", "5", "--finetune_teacher", "yes")],
            fresh,
            "freeze_layers=5 but the teacher .* has only 4 layers"),
        # evaluated the teacher first, then failed with the hub's "Repo id must be in the form ..."
        "evaluate --model on a missing folder": (
            ["evaluate", *args(task_files, fresh, T, S), "--model", str(tmp_path / "nowhere" / "student")], fresh,
            "nowhere/student: folder not found"),
    }


CASES = ["--overwrite, teacher folder without weights", "--overwrite, student folder without weights",
         "--resume on a folder with no run", "freeze_layers beyond the model's depth",
         "freeze_layers beyond the teacher's depth", "evaluate --model on a missing folder"]


@pytest.mark.parametrize("name", CASES)
def test_refused_run_changes_nothing_on_disk(name, capsys, tmp_path, task_files, base_models, trained_teacher, no_weights,
                                             finished_run):
    import re

    argv, folder, pattern = cases(task_files, base_models, trained_teacher, no_weights, tmp_path, finished_run)[name]
    before = snapshot(folder)
    code = main(argv)
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.startswith("distiltune: error:")]
    assert code == 2 and "Traceback" not in err and len(lines) == 1, err
    assert re.search(pattern, lines[0]) and "-> fix:" in lines[0], lines[0]
    assert snapshot(folder) == before  # not created, or not changed at all


def test_kd_in_an_intermediate_stage_runs_at_the_configured_temperature(tmp_path, task_files, base_models, trained_teacher):
    out = tmp_path / "run"
    code = main(["distill", *args(task_files, out, trained_teacher, base_models["student"], "--temperature", "3",
                                  "--losses", '{"name": "kd", "stage": "intermediate"}', "--intermediate_epochs", "1",
                                  "--logging_steps", "1", "--num_labeled", "64")])
    assert code == 0
    logged = [e["temperature"] for e in json.loads((out / "logs" / "intermediate.json").read_text()) if "temperature" in e]
    assert logged and set(logged) == {3.0}, logged
