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

    from distiltune.modules import load_module

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
