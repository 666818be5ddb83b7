"""torch.compile stays correct: a compiled student distils with the eager run's losses."""
from __future__ import annotations

import numpy as np
import torch._dynamo.utils as DU
from transformers import AutoModelForSequenceClassification, AutoTokenizer

from distiltune.models import hf as M
from test_teacher_cache import _losses, _pipeline, _rows


def test_compiled_student_distils_with_the_eager_losses(tmp_path, task_files, trained_teacher, base_models):
    # no dropout: compiled code draws its own random numbers, so only the arithmetic can be compared
    path = str(tmp_path / "student")
    AutoModelForSequenceClassification.from_pretrained(base_models["student"], hidden_dropout_prob=0.0,
                                                       attention_probs_dropout_prob=0.0).save_pretrained(path)
    AutoTokenizer.from_pretrained(base_models["student"]).save_pretrained(path)
    runs = []
    DU.counters.clear()
    for name, compile_ in (("eager", False), ("compiled", True)):
        s = _pipeline(tmp_path / name, task_files, trained_teacher, path, torch_compile=compile_)
        runs.append(_losses(s, M.cpu_copy(s.student.model), _rows(s)))
    eager, compiled = runs
    # the student really ran compiled, in one graph
    assert DU.counters["stats"]["unique_graphs"] >= 1 and not DU.counters["graph_break"]
    assert len(eager) == len(compiled) == 6
    np.testing.assert_allclose(np.asarray(compiled), np.asarray(eager), rtol=1e-4, atol=1e-5)
