"""Any nn.Module through the CLI: the digits example's two configs, shortened, and its bad inputs."""
import json

import pytest

from distiltune.cli import main

EX = "examples/digits"


@pytest.fixture(scope="module")
def digits_runs(tmp_path_factory):
    d = tmp_path_factory.mktemp("digits")
    common = ["--disable_tqdm", "true", "--report_to", "none", "--latency_samples", "5"]
    assert main(["run", "--config", f"{EX}/teacher.yaml", "--output_dir", str(d / "teacher"),
                 "--num_train_epochs", "8", *common]) == 0
    assert main(["run", "--config", f"{EX}/distill.yaml", "--output_dir", str(d / "distill"),
                 "--teacher", str(d / "teacher" / "student"), "--num_train_epochs", "10", *common]) == 0
    return d


def test_cnn_student_distilled_through_the_cli(digits_runs):
    report = json.loads((digits_runs / "distill" / "report.json").read_text())
    m = report["models"]
    assert m["student"]["params"] <= 0.25 * m["teacher"]["params"]
    assert report["retention"] >= 0.95
    assert m["student"]["metric"] > m["baseline_student"]["metric"]
    assert set(m["student"]) >= {"metric", "params", "size_mb", "latency_ms_p50", "throughput_sps"}


def test_saved_network_reloads_and_projection_is_not_in_it(digits_runs):
    from safetensors import safe_open

    from distiltune.models.factories import load_module

    student_dir = digits_runs / "distill" / "student"
    with safe_open(str(student_dir / "model.safetensors"), "pt") as f:
        assert not any("proj" in k for k in f.keys())
    model = load_module(str(student_dir))
    assert model.factory == "examples/digits/models.py:cnn_student" and model.num_labels == 10


@pytest.mark.parametrize("extra,pattern", [
    (["--losses", "attention_kl"], "reads attention maps, which the student \\(not a transformers model\\)"),
    (["--losses", '{"name": "hint", "student_modules": ["blok2"], "teacher_modules": ["block2"]}'],
     "student has no submodule 'blok2'.*block2"),
    (["--student", "examples/digits/models.py:cnn_studnt"], "has no function 'cnn_studnt'.*cnn_student"),
    (["--student", "from_teacher"], "from_teacher copies transformer layers"),
    (["--input_column", "pixels"], "column 'pixels' is missing.*did you mean 'pixel_values'"),
])
def test_module_bad_input(extra, pattern, digits_runs, tmp_path, capsys):
    import re

    code = main(["run", "--config", f"{EX}/distill.yaml", "--teacher", str(digits_runs / "teacher" / "student"),
                 "--output_dir", str(tmp_path / "o"), "--num_train_epochs", "1", "--report_to", "none", *extra])
    err = capsys.readouterr().err
    lines = [l for l in err.splitlines() if l.startswith("distiltune: error:")]
    assert code == 2 and len(lines) == 1 and "Traceback" not in err, err
    assert re.search(pattern, lines[0]), lines[0]


def test_factory_without_input_column_is_refused(tmp_path, capsys):
    code = main(["run", "--dataset_name", "examples/digits/models.py:load_digits_splits", "--label_column", "label",
                 "--student", "examples/digits/models.py:cnn_student", "--strategy", "finetune",
                 "--output_dir", str(tmp_path / "o"), "--report_to", "none"])
    assert code == 2 and "set input_column" in capsys.readouterr().err


def test_cnn_student_exports_to_onnx_and_static_int8(digits_runs, tmp_path, capsys):
    """Any nn.Module: the CNN exports with a dynamic batch axis; int8 is static (calibrated), and
    both re-check on the digits test split; predict reads a .npy of images."""
    import numpy as np

    out = tmp_path / "onnx"
    student = digits_runs / "distill" / "student"
    assert main(["export", "--model", str(student), "--quantize", "int8", "--output-dir", str(out),
                 "--teacher", str(digits_runs / "teacher" / "student")]) == 0
    report = json.loads((out / "report.json").read_text())
    m = report["models"]
    assert set(m) == {"teacher", "student", "student_onnx", "student_int8"}
    assert report["export"]["student_int8"]["smaller_than_teacher"] > 1
    assert m["student_onnx"]["agreement"] == 1.0 and m["student_onnx"]["max_abs_logit_diff"] < 1e-4
    assert m["student_int8"]["agreement"] >= 0.99
    meta = json.loads((out / "distiltune_export.json").read_text())
    assert meta["kind"] == "tensor" and meta["inputs"] == ["pixel_values"] and "static" in meta["int8_method"]
    from examples.digits.models import load_digits_splits

    images = np.asarray(load_digits_splits()["test"]["pixel_values"][:7], dtype=np.float32)
    np.save(tmp_path / "x.npy", images)
    capsys.readouterr()
    assert main(["predict", "--model", str(out), "--input-file", str(tmp_path / "x.npy"), "--json"]) == 0
    got = [json.loads(line)["label"] for line in capsys.readouterr().out.splitlines()]
    from distiltune.models.factories import load_module

    import torch

    with torch.inference_mode():
        want = load_module(str(student))(pixel_values=torch.from_numpy(images)).logits.argmax(-1).tolist()
    names = meta["label_names"] or [str(i) for i in range(10)]
    assert got == [names[i] for i in want]


def test_op_onnx_cannot_express_is_named(tmp_path, capsys):
    """A network using an op with no ONNX translation: one line naming the op and the way out."""
    from distiltune.models.factories import build_module, save_module

    (tmp_path / "eig.py").write_text(
        "import torch\n"
        "class Eig(torch.nn.Module):\n"
        "    def __init__(self, num_labels=10):\n"
        "        super().__init__()\n"
        "        self.fc = torch.nn.Linear(64, num_labels)\n"
        "    def forward(self, x):\n"
        "        v = x.flatten(1)[:, :4]\n"
        "        m = v[:, :, None] * v[:, None, :] + torch.eye(4)\n"
        "        return self.fc(x.flatten(1)) + torch.linalg.eigvalsh(m)[:, :1]\n"
        "def eig_net(num_labels=10):\n"
        "    return Eig(num_labels)\n")
    model = build_module(f"{tmp_path}/eig.py:eig_net", label_names=[str(i) for i in range(10)])
    save_module(model, str(tmp_path / "net"), extra={"distiltune_config.yaml": (
        "dataset_name: examples/digits/models.py:load_digits_splits\ninput_column: pixel_values\n"
        f"student: {tmp_path}/eig.py:eig_net\nstrategy: finetune\n")})
    code = main(["export", "--model", str(tmp_path / "net"), "--output-dir", str(tmp_path / "o")])
    err = capsys.readouterr().err
    lines = [l for l in err.splitlines() if l.strip()]
    assert code == 2 and len(lines) == 1 and "Traceback" not in err, err
    assert "ONNX has no translation for the op aten._linalg_eigh" in lines[0] and "keep the PyTorch folder" in lines[0]
    assert not (tmp_path / "o").exists()
