"""Every preset end to end through the CLI on the tiny task; token alignment; terms stay out of the export."""
import json
import math

import pytest
from safetensors import safe_open

from conftest import FIXED
from distiltune.cli import main
from distiltune.losses.presets import PRESETS

STAGE_TERMS = {  # where each preset's extra terms are logged
    "distilbert": ("distill", ["hidden_cosine", "kd", "ce"]),
    "tinybert": ("intermediate", ["embedding_mse", "hidden_mse", "attention_mse"]),
    "minilm": ("distill", ["minilm", "kd"]),
    "fitnets": ("intermediate", ["hint"]),
    "rkd": ("distill", ["rkd_distance", "rkd_angle", "kd"]),
}


def args(task_files, out, teacher, student, *extra):
    return ["distill", "--train_file", task_files["train"], "--validation_file", task_files["validation"],
            "--test_file", task_files["test"], "--text_column", "sentence", "--teacher", teacher, "--student", student,
            "--output_dir", str(out), "--latency_samples", "3", "--seed", "0", "--mixed_precision", "no",
            "--num_labeled", "40", "--num_train_epochs", "3", "--learning_rate", "3e-3",
            "--per_device_train_batch_size", "16", "--logging_steps", "5", "--disable_tqdm", "true", *FIXED, *extra]


def scalars(run, stage):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(run / "tensorboard" / stage))
    acc.Reload()
    return {t: [e.value for e in acc.Scalars(t)] for t in acc.Tags()["scalars"]}


def test_every_preset_is_covered():
    assert set(STAGE_TERMS) == set(PRESETS)


@pytest.mark.parametrize("preset", sorted(STAGE_TERMS))
def test_preset_end_to_end(preset, tmp_path, task_files, trained_teacher, aligned_student):
    assert main(args(task_files, tmp_path, trained_teacher, aligned_student, "--preset", preset)) == 0
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["models"]["student"]["metric"] > 0.75  # the tiny task is learnable from 40 labels + the teacher
    stage, terms = STAGE_TERMS[preset]
    logged = scalars(tmp_path, stage)
    for term in terms:
        values = logged[f"train/loss_{term}"]
        assert values and all(math.isfinite(v) for v in values), (term, values)  # finite, logged on its own
    if stage == "intermediate":  # two stages: the logits come second
        assert "train/loss_kd" in scalars(tmp_path, "distill")
        assert "train/loss_kd" not in logged
    # projections trained with the student are not part of the exported student
    with safe_open(str(tmp_path / "student" / "model.safetensors"), "pt") as f:
        keys = list(f.keys())
    assert not any(k.startswith(("proj", "terms")) for k in keys)
    assert "loss" in (tmp_path / "student" / "README.md").read_text()


def test_token_level_terms_refuse_different_tokenizers(tmp_path, task_files, trained_teacher, base_models, capsys):
    """base_models['student'] permutes the vocabulary: token positions do not line up with the teacher's."""
    code = main(args(task_files, tmp_path, trained_teacher, base_models["student"], "--preset", "distilbert"))
    err = capsys.readouterr().err.strip()
    assert code == 2 and "Traceback" not in err and err.count("distiltune: error:") == 1
    assert "tokenizers differ" in err and "hidden_cosine" in err and "pool: mean" in err and "rkd_distance" in err


def test_sequence_level_terms_work_across_tokenizers(tmp_path, task_files, trained_teacher, base_models):
    code = main(args(task_files, tmp_path, trained_teacher, base_models["student"], "--losses",
                     '{"name": "hidden_cosine", "pool": "mean"}', "sp:2"))
    assert code == 0
    logged = scalars(tmp_path, "distill")
    assert {"train/loss_hidden_cosine", "train/loss_sp", "train/weight_sp"} <= set(logged)
    assert logged["train/weight_sp"][0] == 2.0
