"""A causal-LM run killed in its distillation stage (SIGKILL, as a preempted job dies) resumes with
--resume and ends exactly where the uninterrupted run ends: test metrics, every logged loss and the
saved weights. The teacher cache (top-k with draws from the tail) is read back, not rebuilt."""
from __future__ import annotations

import hashlib
import json
import subprocess
import sys

import pytest

from test_causal_lm_runs import save_model, write_rows
from test_kill_resume import env, kill_at


def argv(d, out):
    # 96 labelled + 32 unlabeled rows, batch 16: distil 2 epochs x 8 steps, baseline 2 x 6; a checkpoint every step
    return [sys.executable, "-m", "distiltune.cli", "run", "--train_file", str(d / "train.jsonl"),
            "--task_type", "causal_lm", "--teacher", str(d / "teacher"), "--student", str(d / "student"),
            "--num_labeled", "96", "--max_unlabeled", "32", "--validation_size", "16", "--test_size", "32",
            "--max_length", "32", "--per_device_train_batch_size", "16", "--learning_rate", "3e-3",
            "--num_train_epochs", "2", "--save_strategy", "steps", "--save_steps", "1", "--logging_steps", "1",
            "--mixed_precision", "no", "--seed", "3", "--generation_samples", "4", "--generation_max_new_tokens", "4",
            "--latency_samples", "1", "--throughput_batch_size", "2", "--report_to", "none", "--disable_tqdm", "true",
            "--teacher_stop", "fixed", "--distill_stop", "fixed", "--output_dir", str(out)]


def outcome(out) -> dict:
    from safetensors.torch import load_file

    report = json.load(open(out / "report.json"))
    losses = {stage: [(e["step"], {k: v for k, v in e.items() if k.startswith("loss") or k == "grad_norm"})
                      for e in json.load(open(out / "logs" / f"{stage}.json")) if "loss" in e]
              for stage in ("distill", "baseline_student")}
    weights = {}
    for model in ("student", "baseline_student"):
        tensors = load_file(str(out / model / "model.safetensors"))
        weights[model] = hashlib.sha256(b"".join(tensors[k].numpy().tobytes() for k in sorted(tensors))).hexdigest()
    return {"metrics": {n: r["metrics"] for n, r in report["models"].items()}, "losses": losses, "weights": weights}


@pytest.fixture(scope="module")
def lm_files(tmp_path_factory):
    d = tmp_path_factory.mktemp("lm_resume")
    write_rows(d / "train.jsonl", n=200)
    save_model(d / "teacher", 64, 4, seed=0)
    save_model(d / "student", 32, 2, seed=5)
    return d


def test_a_killed_distillation_resumes_to_the_uninterrupted_result(lm_files, tmp_path):
    whole = tmp_path / "whole"
    subprocess.run(argv(lm_files, whole), env=env(), check=True, capture_output=True, timeout=600)
    want = outcome(whole)
    assert len(want["losses"]["distill"]) == 16 and all("loss_kd" in e for _, e in want["losses"]["distill"])
    out = tmp_path / "killed"
    assert kill_at(argv(lm_files, out), out / "checkpoints" / "distill" / "checkpoint-5", delay=0.05)
    assert not (out / "report.json").exists()
    done = subprocess.run(argv(lm_files, out) + ["--resume"], env=env(), capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "distill: resuming from checkpoints/distill/checkpoint-" in done.stdout
    assert "teacher labelled" not in done.stdout  # the cache is read back, not rebuilt
    assert outcome(out) == want
