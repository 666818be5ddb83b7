"""The distillation rows: labelled + unlabeled (+ seeded augmented copies), encoded for the student,
with the teacher's outputs joined from the teacher-output cache."""
from __future__ import annotations

import os

from accelerate import PartialState
from datasets import concatenate_datasets

from ..constants import IGNORE_INDEX
from ..data.teacher_cache import TeacherCache


def _augmented(ctx, rows, s_tok):
    """Seeded augmented copies of ``rows`` (made once per process and rows), or None."""
    cfg, data = ctx.cfg, ctx.data
    if not cfg.augment:
        return None
    from ..data.augment import expand

    memo = ctx.memo.setdefault("augmented_rows", {})
    if rows._fingerprint not in memo:
        print(f"[distiltune] augmenting {len(rows)} rows x {cfg.augment_factor or 1} ({', '.join(cfg.augment)}, "
              f"p={cfg.augment_prob:g}, seed {cfg.seed})")
        memo[rows._fingerprint] = expand(rows, data.text_columns, cfg.augment, cfg.augment_factor or 1, cfg.augment_prob,
                                         cfg.seed, s_tok.mask_token or s_tok.unk_token or "_", ctx.mlm_filler,
                                         float("nan") if data.task_type == "regression" else IGNORE_INDEX)
    return memo[rows._fingerprint]


def distil_rows(ctx, teacher, s_tok, t_tok, teacher_fp: str, live: bool = False) -> tuple:
    """``(rows, augmented)``: labelled + unlabeled rows encoded for the student, and how many of them
    are augmented copies. The teacher's outputs are attached once (cached) unless ``live`` or the
    cache is off: then the teacher runs every step, on its own encoding when it reads other inputs."""
    cfg, data, task = ctx.cfg, ctx.data, ctx.task
    rows = data.train if data.unlabeled is None else concatenate_datasets([data.train, data.unlabeled])
    if cfg.sequence_kd:  # the teacher's answers become the responses of the rows without gold ones
        with PartialState().main_process_first():  # one process generates; the others read its answers
            rows = task.with_teacher_answers(teacher, t_tok, rows, os.path.join(ctx.out, "cache", "answers"), teacher_fp)
    aug = _augmented(ctx, rows, s_tok)
    if aug is not None:
        rows = concatenate_datasets([rows, aug])
    n_aug = 0 if aug is None else len(aug)
    ds = task.encode(rows, s_tok)
    same = task.same_inputs(s_tok, t_tok)
    t_ds, prefix = task.teacher_inputs(ds, s_tok, t_tok, same)
    if live or not cfg.teacher_cache:
        return t_ds, n_aug
    batcher = task.batcher(s_tok, t_tok)
    columns = [f"{prefix}{k}" for k in batcher.keys if f"{prefix}{k}" in t_ds.column_names]
    cache = TeacherCache(os.path.join(ctx.out, "cache", "teacher"), teacher_fp, cfg.teacher_cache_topk,
                         "bf16" if cfg.bf16 else "fp32", form=task.cache_form())
    with PartialState().main_process_first():  # one process computes it; the others then read it
        out = cache.attach(ds, t_ds, columns, lambda r: task.teacher_outputs(teacher, r, batcher, prefix))
    if cache.built_seconds is not None:
        print(f"[distiltune] teacher labelled {len(rows)} rows once (cached in {cache.root}; reused every epoch)")
        ctx.records.timings["teacher_logits"] = cache.built_seconds
    return out, n_aug
