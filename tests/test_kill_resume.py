"""SIGKILL a pipeline run at random steps in every training stage, resume it, and get exactly the
uninterrupted run's results (CPU): test metrics, per-step loss curves and final weights.

The kill lands when a stage's ``checkpoint-N`` folder appears, plus a random delay, so it often hits
the middle of writing that checkpoint: resume must then fall back to the last complete one.
"""
import hashlib
import json
import os
import random
import re
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
            "--report_to", "none", "--disable_tqdm", "true", "--teacher_stop", "fixed", "--distill_stop", "fixed",
            "--output_dir", str(out)]


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


# Where a kill can leave the run, in run order, and what --resume must then print: the finished
# stages it reuses ("[distiltune] reusing the fine-tuned teacher / the student in ...") and the stages
# it continues from a checkpoint ("[distiltune] <stage>: resuming from checkpoints/<stage>/checkpoint-N").
# A gap is the time between one stage's checkpoints being dropped (its model saved) and the next
# stage's first checkpoint. The baseline student is reused silently.
POSITIONS = [  # (position, reused, resumed)
    ("teacher", [], ["teacher"]),
    ("gap teacher -> distill", ["teacher"], []),
    ("distill", ["teacher"], ["distill"]),
    # distill's checkpoints are kept until the student (distil + fine-tune) is saved: the finished
    # distil stage is resumed at its last step, then the fine-tune stage from its checkpoint
    ("student_finetune", ["teacher"], ["distill", "student_finetune"]),
    ("gap student -> baseline_student", ["teacher", "student"], []),
    ("baseline_student", ["teacher", "student"], ["baseline_student"]),
    ("after baseline_student", ["teacher", "student"], []),
]
ORDER = [p for p, _, _ in POSITIONS]


def at_kill(out) -> tuple[str, dict]:
    """Where the kill left the run (a POSITIONS entry) and each stage's checkpoints on disk:
    stage -> (complete step numbers, incomplete folder names)."""
    from distiltune.training.checkpoints import is_complete

    ckpts = {}
    for stage in STAGES:
        folders = sorted((int(p.name.split("-")[1]), p) for p in (out / "checkpoints" / stage).glob("checkpoint-*")
                         if p.is_dir())
        if folders:
            ckpts[stage] = ([n for n, p in folders if is_complete(str(p))],
                            [p.name for n, p in folders if not is_complete(str(p))])
    with_ckpts = [s for s in STAGES if s in ckpts]
    if with_ckpts:
        return with_ckpts[-1], ckpts
    done = [n for n in ("baseline_student", "student", "teacher") if (out / ".stages" / f"{n}.json").is_file()]
    position = {"baseline_student": "after baseline_student", "student": "gap student -> baseline_student",
                "teacher": "gap teacher -> distill"}.get(done[0] if done else None, "before any checkpoint")
    return position, ckpts


def reuse_lines(stdout: str) -> list[tuple]:
    """The resume-relevant lines a run printed, in order."""
    found = []
    for line in stdout.splitlines():
        if m := re.fullmatch(r"\[distiltune\] reusing the (fine-tuned teacher|student) in (.+) \(inputs unchanged\)", line):
            found.append(("reused", "teacher" if m[1] == "fine-tuned teacher" else "student", os.path.basename(m[2])))
        elif m := re.fullmatch(r"\[distiltune\] (\w+): resuming from (.+)", line):
            found.append(("resumed", m[1], m[2]))
        elif m := re.fullmatch(r"\[distiltune\] (\w+): removed incomplete checkpoint\(s\) (.+) \(cut short by a kill\)", line):
            found.append(("removed", m[1], m[2]))
        elif "reusing" in line or "resuming" in line:
            raise AssertionError(f"unexpected reuse/resume line: {line!r}")
    return found


@pytest.mark.parametrize("stage,step,delay", KILLS, ids=[f"{s}-{n}" for s, n, _ in KILLS])
def test_sigkill_then_resume_equals_uninterrupted(stage, step, delay, tmp_path, task_files, base_models, uninterrupted):
    out = tmp_path / "run"
    cmd = argv(task_files, base_models, out)
    assert kill_at(cmd, out / "checkpoints" / stage / f"checkpoint-{step}", delay=delay)
    assert not (out / "report.json").exists()
    position, ckpts = at_kill(out)
    # the kill landed in this stage or, after the delay, later (never before: checkpoint-{step} existed)
    assert position in ORDER and ORDER.index(position) >= ORDER.index(stage), (position, ckpts)
    if position == stage:  # the usual case: the checkpoint being written, or one after it, is the newest
        assert step - 1 <= max(ckpts[stage][0], default=0) <= STAGES[stage], ckpts
    _, reused, resumed = POSITIONS[ORDER.index(position)]
    want = [("reused", name, name) for name in reused]
    for s in resumed:
        complete, incomplete = ckpts[s]
        if s != position:  # a finished stage whose checkpoints are still kept: its last step
            assert complete and max(complete) == STAGES[s], (s, ckpts)
        if incomplete:
            want.append(("removed", s, ", ".join(incomplete)))
        if complete:  # (none only when the kill cut the stage's first checkpoint short: it starts afresh)
            want.append(("resumed", s, f"checkpoints/{s}/checkpoint-{max(complete)}"))
    done = subprocess.run(cmd + ["--resume"], env=env(), capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert reuse_lines(done.stdout) == want, f"killed at {position}, checkpoints {ckpts}:\n{done.stdout}"
    got = outcome(out)
    assert got["metrics"] == uninterrupted["metrics"]
    assert got["losses"] == uninterrupted["losses"]
    assert got["weights"] == uninterrupted["weights"]


def test_two_runs_with_one_seed_are_identical(tmp_path, task_files, base_models, uninterrupted):
    out = tmp_path / "again"
    subprocess.run(argv(task_files, base_models, out), env=env(), check=True, capture_output=True, timeout=600)
    assert outcome(out) == uninterrupted
