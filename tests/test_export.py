"""Export to ONNX and int8: the files run in plain onnxruntime, agree with PyTorch, and bad input is refused."""
import json
import os
import subprocess
import sys

import numpy as np
import onnxruntime as ort
import pytest
import torch
from transformers import AutoModelForSequenceClassification, AutoTokenizer

from conftest import tiny_bert
from distiltune.cli import main

TEXTS = ["w1 good3 w4", "bad2 w5 w6 w7 w8 w9 w10 w11", "w3 w3 w3 good9", "bad0"]


@pytest.fixture(scope="module")
def exported(trained_teacher, tmp_path_factory):
    """The trained tiny BERT exported with int8, through the CLI (data from its distiltune_config.yaml)."""
    out = tmp_path_factory.mktemp("export") / "onnx"
    assert main(["export", "--model", trained_teacher, "--quantize", "int8", "--output-dir", str(out)]) == 0
    return out


def torch_logits(folder, texts):
    tok = AutoTokenizer.from_pretrained(folder)
    model = AutoModelForSequenceClassification.from_pretrained(folder).eval()
    with torch.inference_mode():
        return model(**tok(texts, padding=True, return_tensors="pt")).logits.numpy()


def test_export_writes_both_variants_and_rechecks_them(exported):
    names = set(os.listdir(exported))
    assert {"model.onnx", "model.int8.onnx", "tokenizer.json", "predict.py", "distiltune_export.json",
            "report.json", "report.md", "README.md"} <= names
    report = json.loads((exported / "report.json").read_text())
    m = report["models"]
    assert set(m) == {"student", "student_onnx", "student_int8"}
    keys = {"metric", "params", "size_mb", "latency_ms_p50", "latency_ms_p95", "throughput_sps"}
    for name in ("student_onnx", "student_int8"):
        assert keys <= set(m[name]) and m[name]["latency_ms_p50"] > 0
        assert m[name]["agreement"] >= 0.99
    assert m["student_onnx"]["max_abs_logit_diff"] < 1e-4  # fp32: the same function
    assert m["student_onnx"]["metric"] == m["student"]["metric"]
    assert m["student_int8"]["metric"] >= 0.99 * m["student"]["metric"]
    assert m["student_int8"]["size_mb"] < m["student_onnx"]["size_mb"]
    assert report["export"]["student_int8"]["agreement"] == m["student_int8"]["agreement"]
    assert "int8 student: agrees with the PyTorch student" in (exported / "report.md").read_text()


def test_plain_onnxruntime_session_matches_pytorch_at_any_batch_and_length(exported, trained_teacher):
    """Dynamic batch and sequence axes: shapes never seen at export time give PyTorch's logits."""
    tok = AutoTokenizer.from_pretrained(trained_teacher)
    session = ort.InferenceSession(str(exported / "model.onnx"), providers=["CPUExecutionProvider"])
    for texts in (TEXTS[:1], TEXTS, TEXTS * 5):
        enc = tok(texts, padding=True, return_tensors="np")
        got = session.run(None, {i.name: enc[i.name].astype(np.int64) for i in session.get_inputs()})[0]
        np.testing.assert_allclose(got, torch_logits(trained_teacher, texts), atol=1e-4)


def test_predict_command_and_standalone_script_agree_with_pytorch(exported, trained_teacher, capsys):
    want = [["neg", "pos"][i] for i in torch_logits(trained_teacher, TEXTS).argmax(-1)]
    assert main(["predict", "--model", str(exported), "--variant", "fp32", "--json", *TEXTS]) == 0
    got = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [g["label"] for g in got] == want and all(0.5 <= g["score"] <= 1 for g in got)
    # predict.py runs from the export folder alone: no distiltune on the path.
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    proc = subprocess.run([sys.executable, "-I", "predict.py", *TEXTS], cwd=exported, capture_output=True, text=True,
                          env=env, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert [line.split("\t")[0] for line in proc.stdout.splitlines()] == want


def test_bundled_tokenizer_encodes_as_the_training_tokenizer(exported, trained_teacher):
    from distiltune.export.predict import ExportedModel

    mine = ExportedModel(str(exported)).encode(TEXTS)
    ref = AutoTokenizer.from_pretrained(trained_teacher)(TEXTS, padding=True, truncation=True, max_length=128,
                                                          return_tensors="np")
    for k in mine:
        np.testing.assert_array_equal(mine[k], ref[k])


def test_pipeline_export_option_adds_exported_rows_to_the_run_report(tmp_path, task_files, base_models):
    """Trained in bf16 autocast (accelerate wraps forward in autocast): the export and the speed
    measurement must still see the plain fp32 model."""
    out = tmp_path / "run"
    code = main(["finetune", "--train_file", task_files["train"], "--validation_file", task_files["validation"],
                 "--test_file", task_files["test"], "--text_column", "sentence", "--student", base_models["teacher"],
                 "--num_train_epochs", "2", "--learning_rate", "2e-3", "--per_device_train_batch_size", "16",
                 "--output_dir", str(out), "--report_to", "none", "--latency_samples", "3", "--seed", "0",
                 "--mixed_precision", "bf16", "--disable_tqdm", "true", "--export", "onnx:int8"])
    assert code == 0
    report = json.loads((out / "report.json").read_text())
    assert {"student_onnx", "student_int8"} <= set(report["models"])
    assert report["export"]["student_onnx"]["agreement"] >= 0.99
    assert (out / "student_onnx" / "model.int8.onnx").is_file()
    assert "export:" in (out / "config.yaml").read_text()  # the option is part of the saved config


def test_agreement_below_the_floor_fails_loudly_and_keeps_the_files(tmp_path, trained_teacher, capsys):
    """An outlier feature (LLM.int8's failure case): the last hidden state gets a constant 1e5 in
    dimension 0, which the pooler ignores (zero weights), so fp32 predictions do not change. int8
    quantises that activation per tensor, so every other dimension loses its resolution and many
    predictions flip. With a floor of 100% the export must fail (exit 1), name the share, and keep
    its files for inspection."""
    import shutil

    model_dir = tmp_path / "outlier"
    shutil.copytree(trained_teacher, model_dir)
    model = AutoModelForSequenceClassification.from_pretrained(model_dir)
    with torch.no_grad():
        norm = model.bert.encoder.layer[-1].output.LayerNorm
        norm.weight[0], norm.bias[0] = 0.0, 1e5
        model.bert.pooler.dense.weight[:, 0] = 0.0
    model.save_pretrained(model_dir)
    out = tmp_path / "onnx"
    code = main(["export", "--model", str(model_dir), "--quantize", "int8", "--output-dir", str(out),
                 "--min-agreement-int8", "1.0"])
    err = capsys.readouterr().err
    assert code == 1 and "Traceback" not in err, (out / "report.md").read_text()
    assert "student_int8 agrees with the PyTorch student on" in err and "below the floor 100.00%" in err
    assert (out / "model.int8.onnx").is_file() and (out / "report.json").is_file()
    report = json.loads((out / "report.json").read_text())
    assert report["models"]["student_onnx"]["agreement"] >= 0.999  # fp32 still exact: the floor caught int8 alone


BAD = {
    "folder with no model": (lambda t, e: ["--model", str(t / "empty"), "--output-dir", str(t / "o")], "holds no model"),
    "missing folder": (lambda t, e: ["--model", str(t / "nope"), "--output-dir", str(t / "o")], "is not a folder"),
    "an export as the model": (lambda t, e: ["--model", str(e), "--output-dir", str(t / "o")], "is already an export"),
    "quantize int4": (lambda t, e: ["--model", str(t / "m"), "--quantize", "int4"], "--quantize 'int4' is not supported"),
    "format tflite": (lambda t, e: ["--model", str(t / "m"), "--format", "tflite"], "--format 'tflite' is not supported"),
    "floor above 1": (lambda t, e: ["--model", str(t / "m"), "--min-agreement", "1.5"], "not a share between 0 and 1"),
    "existing output": (lambda t, e: ["--model", str(t / "m"), "--output-dir", str(t / "taken")], "already exists.*--overwrite"),
    "overwrite a non-export": (lambda t, e: ["--model", str(t / "m"), "--output-dir", str(t / "taken"), "--overwrite"],
                               "not a distiltune export"),
    "no data to check on": (lambda t, e: ["--model", str(t / "m"), "--output-dir", str(t / "o")], "no data to re-check"),
    "unknown flag": (lambda t, e: ["--model", str(t / "m"), "--quantise", "int8"], "unrecognized arguments: --quantise"),
    "opset 99": (lambda t, e: ["--model", str(t / "m"), "--opset", "99"], "--opset 99 is not supported.*17 to 23"),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_export_bad_input(case, tmp_path, exported, capsys):
    (tmp_path / "empty").mkdir()
    tiny_bert(tmp_path / "m")  # a model folder without distiltune_config.yaml
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "notes.txt").write_text("keep me")
    argv, pattern = BAD[case]
    code = main(["export", *argv(tmp_path, exported)])
    err = capsys.readouterr().err
    assert code == 2, err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in err, err
    import re

    assert re.search(pattern, lines[0]), lines[0]
    assert (tmp_path / "taken" / "notes.txt").read_text() == "keep me"
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("argv,pattern", [
    (["--model", "{model}", "x"], "is not an exported model"),
    (["--model", "{export}", "--variant", "int4", "x"], "invalid choice: 'int4'"),
    (["--model", "{export}", "--input-file", "images.npy"], "this model reads text"),
    (["--model", "{export}"], "no texts given"),
])
def test_predict_bad_input(argv, pattern, exported, trained_teacher, capsys, monkeypatch):
    import io

    monkeypatch.setattr("sys.stdin", io.StringIO(""))
    code = main(["predict", *[a.format(model=trained_teacher, export=exported) for a in argv]])
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 2 and len(lines) == 1 and pattern in lines[0], err
