"""Two processes on CPU (gloo), launched by torchrun and by accelerate, on the same code as one
process: the same global batch gives the same loss curve and test metric; files written once."""
import json
import os
import shutil
import subprocess
import sys

import pytest
from transformers import AutoConfig, AutoModelForSequenceClassification

from conftest import FIXED, free_port

BIN = os.path.dirname(sys.executable)


def env():
    e = dict(os.environ, HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false", OMP_NUM_THREADS="1", CUDA_VISIBLE_DEVICES="")
    e["PYTHONPATH"] = os.pathsep.join([os.path.dirname(os.path.dirname(os.path.abspath(__file__))), e.get("PYTHONPATH", "")])
    return e


@pytest.fixture(scope="module")
def no_dropout_student(tmp_path_factory, base_models):
    """Dropout off: with it, two ranks draw two half-batch masks where one process draws one mask."""
    d = tmp_path_factory.mktemp("nodrop") / "student"
    cfg = AutoConfig.from_pretrained(base_models["student"], hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    AutoModelForSequenceClassification.from_pretrained(base_models["student"], config=cfg).save_pretrained(d)
    for f in os.listdir(base_models["student"]):
        if "token" in f or f == "vocab.txt":
            shutil.copy(os.path.join(base_models["student"], f), d)
    return str(d)


def distill_args(task_files, teacher, student, out, batch):
    return ["distill", "--train_file", task_files["train"], "--validation_file", task_files["validation"],
            "--test_file", task_files["test"], "--text_column", "sentence", "--teacher", teacher, "--student", student,
            "--num_train_epochs", "1", "--learning_rate", "1e-3", "--per_device_train_batch_size", str(batch),
            "--logging_steps", "5", "--mixed_precision", "no", "--seed", "0", "--latency_samples", "3",
            "--max_test_samples", "150", "--disable_tqdm", "true", "--report_to", "none", "--output_dir", str(out), *FIXED]


def run(launcher, args):
    done = subprocess.run(launcher + args, env=env(), capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, (done.stdout[-2000:], done.stderr[-4000:])
    return done


def curve(out):
    return {e["step"]: e for e in json.load(open(out / "logs" / "distill.json")) if "loss" in e}


@pytest.fixture(scope="module")
def one_process(tmp_path_factory, task_files, trained_teacher, no_dropout_student):
    out = tmp_path_factory.mktemp("p1") / "run"
    run([sys.executable, "-m", "distiltune.cli"], distill_args(task_files, trained_teacher, no_dropout_student, out, 8))
    return out


LAUNCHERS = {
    "torchrun": lambda: [os.path.join(BIN, "torchrun"), "--nproc_per_node", "2", "--master_port", str(free_port()),
                         "-m", "distiltune.cli"],
    # --multi_gpu starts N gloo processes on a CPU-only machine; --cpu alone would start one (no mpirun)
    "accelerate": lambda: [os.path.join(BIN, "accelerate"), "launch", "--multi_gpu", "--num_processes", "2",
                           "--num_machines", "1", "--main_process_port", str(free_port()), "--mixed_precision", "no",
                           "--dynamo_backend", "no", "-m", "distiltune.cli"],
}


@pytest.mark.parametrize("launcher", list(LAUNCHERS))
def test_two_processes_match_one(launcher, tmp_path, task_files, trained_teacher, no_dropout_student, one_process):
    out = tmp_path / "run"
    done = run(LAUNCHERS[launcher](), distill_args(task_files, trained_teacher, no_dropout_student, out, 4))
    assert done.stdout.count("[distiltune] data:") == 1  # rank 0 alone prints, evaluates and reports
    one, two = curve(one_process), curve(out)
    assert sorted(one) == sorted(two) and len(one) >= 10  # same optimizer steps: global batch 8 both ways
    for step in one:
        for key in ("loss", "loss_ce", "loss_kd", "grad_norm"):
            assert two[step][key] == pytest.approx(one[step][key], abs=1e-4), (step, key)
        # the logged terms are averaged over ranks like the Trainer's loss: 0.5 * ce + 0.5 * kd
        assert two[step]["loss"] == pytest.approx(0.5 * two[step]["loss_ce"] + 0.5 * two[step]["loss_kd"], abs=1e-4)
    r1, r2 = (json.load(open(o / "report.json"))["models"]["student"] for o in (one_process, out))
    assert r2["metrics"]["accuracy"] == r1["metrics"]["accuracy"]
    assert os.path.isfile(out / "student" / "model.safetensors") and not os.path.exists(out / "student.tmp")
    assert len(os.listdir(out / "cache" / "teacher")) == 1  # the teacher cache is written once


def test_two_processes_match_one_for_a_causal_lm_with_sequence_kd(tmp_path):
    """A causal LM under torchrun: rank 0 alone generates the teacher's answers (the other rank reads
    them from the run folder) and builds the top-k cache; the loss curve equals one process's with the
    same global batch. The rows here hold one response length each (a prompt of one token count, the
    answers cut at sequence_kd_max_new_tokens): a term is each rank's mean over its response tokens,
    averaged over the ranks, so ranks with unequal token counts would differ slightly from one process."""
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from test_causal_lm_runs import save_model, write_rows

    rows = write_rows(tmp_path / "train.jsonl", n=200)  # 160 training rows: 20 full global batches of 8
    teacher, student = save_model(tmp_path / "teacher", 64, 4, seed=0), save_model(tmp_path / "student", 32, 2, seed=5)

    def args(out, batch):
        return ["distill", "--train_file", rows, "--task_type", "causal_lm", "--teacher", teacher, "--student", student,
                "--num_labeled", "40", "--sequence_kd", "true", "--sequence_kd_max_new_tokens", "8",
                "--num_train_epochs", "1", "--learning_rate", "1e-3", "--per_device_train_batch_size", str(batch),
                "--logging_steps", "1", "--mixed_precision", "no", "--seed", "0", "--latency_samples", "2",
                "--max_length", "32", "--test_size", "24", "--validation_size", "16", "--generation_samples", "0",
                "--disable_tqdm", "true",
                "--report_to", "none", "--output_dir", str(out), *FIXED]

    run([sys.executable, "-m", "distiltune.cli"], args(tmp_path / "p1", 8))
    done = run(LAUNCHERS["torchrun"](), args(tmp_path / "p2", 4))
    assert done.stdout.count("the teacher answers") == 1  # one rank generated
    one, two = curve(tmp_path / "p1"), curve(tmp_path / "p2")
    assert sorted(one) == sorted(two) and len(one) >= 10
    for step in one:
        for key in ("loss", "loss_ce", "loss_kd"):
            assert two[step][key] == pytest.approx(one[step][key], abs=1e-4), (step, key)
    for out in ("p1", "p2"):
        assert len(os.listdir(tmp_path / out / "cache" / "answers")) == 1
        assert len(os.listdir(tmp_path / out / "cache" / "teacher")) == 1
    answers = [open(tmp_path / o / "cache" / "answers" / os.listdir(tmp_path / o / "cache" / "answers")[0]).read()
               for o in ("p1", "p2")]
    assert answers[0] == answers[1]
