"""The pipeline: plan and check -> (fine-tune teacher) -> teacher outputs -> distil -> (fine-tune
student) -> baseline student -> evaluate all -> export -> report. Written once over the task interface."""
from __future__ import annotations

import copy
import dataclasses
import os
import time

from accelerate import PartialState
from transformers import set_seed

from ..config.io import save_config
from ..errors import DistilTuneError
from ..models import hf as M
from ..report.build import write_report
from .checks import plan, plan_evaluation
from .evaluate import evaluate_model, generate, majority_baseline, measure
from .export_stage import check_export, export_student
from .stages import baseline_stage, check_pair, student_init, student_stage, teacher_stage


def run(ctx) -> dict | None:
    """Execute a checked run (see :func:`~distiltune.pipeline.checks.plan`); returns the report
    (None on the other ranks of a distributed run)."""
    cfg, data = ctx.cfg, ctx.data
    t_start = time.perf_counter()
    set_seed(cfg.seed)
    print(f"[distiltune] data: {len(data.train)} labelled, {0 if data.unlabeled is None else len(data.unlabeled)} "
          f"unlabeled, {len(data.validation)} validation, {len(data.test)} test rows"
          + (f"; labels {data.label_names}" if data.label_names is not None or data.task_type != "causal_lm" else ""))
    if PartialState().is_main_process:
        save_config(cfg, os.path.join(ctx.out, "config.yaml"))
    teacher = teacher_stage(ctx)
    init = student_init(ctx, teacher)
    check_pair(ctx, teacher, init)
    # the same init for the baseline (its own copy of the weights; the tokenizer is shared, so its rows are encoded once)
    baseline_init = None
    if cfg.baseline and cfg.strategy != "finetune":
        baseline_init = dataclasses.replace(init, model=copy.deepcopy(init.model))
    student = student_stage(ctx, teacher, init)
    baseline = baseline_stage(ctx, teacher, baseline_init) if baseline_init is not None else None
    if not PartialState().is_main_process:
        return None  # evaluation, timing and the report: rank 0 alone (one copy, timed without a busy peer)
    results = {}
    for name, made in (("teacher", teacher), ("student", student), ("baseline_student", baseline)):
        if made is not None and made.model is not None:
            print(f"[distiltune] evaluating {name} on {len(data.test)} test rows")
            results[name] = evaluate_model(ctx, name, made.model, made.tokenizer, made.path)
    _agreement(ctx, teacher, (("student", student), ("baseline_student", baseline)), results)
    generations = generate(ctx, results)
    export_error = _export(ctx, student, results)
    measure(ctx, results)
    ctx.records.timings["total"] = time.perf_counter() - t_start
    report = write_report(ctx.out, cfg, data, results, ctx.records.timings, logs_dir=os.path.join(ctx.out, "logs"),
                          selection=ctx.records.selection, majority=majority_baseline(ctx, results),
                          generations=generations)
    if export_error is not None:
        raise DistilTuneError(f"{export_error.problem} (the run itself finished: models and report.md are in {ctx.out})",
                              export_error.fix)
    if cfg.export_settings:
        check_export(results, cfg.export_settings, os.path.join(ctx.out, "student_onnx"), ctx.task.export_kind)
    return report


def _agreement(ctx, teacher, students, results: dict) -> None:
    """The task's teacher-student agreement on the test rows (a language model's KL and top-1 agreement)."""
    if teacher is None or teacher.model is None:
        return
    for name, made in students:
        if made is not None and made.model is not None and name in results:
            test = ctx.task.encode(ctx.data.test, made.tokenizer)
            found = ctx.task.teacher_agreement(teacher.model, made.model, test, ctx.task.batcher(made.tokenizer),
                                               ctx.cfg.bf16)
            results[name].update(found or {})


def _export(ctx, student, results: dict) -> DistilTuneError | None:
    """The export stage; a failure is returned, not raised: the trained models and their report must not be lost to it."""
    if not ctx.cfg.export_settings:
        return None
    t0 = time.perf_counter()
    error = None
    try:
        export_student(ctx, student.model, student.tokenizer, student.path, results,
                       os.path.join(ctx.out, "student_onnx"), ctx.cfg.export_settings)
    except DistilTuneError as e:
        error = e
        for name in ("student_onnx", "student_int8"):
            results.pop(name, None)
    ctx.records.timings["export"] = time.perf_counter() - t0
    return error


def run_pipeline(cfg, overwrite: bool = False, resume: bool = False, callbacks: tuple = ()) -> dict | None:
    """Run the configured pipeline; returns the report dict (also written to ``output_dir``)."""
    return run(plan(cfg, overwrite=overwrite, resume=resume, callbacks=callbacks))


def evaluate_models(cfg, model_dirs: list[str], overwrite: bool = False, resume: bool = False) -> dict:
    """``distiltune evaluate``: the config's teacher (if any) and each model folder on the test split,
    in a folder of its own (evaluating <run>/student never touches the run that made it)."""
    ctx = plan_evaluation(cfg, model_dirs, os.path.join(cfg.output_dir, "evaluation"), overwrite, resume)
    results = {}
    todo = ([("teacher", cfg.teacher)] if cfg.teacher else []) + [
        ("student" if i == 0 else f"model_{i}", d) for i, d in enumerate(model_dirs)]
    for name, path in todo:
        loaded = ctx.task.load(path, name)
        if not loaded.trained:
            raise DistilTuneError(f"'{path}' is untrained (a fresh classifier head or network); its predictions would be noise",
                                  "evaluate a trained model folder (e.g. <output_dir>/student)")
        results[name] = evaluate_model(ctx, name, loaded.model, loaded.tokenizer, M.resolve_path(path))
    generations = generate(ctx, results)
    measure(ctx, results)
    save_config(cfg, os.path.join(ctx.out, "config.yaml"))
    return write_report(ctx.out, cfg, ctx.data, results, {}, generations=generations)
