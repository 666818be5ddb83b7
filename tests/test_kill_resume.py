"""SIGKILL a pipeline run at random steps in every training stage, resume it, and get exactly the
uninterrupted run's results (CPU): test metrics, per-step loss curves and final weights.

The kill lands when a stage's ``checkpoint-N`` folder appears, plus a random delay, so it often hits
the middle of writing that checkpoint: resume must then fall back to the last complete one.
"""
import hashlib
import json
import os
import random
import signal
import subprocess
import sys
import time

import pytest

STAGES = {"teacher": 12, "distill": 16, "student_finetune": 6, "baseline_student": 18}  # steps per stage (below)


def argv(task_files, base_models, out):
    # 96 labelled + 32 unlabeled rows, batch 16: teacher 2 epochs x 6 steps, distil 2 x 8,
    # student fine-tune 1 x 6, baseline 3 x 6; a checkpoint after every step.
    return [sys.executable, "-m", "distiltune.cli", "run", "--train_file", task_files["train"],
            "--validation_file", task_files["validation"], "--test_file", task_files["test"],
            "--text_column", "sentence", "--teacher", base_models["teacher"], "--student", base_models["student"],
            "--strategy", "distill_finetune", "--finetune_teacher", "yes", "--teacher_num_train_epochs", "2",
            "--num_train_epochs", "2", "--final_finetune_epochs", "1", "--num_labeled", "96", "--max_unlabeled", "32",
            "--per_device_train_batch_size", "16", "--learning_rate", "2e-3", "--teacher_learning_rate", "2e-3",
            "--save_strategy", "steps", "--save_steps", "1", "--logging_steps", "1", "--max_test_samples", "100",
            "--latency_samples", "2", "--throughput_batch_size", "8", "--mixed_precision", "no", "--seed", "5",
            "--report_to", "none", "--disable_tqdm", "true", "--output_dir", str(out)]


def env():
    e = dict(os.environ, HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false", CUDA_VISIBLE_DEVICES="")
    e["PYTHONPATH"] = os.pathsep.join([os.path.dirname(os.path.dirname(os.path.abspath(__file__))), e.get("PYTHONPATH", "")])
    return e


def outcome(out) -> dict:
    """What must not depend on a kill: metrics, every logged loss, the saved weights."""
    from safetensors.torch import load_file

    report = json.load(open(out / "report.json"))
    metrics = {name: r["metrics"] for name, r in report["models"].items()}
    assert set(metrics) == {"teacher", "student", "baseline_student"} and all("accuracy" in m for m in metrics.values())
    losses = {}
    for stage in STAGES:
        log = json.load(open(out / "logs" / f"{stage}.json"))
        losses[stage] = [(e["step"], {k: v for k, v in e.items() if k.startswith("loss") or k in ("temperature", "grad_norm")})
                         for e in log if "loss" in e]
    weights = {}
    for model in ("teacher", "student", "baseline_student"):
        tensors = load_file(str(out / model / "model.safetensors"))
        weights[model] = hashlib.sha256(b"".join(tensors[k].numpy().tobytes() for k in sorted(tensors))).hexdigest()
    return {"metrics": metrics, "losses": losses, "weights": weights}


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory, task_files, base_models):
    out = tmp_path_factory.mktemp("whole") / "run"
    subprocess.run(argv(task_files, base_models, out), env=env(), check=True, capture_output=True, timeout=600)
    return outcome(out)


def kill_at(cmd, folder, timeout=300.0, delay=0.0) -> bool:
    """Start ``cmd``; SIGKILL it ``delay`` s after ``folder`` appears. False if it finished first."""
    proc = subprocess.Popen(cmd, env=env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    t0 = time.monotonic()
    while proc.poll() is None and time.monotonic() - t0 < timeout:
        if os.path.isdir(folder):
            time.sleep(delay)
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            return True
        time.sleep(0.002)
    err = proc.stderr.read().decode()
    proc.kill()
    raise AssertionError(f"the run ended before {folder} appeared:\n{err[-3000:]}")


# Five kill points across the four training stages, drawn once with a fixed seed.
_rng = random.Random(20261123)
KILLS = [(stage, _rng.randint(1, STAGES[stage] - 1), round(_rng.uniform(0, 0.4), 3))
         for stage in ("teacher", "distill", "distill", "student_finetune", "baseline_student")]


@pytest.mark.parametrize("stage,step,delay", KILLS, ids=[f"{s}-{n}" for s, n, _ in KILLS])
def test_sigkill_then_resume_equals_uninterrupted(stage, step, delay, tmp_path, task_files, base_models, uninterrupted):
    out = tmp_path / "run"
    cmd = argv(task_files, base_models, out)
    assert kill_at(cmd, out / "checkpoints" / stage / f"checkpoint-{step}", delay=delay)
    assert not (out / "report.json").exists()
    done = subprocess.run(cmd + ["--resume"], env=env(), capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    # the kill landed in this stage (it resumes from a checkpoint) or, after the delay, in a later one
    # (this stage is reused); either way something was continued rather than redone
    assert ": resuming from checkpoints/" in done.stdout or "reusing" in done.stdout, done.stdout
    got = outcome(out)
    assert got["metrics"] == uninterrupted["metrics"]
    assert got["losses"] == uninterrupted["losses"]
    assert got["weights"] == uninterrupted["weights"]


def test_two_runs_with_one_seed_are_identical(tmp_path, task_files, base_models, uninterrupted):
    out = tmp_path / "again"
    subprocess.run(argv(task_files, base_models, out), env=env(), check=True, capture_output=True, timeout=600)
    assert outcome(out) == uninterrupted
