"""The training stages, written once over the task interface: (fine-tune the teacher) -> teacher
outputs -> (intermediate) -> distil -> (fine-tune the student) -> baseline student. Each is a
function of the run's state (:class:`~distiltune.pipeline.context.RunContext`) and returns what
it made; a finished stage whose inputs are unchanged is reused on --resume."""
from __future__ import annotations

import copy
import os
from dataclasses import dataclass
from typing import Any

from transformers import set_seed

from ..config.keys import PLATEAU_KEYS, TEACHER_KEYS
from ..losses.objective import describe, logits_only, needs, token_terms_error
from ..models import hf as M
from ..training.trainer import finetune_objective
from .distil_rows import distil_rows
from .train import resuming, run_fp, save_model, train_fp, train_stage


@dataclass
class Made:
    """A model a stage produced or reused: the network, its tokenizer, its folder, and what identifies it."""

    model: Any
    tokenizer: Any
    path: str | None
    fp: str | None = None
    how: str = ""


def teacher_stage(ctx) -> Made:
    """The task-trained teacher: given, or fine-tuned here on the labelled rows (reused when unchanged)."""
    cfg, task, data = ctx.cfg, ctx.task, ctx.data
    if not cfg.teacher:
        return Made(None, None, None)
    loaded = task.load(cfg.teacher, "teacher")
    if cfg.finetune_teacher == "no" and not loaded.trained:
        raise M.untrained_teacher(cfg.teacher)
    if cfg.finetune_teacher == "no" or (cfg.finetune_teacher == "auto" and loaded.trained):
        path = M.resolve_path(cfg.teacher)
        return Made(loaded.model, loaded.tokenizer, path, M.weights_fingerprint(path),
                    f"given ({cfg.teacher}), not fine-tuned here")
    path = os.path.join(ctx.out, "teacher")
    plateau = cfg.teacher_stop == "plateau"  # then the validation rows choose its epoch too
    fp = train_fp(ctx, {k: getattr(cfg, k) for k in TEACHER_KEYS}, data.fingerprint(("train", "validation") if plateau else ("train",)))
    epochs = cfg.teacher_max_epochs if plateau else cfg.teacher_num_train_epochs
    how = f"{cfg.teacher} fine-tuned on {len(data.train)} labelled rows, " + (
        f"until its validation {data.metric} stopped improving (at most {epochs:g} epochs)" if plateau else f"{epochs:g} epochs")
    tok = loaded.tokenizer
    if ctx.book.done("teacher", fp, path):
        print(f"[distiltune] reusing the fine-tuned teacher in {path} (inputs unchanged)")
        ctx.records.timings["teacher"] = ctx.book.info("teacher").get("seconds", 0.0)
        return Made(task.load_trained(path, "teacher"), tok, path, fp, how)
    print(f"[distiltune] fine-tuning the teacher on {len(data.train)} labelled rows")
    set_seed(cfg.seed)
    task.freeze(loaded.model)
    model = train_stage(ctx, "teacher", fp, loaded.model, tok, task.encode(data.train, tok), finetune_objective(),
                        epochs, cfg.teacher_learning_rate, plateau=plateau)
    model.requires_grad_(True)
    save_model(ctx, model, tok, "teacher", how)
    ctx.book.mark("teacher", fp, seconds=ctx.records.timings["teacher"])
    return Made(model, tok, path, fp, how)


def student_init(ctx, teacher: Made) -> Made:
    """The student before training: some of the teacher's layers, or a pretrained model (same seed
    for the distilled and the baseline student, so both start from the same head)."""
    cfg = ctx.cfg
    set_seed(cfg.seed)
    if cfg.student == "from_teacher":
        student, layers = ctx.task.student_from_teacher(teacher.model, cfg.student_layers)
        return Made(student, teacher.tokenizer, None, how=f"layers {layers} of the teacher")
    loaded = ctx.task.load(cfg.student, "student")
    return Made(loaded.model, loaded.tokenizer, None, how=f"pretrained {cfg.student}")


def use_eager_attention(models) -> list:
    """Attention maps need the eager implementation (SDPA returns none); returns what to restore."""
    restore = []
    for model in models:
        impl = getattr(getattr(model, "config", None), "_attn_implementation", "eager")
        if impl != "eager":
            model.set_attn_implementation("eager")  # saved models keep their default
            restore.append((model, impl))
    return restore


def prepare_terms(ctx, teacher: Made, init: Made) -> tuple[dict, list]:
    """The objectives, checked against the models before training: token-level terms need one
    tokenisation; attention-map terms need eager attention. Returns (objectives, what to restore)."""
    objectives = ctx.cfg.objectives
    every = objectives["intermediate"] + objectives["main"]
    if not ctx.task.same_inputs(init.tokenizer, teacher.tokenizer) and needs(every, "token_level"):
        raise token_terms_error(every)
    restore = use_eager_attention((teacher.model, init.model)) if needs(every, "reads_attentions") else []
    return objectives, restore


def _distil(ctx, teacher: Made, init: Made, fp: str):
    """intermediate -> distil -> (student fine-tune); returns the student and how it was made."""
    cfg, data, s_tok = ctx.cfg, ctx.data, init.tokenizer
    # sequence-level KD across tokenizers: the teacher's answers are the only signal, learnt by cross-entropy
    answers_only = cfg.sequence_kd and not ctx.task.same_inputs(s_tok, teacher.tokenizer)
    objectives, restore = ({"intermediate": [], "main": finetune_objective()}, []) if answers_only else \
        prepare_terms(ctx, teacher, init)
    online = cfg.online_teacher_lr is not None  # the teacher adapts while it teaches: no cache, its own copy
    live = online or answers_only or not all(logits_only(objectives["intermediate"] + objectives["main"]))
    rows, augmented = distil_rows(ctx, teacher.model, s_tok, teacher.tokenizer, teacher.fp, live=live)
    model = init.model
    staged = objectives["intermediate"] and cfg.intermediate_epochs > 0
    if staged and not resuming(ctx, "distill", fp):
        print(f"[distiltune] intermediate stage: {', '.join(n for n, *_ in objectives['intermediate'])} "
              f"for {cfg.intermediate_epochs:g} epochs")
        model = train_stage(ctx, "intermediate", fp, model, s_tok, rows, objectives["intermediate"], cfg.intermediate_epochs,
                            cfg.learning_rate, teacher=teacher.model, teacher_tokenizer=teacher.tokenizer,
                            temperature=cfg.temperature_sched)  # a kd term here is softened like the main stage's
    plateau = cfg.distill_stop == "plateau"
    teaching = copy.deepcopy(teacher.model) if online else teacher.model  # the report keeps the fine-tuned teacher
    model = train_stage(ctx, "distill", fp, model, s_tok, rows, objectives["main"], cfg.distill_epochs, cfg.learning_rate,
                        teacher=None if answers_only else teaching, teacher_tokenizer=teacher.tokenizer,
                        temperature=cfg.temperature_sched,
                        plateau=plateau, schedule_epochs=cfg.num_train_epochs, online_teacher_lr=cfg.online_teacher_lr)
    if online:
        del teaching
    aug = f", {augmented} augmented" if augmented else ""
    length = (f"until its validation {data.metric} stopped improving (at most {cfg.distill_epochs:g} epochs)" if plateau
              else f"for {cfg.num_train_epochs:g} epochs")
    how = (f"{init.how}, distilled from the teacher on {len(rows)} rows ({len(data.train)} labelled{aug}) {length}, "
           f"T {cfg.temperature_sched}, loss {describe(objectives['main'])}")
    if cfg.sequence_kd:
        how += ("; the teacher answered the other prompts by generation (sequence-level KD)" +
                (", learnt by cross-entropy alone (another tokenizer)" if answers_only else ""))
    if online:
        how += f"; the teacher kept fine-tuning on the labelled rows at {cfg.online_teacher_lr:g} while it taught"
    if staged:
        how += f"; after {cfg.intermediate_epochs:g} intermediate epochs of {describe(objectives['intermediate'])}"
    if cfg.strategy == "distill_finetune" and cfg.final_finetune_epochs > 0:
        model = train_stage(ctx, "student_finetune", fp, model, s_tok, ctx.task.encode(data.train, s_tok),
                            finetune_objective(), cfg.final_finetune_epochs, cfg.learning_rate)
        how += f"; then {cfg.final_finetune_epochs:g} hard-label epochs"
    for m, impl in restore:  # back to the models' own attention, so they are timed as deployed
        m.set_attn_implementation(impl)
    return model, how


STUDENT_STAGES = ("intermediate", "distill", "student_finetune", "student")


def student_stage(ctx, teacher: Made, init: Made) -> Made:
    """The student: fine-tuned (strategy finetune) or distilled, reused when its inputs are unchanged."""
    cfg, data, task = ctx.cfg, ctx.data, ctx.task
    splits = ("train", "unlabeled", "validation") if cfg.distill_stop == "plateau" else ("train", "unlabeled")
    fp = run_fp(ctx, teacher.fp, data.fingerprint(splits))
    path = os.path.join(ctx.out, "student")
    if ctx.book.done("student", fp, path):
        print(f"[distiltune] reusing the student in {path} (inputs unchanged)")
        return Made(task.load_trained(path, "student"), init.tokenizer, path, fp)
    if cfg.strategy == "finetune":
        task.freeze(init.model)
        model = train_stage(ctx, "student", fp, init.model, init.tokenizer, task.encode(data.train, init.tokenizer),
                            finetune_objective(), cfg.num_train_epochs, cfg.learning_rate)
        save_model(ctx, model, init.tokenizer, "student", f"{init.how}, fine-tuned on {len(data.train)} labelled rows")
    else:
        model, how = _distil(ctx, teacher, init, fp)
        save_model(ctx, model, init.tokenizer, "student", how, stages=STUDENT_STAGES[:3])
    ctx.book.mark("student", fp, seconds=sum(ctx.records.timings.get(k, 0) for k in STUDENT_STAGES))
    return Made(model, init.tokenizer, path, fp)


def baseline_stage(ctx, teacher: Made, init: Made) -> Made:
    """The same student init fine-tuned on the labelled rows alone, same epochs: what distillation bought."""
    cfg, data, task = ctx.cfg, ctx.data, ctx.task
    path = os.path.join(ctx.out, "baseline_student")
    plateau = cfg.distill_stop == "plateau"  # the same stopping rule and ceiling as the student's distillation
    epochs = cfg.distill_epochs + (cfg.final_finetune_epochs if cfg.strategy == "distill_finetune" else 0)
    origin = teacher.fp if cfg.student == "from_teacher" else cfg.student
    stop = {k: getattr(cfg, k) for k in PLATEAU_KEYS} if plateau else None
    fp = train_fp(ctx, origin, cfg.student_layers, epochs, cfg.learning_rate, data.fingerprint(("train", "validation") if plateau else ("train",)), stop)
    if ctx.book.done("baseline_student", fp, path):
        return Made(task.load_trained(path, "baseline student"), init.tokenizer, path, fp)
    model = train_stage(ctx, "baseline_student", fp, init.model, init.tokenizer, task.encode(data.train, init.tokenizer),
                        finetune_objective(), epochs, cfg.learning_rate, plateau=plateau)
    length = (f"until its validation {data.metric} stopped improving (at most {epochs:g} epochs)" if plateau
              else f"for {epochs:g} epochs")
    save_model(ctx, model, init.tokenizer, "baseline_student",
               f"{init.how}, fine-tuned on the {len(data.train)} labelled rows alone {length} "
               "(same init, epoch budget and stopping rule as the student, no teacher): the no-distillation baseline")
    ctx.book.mark("baseline_student", fp, seconds=ctx.records.timings["baseline_student"])
    return Made(model, init.tokenizer, path, fp)


def check_pair(ctx, teacher: Made, init: Made) -> None:
    if teacher.model is not None and init.model is not None:
        ctx.task.check_pair(teacher.model, init.model)

