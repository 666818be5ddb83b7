"""Every bad input gives one line naming the problem and the fix, exit code 2, and writes nothing."""
import os

import pandas as pd
import pytest
import torch

from distiltune.cli import main
from conftest import tiny_bert


def run_cli(capsys, *argv):
    code = main(list(argv))
    err = capsys.readouterr().err
    lines = [l for l in err.splitlines() if "error" in l.lower()]
    assert "Traceback" not in err
    return code, lines


def base_args(task_files, out, teacher, student, train=None, test=None):
    return ["--train_file", train or task_files["train"], "--validation_file", task_files["validation"],
            "--test_file", test or task_files["test"], "--text_column", "sentence", "--teacher", teacher,
            "--student", student, "--output_dir", str(out), "--report_to", "none", "--num_train_epochs", "1"]


@pytest.fixture()
def bad_csvs(tmp_path, task_files):
    df = pd.read_csv(task_files["test"])
    outside = df.copy()
    outside.loc[3, "label"] = "neutral"
    paths = {"outside": tmp_path / "outside.csv", "empty": tmp_path / "empty.csv"}
    outside.to_csv(paths["outside"], index=False)
    df.head(0).to_csv(paths["empty"], index=False)
    return {k: str(v) for k, v in paths.items()}


def cases(task_files, base_models, trained_teacher, tmp_path, bad_csvs):
    T, S = trained_teacher, base_models["student"]
    three, _ = tiny_bert(tmp_path / "three_labels", labels=("a", "b", "c"))
    swapped, _ = tiny_bert(tmp_path / "swapped", labels=("pos", "neg"))
    untrained = tmp_path / "untrained"
    m, tok = tiny_bert(tmp_path / "tmp_untrained")
    m.bert.save_pretrained(untrained)
    tok.save_pretrained(untrained)
    out = tmp_path / "out"
    yaml_bad = tmp_path / "bad.yaml"
    yaml_bad.write_text("temprature: 2.0\n")
    unl_empty, unl_binary = tmp_path / "unl_empty.txt", tmp_path / "unl_binary.txt"
    unl_empty.write_text("\n  \n")
    unl_binary.write_bytes(bytes(range(128, 256)) * 4)
    return {
        "misspelt text column": (["run", *base_args(task_files, out, T, S), "--text_column", "sentense"],
                                 "column 'sentense' is missing.*did you mean 'sentence'"),
        "missing label column": (["run", *base_args(task_files, out, T, S), "--label_column", "target"],
                                 "column 'target' is missing"),
        "label outside the set": (["run", *base_args(task_files, out, T, S, test=bad_csvs["outside"])],
                                  r"test data has labels \['neutral'\] that are not in the label set"),
        "student label count": (["run", *base_args(task_files, out, T, str(tmp_path / "three_labels"))],
                                "student .* predicts 3 labels but the data has 2"),
        "student label names": (["run", *base_args(task_files, out, T, str(tmp_path / "swapped"))],
                                r"student's labels \['pos', 'neg'\] differ"),
        "untrained teacher head": (["distill", *base_args(task_files, out, str(untrained), S)],
                                   "untrained classifier head.*fine-tune it first|untrained classifier head"),
        "unknown config key": (["run", "--config", str(yaml_bad)], "unknown config key 'temprature'.*'temperature'"),
        "weight outside [0, 1]": (["run", *base_args(task_files, out, T, S), "--distill_weight", "1.2"],
                                  r"distill_weight=1.2 is outside \[0, 1\]"),
        "temperature <= 0": (["run", *base_args(task_files, out, T, S), "--temperature", "-1"],
                             "temperature=-1.0 must be > 0"),
        "empty split": (["run", *base_args(task_files, out, T, S, test=bad_csvs["empty"])], r"test_file .* is empty \(no data rows\)"),
        "missing train file": (["run", *base_args(task_files, out, T, S, train=str(tmp_path / "nope.csv"))],
                               "train_file not found"),
        "distill without teacher": (["distill", "--train_file", task_files["train"], "--text_column", "sentence",
                                     "--student", S, "--output_dir", str(out), "--report_to", "none"],
                                    "strategy 'distill' needs a teacher"),
        "bad flag value": (["run", "--strategy", "distil"], "invalid choice: 'distil'"),
        "unknown command": (["distil"], "unknown command 'distil'.*did you mean 'distill'"),
        "unknown loss name": (["run", *base_args(task_files, out, T, S), "--losses", "hiden_mse"],
                              "unknown loss term 'hiden_mse'; did you mean 'hidden_mse'.*registered: "),
        "unknown loss option": (["run", *base_args(task_files, out, T, S), "--losses", '{"name": "hidden_mse", "layer": "last"}'],
                                "loss term 'hidden_mse' has no option 'layer'.*did you mean 'layers'"),
        "layer index out of range": (["distill", *base_args(task_files, out, T, S), "--losses",
                                      '{"name": "hidden_mse", "pool": "mean", "layers": "0:9"}'],
                                     r"teacher layer 9 is out of range \(the teacher has 4 layers\)"),
        "widths differ, no projection": (["distill", *base_args(task_files, out, T, S), "--losses",
                                          '{"name": "hidden_mse", "pool": "mean", "projection": false}'],
                                         r"student layer 0 has shape \(32,\) but teacher layer 1 has \(64,\) and projection is off"),
        "module path not found": (["distill", *base_args(task_files, out, T, S), "--losses",
                                   '{"name": "sp", "student_modules": ["bert.encoder.layr.1"], '
                                   '"teacher_modules": ["bert.encoder.layer.3"]}'],
                                  "student has no submodule 'bert.encoder.layr.1'.*bert.encoder.layer.1"),
        "token terms across tokenizers": (["distill", *base_args(task_files, out, T, S), "--preset", "tinybert"],
                                          "tokenizers differ.*attention_mse, embedding_mse, hidden_mse.*pool: mean"),
        "unknown preset": (["run", "--preset", "tinybrt"], "invalid choice: 'tinybrt'"),
        "augment factor <= 0": (["run", *base_args(task_files, out, T, S), "--augment", "mask", "--augment_factor", "0"],
                                r"augment_factor=0 must be >= 1"),
        "unknown augment method": (["run", *base_args(task_files, out, T, S), "--augment", "shuffle"],
                                   r"augment lists \['shuffle'\], not among mask, delete, swap, mlm"),
        "mlm without an MLM head": (["distill", *base_args(task_files, out, T, S), "--augment", "mlm"],
                                    "augment 'mlm' needs a masked-LM head.*augment_mlm_model"),
        "empty unlabeled file": (["run", *base_args(task_files, out, T, S), "--unlabeled_file", str(unl_empty)],
                                 r"unlabeled_file .* is empty \(no lines with text\)"),
        "non-text unlabeled file": (["run", *base_args(task_files, out, T, S), "--unlabeled_file", str(unl_binary)],
                                    r"unlabeled_file .* is not text \(not UTF-8\)"),
    }


CASE_NAMES = ["misspelt text column", "missing label column", "label outside the set", "student label count",
              "student label names", "untrained teacher head", "unknown config key", "weight outside [0, 1]",
              "temperature <= 0", "empty split", "missing train file", "distill without teacher", "bad flag value",
              "unknown command", "unknown loss name", "unknown loss option", "layer index out of range",
              "widths differ, no projection", "module path not found", "token terms across tokenizers", "unknown preset",
              "augment factor <= 0", "unknown augment method", "mlm without an MLM head", "empty unlabeled file",
              "non-text unlabeled file"]


@pytest.mark.parametrize("name", CASE_NAMES)
def test_bad_input_one_line_exit_2(name, capsys, tmp_path, task_files, base_models, trained_teacher, bad_csvs):
    argv, pattern = cases(task_files, base_models, trained_teacher, tmp_path, bad_csvs)[name]
    with pytest.raises(SystemExit) as e:  # argparse errors exit directly; ours return 2
        raise SystemExit(main(argv))
    err = capsys.readouterr().err
    assert e.value.code == 2, err
    assert "Traceback" not in err
    lines = [l for l in err.splitlines() if l.startswith("distiltune: error:")]
    assert len(lines) == 1, err
    import re

    assert re.search(pattern, lines[0]), lines[0]
    assert "fix" in lines[0] or "did you mean" in lines[0] or "see `distiltune" in lines[0]
    out = tmp_path / "out"
    assert not (out / "student").exists() and not (out / "report.json").exists()


def test_previous_run_is_refused_and_left_intact(capsys, tmp_path, task_files, base_models, trained_teacher):
    out = tmp_path / "out"
    out.mkdir()
    (out / "report.json").write_text("{\"keep\": true}")
    code = main(["run", *base_args(task_files, out, trained_teacher, base_models["student"])])
    err = capsys.readouterr().err
    assert code == 2 and "already holds files" in err and "--resume" in err and "--overwrite" in err
    assert (out / "report.json").read_text() == "{\"keep\": true}"


def test_nan_loss_stops_naming_term_and_step(capsys, tmp_path, task_files, base_models, trained_teacher):
    model, tok = tiny_bert(tmp_path / "nan_student", save=False)
    with torch.no_grad():
        model.classifier.weight.fill_(float("nan"))
    model.save_pretrained(tmp_path / "nan_student")
    code = main(["run", *base_args(task_files, tmp_path / "out", trained_teacher, str(tmp_path / "nan_student"))])
    err = capsys.readouterr().err
    assert code == 2
    assert "loss term 'ce' is not finite at step 0" in err or "loss term 'kd' is not finite at step 0" in err


def test_nan_mid_training_keeps_last_good_checkpoint(tmp_path, base_models):
    """A term that turns NaN at step 3: the error names it and the step, checkpoint-2 survives."""
    from datasets import Dataset

    from distiltune import DistillationTrainer, DistillConfig, NonFiniteLossError, Schedule
    from distiltune.data import DistillCollator, tokenize
    from distiltune.losses import LOSSES, LossTerm, register_loss
    from distiltune.models import load_classifier, load_tokenizer

    if "nan_after_3" not in LOSSES:
        @register_loss("nan_after_3")
        class NanAfter3(LossTerm):
            step = 0

            def forward(self, student_out, teacher_out, batch):
                NanAfter3.step += 1
                v = student_out.logits.float().pow(2).mean()
                return v * float("nan") if NanAfter3.step > 3 else v

    model, _ = load_classifier(base_models["student"], ["neg", "pos"], "student")
    tok = load_tokenizer(base_models["student"])
    ds = tokenize(Dataset.from_dict({"t": ["w1 good1 w2"] * 40, "labels": [1] * 40}), tok, ("t",), 16)
    args = DistillConfig(output_dir=str(tmp_path / "ck"), max_steps=10, per_device_train_batch_size=4, report_to="none",
                         remove_unused_columns=False, save_strategy="steps", save_steps=2, strategy="finetune")
    trainer = DistillationTrainer(model=model, args=args, train_dataset=ds, data_collator=DistillCollator(tok),
                                  objective=[("nan_after_3", Schedule("constant", 1.0))])
    with pytest.raises(NonFiniteLossError) as e:
        trainer.train()
    assert e.value.term == "nan_after_3" and e.value.step == 3
    assert e.value.checkpoint and e.value.checkpoint.endswith("checkpoint-2")
    assert os.path.isfile(os.path.join(e.value.checkpoint, "model.safetensors"))
