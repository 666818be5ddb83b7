"""Extractive QA, e2e tier: CLI runs on the tiny readers. The distilled student beats its baseline
across tokenizers; exports agree and predict answers; compare, two processes, from_teacher with
feature terms, validation scores, advise and resume."""
import json
import os

import pytest
import torch

from distiltune.cli import main
from conftest import free_port
from qa_helpers import args, qa  # noqa: F401 (qa: fixture)


# ---- e2e ----

@pytest.fixture(scope="module")
def qa_run(qa, tmp_path_factory):
    """The teacher fine-tuned on 600 questions; the student and its baseline have 40 of them, the
    student also the other 560 through the teacher (its own tokenizer, moved through characters)."""
    taught = tmp_path_factory.mktemp("qa_teacher")
    code = main(["finetune", *args(dict(qa, student=qa["teacher"]), taught, "--num_train_epochs", "4", "--max_length", "48",
                                   "--learning_rate", "3e-3", "--per_device_train_batch_size", "16")])
    assert code == 0
    out = tmp_path_factory.mktemp("qa_run")
    code = main(["run", *args(dict(qa, teacher=str(taught / "student")), out, "--num_labeled", "40", "--num_train_epochs", "4",
                              "--learning_rate", "3e-3", "--per_device_train_batch_size", "16", "--final_finetune_epochs", "1",
                              "--export", json.dumps({"format": "onnx", "quantize": "int8", "min_agreement_int8": 0.5}))])
    assert code == 0
    return out


def test_distilled_reader_beats_its_baseline_across_tokenizers(qa_run):
    report = json.loads((qa_run / "report.json").read_text())
    m = report["models"]
    assert report["metric"] == "f1"
    assert m["teacher"]["metric"] >= 0.9, m["teacher"]
    assert m["student"]["metric"] >= m["baseline_student"]["metric"] + 0.05, {k: v["metric"] for k, v in m.items()}
    assert {"exact_match", "f1_len_1", "em_len_2"} <= set(m["student"]["metrics"])
    assert m["student"]["metrics"]["exact_match"] <= m["student"]["metrics"]["f1"]
    assert report["task"] == "question_answering (answer spans)"
    assert report["plots"]["by_answer_length"] == os.path.join("plots", "by_answer_length.png")
    assert (qa_run / "plots" / "by_answer_length.png").is_file()
    assert "f1_per_type" not in report["plots"]  # answer-length buckets are not entity types


def test_saved_reader_loads_with_transformers_auto_classes(qa_run):
    """transformers 5 removed the question-answering pipeline; the folder loads with its auto classes
    (and the model card says so)."""
    from transformers import AutoModelForQuestionAnswering, AutoTokenizer

    teacher = json.loads((qa_run / "report.json").read_text())["models"]["teacher"]["path"]
    model, tok = AutoModelForQuestionAnswering.from_pretrained(teacher), AutoTokenizer.from_pretrained(teacher)
    context = "w1 w2 per3 jr w4 loc5 w6"
    enc = tok("who is the", context, return_tensors="pt", return_offsets_mapping=True)
    offsets = enc.pop("offset_mapping")[0]
    with torch.no_grad():
        out = model(**enc)
    start, end = int(out.start_logits[0].argmax()), int(out.end_logits[0].argmax())
    assert context[offsets[start][0]:offsets[end][1]] == "per3 jr"
    student = qa_run / "student"
    assert AutoModelForQuestionAnswering.from_pretrained(str(student)).config.architectures == ["BertForQuestionAnswering"]
    card = (student / "README.md").read_text()
    assert "pipeline_tag: question-answering" in card and "AutoModelForQuestionAnswering" in card


def test_exported_reader_agrees_and_predict_prints_the_answer_span(qa_run, capsys):
    report = json.loads((qa_run / "report.json").read_text())
    onnx = report["models"]["student_onnx"]
    assert onnx["agreement"] >= 0.99 and onnx["metric"] == pytest.approx(report["models"]["student"]["metric"], abs=0.01)
    assert "student_int8" in report["models"] and "agreement" in report["models"]["student_int8"]
    meta = json.loads((qa_run / "student_onnx" / "distiltune_export.json").read_text())
    assert meta["kind"] == "qa" and meta["doc_stride"] == 8 and meta["max_length"] == 24
    teacher_export = qa_run / "teacher_onnx"  # the teacher knows the task well: its answers can be checked
    teacher = report["models"]["teacher"]["path"]
    assert main(["export", "--model", teacher, "--output-dir", str(teacher_export),
                 "--config", str(qa_run / "config.yaml")]) == 0
    capsys.readouterr()
    context = "w1 w2 w3 per3 jr w4 w5 w6 w7 w8 w9 w10 w11 w12 w13 w14 w15 loc5 w16"  # longer than one window
    assert main(["predict", "--model", str(teacher_export), "--json", f"who is the\t{context}",
                 f"where is the\t{context}"]) == 0
    found = [json.loads(line) for line in capsys.readouterr().out.strip().splitlines()]
    assert [(f["answer"], context[f["start"]:f["end"]]) for f in found] == [("per3 jr", "per3 jr"), ("loc5", "loc5")], found


def test_compare_on_qa_shares_the_teacher_and_distillation_beats_labels_alone(qa, qa_run, tmp_path):
    """compare on the QA task: the given (trained) teacher is shared, and with 40 labels distilling
    beats fine-tuning the same student on them alone."""
    teacher = json.loads((qa_run / "report.json").read_text())["models"]["teacher"]["path"]
    out = tmp_path / "cmp"
    code = main(["compare", "--seeds", "1", "--strategies", "finetune", "distill",
                 *args(dict(qa, teacher=teacher), out, "--num_labeled", "40", "--num_train_epochs", "4",
                       "--learning_rate", "3e-3", "--per_device_train_batch_size", "16", "--disable_tqdm", "true")])
    assert code == 0
    r = json.loads((out / "compare.json").read_text())
    assert r["strategies"]["distill"]["metric"]["mean"] > r["strategies"]["finetune"]["metric"]["mean"] + 0.05, r
    assert r["teacher"]["metric"] >= 0.9


def test_two_processes_distil_qa_like_one(qa, qa_run, tmp_path):
    """torchrun with two CPU processes on the QA task: the run finishes, its report and folders are
    written once, and the student learns as in one process (same global batch)."""
    import subprocess
    import sys

    teacher = json.loads((qa_run / "report.json").read_text())["models"]["teacher"]["path"]
    env = dict(os.environ, HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false", OMP_NUM_THREADS="1", CUDA_VISIBLE_DEVICES="")
    env["PYTHONPATH"] = os.pathsep.join([os.path.dirname(os.path.dirname(os.path.abspath(__file__))), env.get("PYTHONPATH", "")])
    common = ["distill", *args(dict(qa, teacher=teacher), None, "--num_labeled", "40", "--num_train_epochs", "3",
                               "--learning_rate", "3e-3", "--disable_tqdm", "true", "--baseline", "false")]
    outs = {}
    for name, launcher, batch in (("one", [sys.executable, "-m", "distiltune.cli"], "16"),
                                  ("two", [os.path.join(os.path.dirname(sys.executable), "torchrun"), "--nproc_per_node",
                                           "2", "--master_port", str(free_port()), "-m", "distiltune.cli"], "8")):
        out = tmp_path / name
        argv = [a if a != "None" else str(out) for a in common] + ["--per_device_train_batch_size", batch]
        done = subprocess.run(launcher + argv, env=env, capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, (done.stdout[-2000:], done.stderr[-3000:])
        outs[name] = json.loads((out / "report.json").read_text())["models"]["student"]["metric"]
    assert outs["two"] == pytest.approx(outs["one"], abs=0.05), outs
    assert outs["two"] > 0.3, outs  # the baseline on the 40 labels alone: about 0.14 (test_distilled_reader_...)


def test_from_teacher_reader_takes_feature_terms_on_aligned_positions(qa, qa_run, tmp_path):
    """Same tokenizer (one layer of the teacher, its embeddings and span head): token positions align,
    so the hidden-state term of the distilbert preset runs beside KD, and the reader stays as good as
    its teacher-initialised baseline (which starts from the trained teacher's own head)."""
    teacher = json.loads((qa_run / "report.json").read_text())["models"]["teacher"]["path"]
    out = tmp_path / "ft"
    code = main(["run", *args(dict(qa, teacher=teacher, student="from_teacher"), out, "--student_layers", "1",
                              "--preset", "distilbert", "--num_labeled", "40", "--num_train_epochs", "4",
                              "--learning_rate", "3e-3", "--per_device_train_batch_size", "16", "--disable_tqdm", "true")])
    assert code == 0
    m = json.loads((out / "report.json").read_text())["models"]
    assert m["student"]["metric"] >= 0.9 and m["student"]["metric"] >= m["baseline_student"]["metric"] - 0.02, m
    log = json.loads((out / "logs" / "distill.json").read_text())
    assert any(e.get("loss_hidden_cosine", 0) > 0 for e in log)


def test_validation_during_training_reports_squad_scores(qa, tmp_path):
    """eval_strategy epoch on a QA fine-tune: validation is scored as the test split is (windows joined
    per question, SQuAD's F1), and load_best_model_at_end keeps the best epoch by it."""
    out = tmp_path / "ft"
    code = main(["finetune", *args(dict(qa, student=qa["teacher"]), out, "--num_train_epochs", "3", "--max_length", "48",
                                   "--learning_rate", "3e-3", "--per_device_train_batch_size", "16", "--eval_strategy",
                                   "epoch", "--save_strategy", "epoch", "--load_best_model_at_end", "true",
                                   "--disable_tqdm", "true")])
    assert code == 0
    evals = [e for e in json.loads((out / "logs" / "student.json").read_text()) if "eval_f1" in e]
    assert len(evals) == 3 and all(0.0 <= e["eval_f1"] <= 1.0 and e["eval_exact_match"] <= e["eval_f1"] for e in evals)
    assert evals[-1]["eval_f1"] > evals[0]["eval_f1"] or evals[0]["eval_f1"] > 0.9, evals
    r = json.loads((out / "report.json").read_text())
    assert r["checkpoint_selection"]["student"]["metric"] == "f1"


def test_advise_takes_a_qa_teacher(qa, capsys):
    """advise measures shapes of the teacher's encoder: a QA teacher (span head) works as a classifier does."""
    assert main(["advise", "--teacher", qa["teacher"], "--size-mb", "0.075", "--labelled", "600", "--unlabeled", "2400",
                 "--seq-len", "24", "--json"]) == 0
    r = json.loads(capsys.readouterr().out)
    assert r["strategy"] == "distill" and r["student"] is not None, r


def test_resume_of_a_finished_qa_run_reuses_every_stage(qa, qa_run):
    """--resume with unchanged inputs: no stage trains again (model files untouched), the teacher
    cache is reused, and the scores are the same."""
    before = json.loads((qa_run / "report.json").read_text())["models"]
    stamps = {name: (qa_run / name / "model.safetensors").stat().st_mtime_ns for name in ("student", "baseline_student")}
    teacher = before["teacher"]["path"]
    code = main(["run", *args(dict(qa, teacher=teacher), qa_run, "--num_labeled", "40", "--num_train_epochs", "4",
                              "--learning_rate", "3e-3", "--per_device_train_batch_size", "16", "--final_finetune_epochs", "1",
                              "--export", json.dumps({"format": "onnx", "quantize": "int8", "min_agreement_int8": 0.5}),
                              "--resume")])
    assert code == 0
    after = json.loads((qa_run / "report.json").read_text())["models"]
    assert {n: (qa_run / n / "model.safetensors").stat().st_mtime_ns for n in stamps} == stamps
    assert {n: after[n]["metric"] for n in ("student", "baseline_student")} == \
        {n: before[n]["metric"] for n in ("student", "baseline_student")}
