"""The teacher-output cache: same losses as the live teacher, keyed by example, rebuilt when stale."""
from __future__ import annotations

from typing import NamedTuple

import numpy as np
import pandas as pd
import pytest
import torch

from distiltune.models import hf as M
from distiltune.data import teacher_cache as TC
from distiltune.models.lm import token_topk


class Setup(NamedTuple):
    ctx: object       # the run's checked state (distiltune.pipeline.checks.plan)
    teacher: object   # Loaded teacher
    student: object   # Loaded student
    fp: str           # the teacher's fingerprint


def _pipeline(tmp_path, task_files, trained_teacher, student, rows=96, subset=None, **changes):
    """A checked run (public API: plan + the task's loaders) over the first ``rows`` training rows."""
    from datasets import Dataset

    from distiltune.config.io import build_config, save_config
    from distiltune.data.load import TaskData
    from distiltune.pipeline.checks import plan

    values = dict(strategy="distill", teacher=trained_teacher, student=student, per_device_train_batch_size=16,
                  num_train_epochs=1, learning_rate=1e-3, temperature=2.0, distill_weight=0.7, mixed_precision="no",
                  output_dir=str(tmp_path / "run"), report_to="none", save_strategy="no", disable_tqdm=True,
                  logging_steps=1, baseline=False, seed=0, max_length=32, train_sampling_strategy="random")
    values.update(changes)
    cfg = build_config(values, "test")
    df = pd.read_csv(task_files["train"]).head(rows)
    ds = Dataset.from_dict({"sentence": list(df.sentence), "labels": [int(l == "pos") for l in df.label]})
    train = ds if subset is None else ds.select(subset)
    data = TaskData(train=train, unlabeled=None, validation=ds.select(range(8)), test=ds.select(range(8)),
                    label_names=["neg", "pos"], task_type="classification", metric="accuracy", text_columns=("sentence",))
    config = tmp_path / "run" / "config.yaml"
    ctx = plan(cfg, resume=config.exists(), data=data)  # a second setup on the same folder continues it
    save_config(cfg, str(config))
    return Setup(ctx, ctx.task.load(trained_teacher, "teacher"), ctx.task.load(student, "student"),
                 M.weights_fingerprint(trained_teacher))


def _rows(s: Setup, live: bool = False, teacher_fp: str | None = None):
    """The distillation rows of a setup (teacher outputs cached unless ``live``)."""
    from distiltune.pipeline.distil_rows import distil_rows

    return distil_rows(s.ctx, s.teacher.model, s.student.tokenizer, s.teacher.tokenizer, teacher_fp or s.fp, live=live)[0]


def _losses(s: Setup, student, train_set):
    from distiltune.pipeline.train import train_stage

    cfg = s.ctx.cfg
    train_stage(s.ctx, "distill", "t", student, s.student.tokenizer, train_set, cfg.objectives["main"], 1, cfg.learning_rate,
                teacher=s.teacher.model, teacher_tokenizer=s.teacher.tokenizer, temperature=cfg.temperature_sched)
    import json
    import os

    hist = json.load(open(os.path.join(s.ctx.out, "logs", "distill.json")))
    return [(h["loss_ce"], h["loss_kd"]) for h in hist if "loss_kd" in h]


def test_shuffled_cached_run_computes_the_live_teachers_losses(tmp_path, task_files, trained_teacher, base_models):
    """Same shuffled batches, cached logits vs the teacher every step: the same loss terms at every step
    (the teacher and student tokenise differently, so the cache also replaces the teacher's own inputs)."""
    s = _pipeline(tmp_path, task_files, trained_teacher, base_models["student"])
    cached = _rows(s)
    assert "teacher_logits" in cached.column_names and "teacher_input_ids" not in cached.column_names
    live = _rows(s, live=True)
    a = _losses(s, M.cpu_copy(s.student.model), cached)
    b = _losses(s, M.cpu_copy(s.student.model), live)
    assert len(a) == len(b) == 6
    np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-4, atol=1e-5)


def test_topk_with_k_equal_to_the_classes_equals_the_full_cache(tmp_path, task_files, trained_teacher, base_models):
    s = _pipeline(tmp_path, task_files, trained_teacher, base_models["student"])
    full = _losses(s, M.cpu_copy(s.student.model), _rows(s))
    s2 = _pipeline(tmp_path / "k", task_files, trained_teacher, base_models["student"], teacher_cache_topk=2)
    topk_set = _rows(s2)
    assert "teacher_topk_values" in topk_set.column_names
    np.testing.assert_allclose(np.asarray(_losses(s2, M.cpu_copy(s2.student.model), topk_set)),
                               np.asarray(full), rtol=1e-6, atol=1e-7)


def test_topk_form_keeps_the_top_logits_and_the_tail_mass_at_each_temperature():
    """Rebuilt for a temperature, the top-k softened probabilities equal the teacher's exactly and the
    missing classes hold the teacher's remaining softened mass (exactly on the stored grid, closely between)."""
    rng = np.random.default_rng(0)
    logits = (rng.standard_normal((8, 50)) * 3).astype(np.float32)
    for k in (50, 10, 1):
        cols = TC.compress(logits, k)
        parts = [torch.tensor(cols[c]) for c in TC.TOPK]
        idx = np.asarray(cols["teacher_topk_indices"])
        for T in (1.0, 2.0, 3.5, 4.0, 40.0):
            rebuilt = TC.dense(*parts, 50, T).numpy()
            p = torch.softmax(torch.tensor(logits) / T, -1).numpy()
            q = torch.softmax(torch.tensor(rebuilt) / T, -1).numpy()
            tol = 1e-4 if T in TC.TAIL_TEMPERATURES else 2e-2
            np.testing.assert_allclose(np.take_along_axis(q, idx, -1), np.take_along_axis(p, idx, -1), rtol=tol, atol=1e-6)
            if k == 50:
                np.testing.assert_allclose(rebuilt, logits, rtol=0, atol=0)
    assert "teacher_logits" in TC.compress(logits, None) and "teacher_logits" in TC.compress(logits, 51)


def test_cache_is_reused_rebuilt_when_stale_and_checked_on_first_use(tmp_path, task_files, trained_teacher, base_models,
                                                                     capsys):
    s = _pipeline(tmp_path, task_files, trained_teacher, base_models["student"])
    first = np.asarray(_rows(s)["teacher_logits"])
    assert "teacher labelled 96 rows once" in capsys.readouterr().out
    again = np.asarray(_rows(s)["teacher_logits"])  # unchanged inputs: read back, not recomputed
    assert "teacher labelled" not in capsys.readouterr().out
    np.testing.assert_array_equal(first, again)

    with torch.no_grad():  # the teacher changed in memory but claims the same weights: the first-use check sees it
        s.teacher.model.classifier.bias += 1.0
    moved = np.asarray(_rows(s)["teacher_logits"])
    out = capsys.readouterr().out
    assert "disagree with the teacher" in out and "teacher labelled 96 rows once" in out
    np.testing.assert_allclose(moved, first + 1.0, atol=1e-4)

    _rows(s, teacher_fp="retrained")  # a retrained teacher has a new fingerprint
    assert "stale (the teacher's weights changed)" in capsys.readouterr().out

    shorter = _pipeline(tmp_path, task_files, trained_teacher, base_models["student"], max_length=8)
    _rows(shorter, teacher_fp="retrained")  # tokenisation changed: other teacher inputs
    assert "stale (the data or its tokenisation changed)" in capsys.readouterr().out


def test_cached_logits_follow_each_example_not_its_position(tmp_path, task_files, trained_teacher, base_models, capsys):
    """Rows in another order (or a subset) reuse the cache, and each row gets its own teacher logits."""
    from distiltune.data.collate import Padder
    from distiltune.models.inference import predict_logits

    s = _pipeline(tmp_path, task_files, trained_teacher, base_models["student"])
    _rows(s)
    capsys.readouterr()
    reordered = _pipeline(tmp_path, task_files, trained_teacher, base_models["student"],
                          subset=list(range(95, -1, -2)))  # reversed, every other row
    ds = _rows(reordered)
    assert "teacher labelled" not in capsys.readouterr().out
    t_ds = reordered.ctx.task.encode(reordered.ctx.data.train, reordered.teacher.tokenizer)
    expected = predict_logits(reordered.teacher.model, Padder(reordered.teacher.tokenizer), t_ds, progress=False)
    np.testing.assert_allclose(np.asarray(ds["teacher_logits"]), expected, atol=1e-4)


def test_topk_must_be_positive():
    from distiltune.config.schema import DistillConfig

    with pytest.raises(ValueError, match="teacher_cache_topk=0 must be >= 1"):
        DistillConfig(output_dir="x", teacher_cache_topk=0)


def test_rows_of_different_shapes_are_zero_padded_on_every_axis():
    """Per-word outputs ((words, C) per row) and per-position ones ((2, length) per row) alike."""
    from distiltune.data.teacher_cache import collate

    words = collate([{"teacher_logits": [[1.0, 2.0]]}, {"teacher_logits": [[3.0, 4.0], [5.0, 6.0]]}])["teacher_logits"]
    assert words.tolist() == [[[1.0, 2.0], [0.0, 0.0]], [[3.0, 4.0], [5.0, 6.0]]]
    spans = collate([{"teacher_logits": [[1.0], [2.0]]}, {"teacher_logits": [[3.0, 4.0], [5.0, 6.0]]}])["teacher_logits"]
    assert spans.tolist() == [[[1.0, 0.0], [2.0, 0.0]], [[3.0, 4.0], [5.0, 6.0]]]
    same = collate([{"teacher_logits": [1.0, 2.0]}, {"teacher_logits": [3.0, 4.0]}])["teacher_logits"]
    assert same.dtype == torch.float32 and same.tolist() == [[1.0, 2.0], [3.0, 4.0]]


def test_a_build_stopped_part_way_resumes_at_its_first_missing_shard(tmp_path):
    """The expensive pass for a large teacher: killed after two of four shards, the next build computes
    only the other two, and the table equals one built without stopping."""
    from datasets import Dataset

    ds = Dataset.from_dict({"input_ids": [[i, 2 * i, 3] for i in range(10)], "length": [3] * 10})
    seen = []

    def teacher(rows, stop_at=None):
        if stop_at is not None and len(seen) == stop_at:
            raise KeyboardInterrupt  # the kill, in the middle of the third shard's pass
        seen.append(len(rows))
        return np.asarray([[sum(r), -float(r[0]), 0.5] for r in rows["input_ids"]], dtype=np.float32)

    log = []
    cache = lambda root: TC.TeacherCache(str(root), "fp", shard_rows=3, log=log.append)  # noqa: E731
    with pytest.raises(KeyboardInterrupt):
        cache(tmp_path / "a").attach(ds, ds, ["input_ids"], lambda r: teacher(r, stop_at=2))
    assert seen == [3, 3]
    resumed = cache(tmp_path / "a").attach(ds, ds, ["input_ids"], teacher)
    assert seen == [3, 3, 3, 1]  # shards 3 and 4 only
    assert any("resuming a build that stopped, 6 of 10 rows already done" in line for line in log)
    assert any(line.startswith("[distiltune] teacher cache: shard 4 of 4 (10 of 10 rows)") and "tokens/s" in line
               for line in log)
    whole = cache(tmp_path / "b").attach(ds, ds, ["input_ids"], teacher)
    assert resumed["teacher_logits"] == whole["teacher_logits"] and len(resumed) == 10
    seen.clear()
    log.clear()
    again = cache(tmp_path / "a").attach(ds, ds, ["input_ids"], teacher)  # whole now: read back, not rebuilt
    assert again["teacher_logits"] == whole["teacher_logits"]
    assert seen == [4] and not any("shard" in line for line in log)  # only the first-use check's 4 rows


@pytest.mark.parametrize("temperature", [1.0, 2.0, 2.7])
def test_a_language_models_per_token_top_k_reaches_the_loss_at_its_positions(temperature):
    """Per response token: top-k logits, ids and the tail on the grid, stored ragged per row, padded by
    the collator and placed back at each row's response positions; the KD read from it is the KD
    against the dense teacher's own top-k form (exact on the grid of temperatures, close between)."""
    from distiltune.losses import vocab as V
    from distiltune.losses.logits import kd_per_sample

    g = torch.Generator().manual_seed(0)
    teacher, student = torch.randn(2, 9, 300, generator=g) * 3, torch.randn(2, 9, 300, generator=g)
    mask = torch.zeros(2, 9, dtype=torch.bool)
    mask[0, 3:8], mask[1, 1:4] = True, True  # 5 and 3 response tokens
    rows = []
    for b in range(2):
        rows.append({c: x.numpy() for c, x in token_topk(teacher[b][mask[b]], 16).items()})
    batch = TC.collate(rows)
    assert batch["teacher_topk_values"].shape == (2, 5, 16)
    sparse = TC.sparse_teacher(batch, mask, 300, temperature)
    assert not batch  # the columns are popped: the model never sees them
    got = kd_per_sample(student, sparse, temperature)[mask]
    want = kd_per_sample(student, V.top_k(teacher, 16, temperature), temperature)[mask]
    tol = 1e-5 if temperature in TC.TAIL_TEMPERATURES else 2e-2
    torch.testing.assert_close(got, want, rtol=tol, atol=tol)
