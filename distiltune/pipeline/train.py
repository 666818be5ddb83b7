"""One training stage is one DistillationTrainer run; finished models are written atomically."""
from __future__ import annotations

import dataclasses
import json
import os
import shutil
import time

from accelerate import PartialState

from ..config.io import to_yaml_dict
from ..config.keys import NOT_IN_FINGERPRINT, TRAIN_KEYS
from ..errors import DistilTuneError
from ..models import hf as M
from ..report.build import write_atomic
from ..report.card import model_card
from ..training import checkpoints as CK
from ..training.callbacks import EpochTimer, PlateauStop
from ..training.trainer import DistillationTrainer
from .outputs import fingerprint


def run_fp(ctx, *extra) -> str:
    """Identifies a stage by every config key that shapes its result, plus ``extra``."""
    d = {k: v for k, v in to_yaml_dict(ctx.cfg).items() if k not in NOT_IN_FINGERPRINT}
    return fingerprint(d, *extra)


def train_fp(ctx, *extra) -> str:
    """Identifies a training stage by the settings that shape any training, plus ``extra``."""
    return fingerprint({k: getattr(ctx.cfg, k) for k in TRAIN_KEYS}, *extra)


def training_args(ctx, stage: str, plateau: bool = False, **changes):
    """The stage's TrainingArguments: the run's, with its own output folder and the task's needs. A
    stage that stops on a plateau validates and saves every epoch and keeps its best checkpoint."""
    cfg = ctx.cfg
    os.environ["TENSORBOARD_LOGGING_DIR"] = os.path.join(ctx.out, "tensorboard", stage)
    if plateau:
        changes.update(eval_strategy="epoch", save_strategy="epoch", load_best_model_at_end=True,
                       restore_callback_states_from_checkpoint=True)  # the patience counter survives a resume
    if (plateau or cfg.load_best_model_at_end) and cfg.best_metric_is_task_metric:
        changes.setdefault("metric_for_best_model", ctx.data.metric)
        changes.setdefault("greater_is_better", True)  # accuracy, f1, matthews, pearson, spearman
    for key, value in ctx.task.training_overrides().items():
        changes.setdefault(key, value)
    # Stages run for epochs: a max_steps meant for one stage must not cut the others short.
    return dataclasses.replace(cfg, output_dir=os.path.join(ctx.out, "checkpoints", stage),
                               remove_unused_columns=False, max_steps=-1, **changes)


def planned_steps(rows: int, batch: int, accumulation: int, epochs: float) -> int:
    """Optimiser steps a stage plans: batches per epoch (the last one partial), over accumulation, times epochs."""
    per_epoch = max(1, -(-rows // max(batch, 1)) // max(accumulation, 1))
    return max(1, int(per_epoch * epochs))


def logging_every(logging_steps: float, steps: int) -> float:
    """``logging_steps``, or more often where a stage is short: at least 20 logged losses a stage, so the
    report's curves and its still-falling-loss diagnostic (8 points at least) see the stage's shape. A
    ratio of the stage (below 1) is kept as given."""
    if logging_steps < 1:
        return logging_steps
    return min(logging_steps, max(1, steps // 20))


def resuming(ctx, stage: str, fp: str) -> bool:
    """Whether --resume will continue ``stage`` from a checkpoint made with the same inputs
    (then the stages before it need not run again)."""
    ckpt = os.path.join(ctx.out, "checkpoints", stage)
    stamp = os.path.join(ckpt, "fingerprint")
    return (ctx.resume and os.path.isfile(stamp) and open(stamp).read() == fp
            and CK.last_complete(ckpt) is not None)


def _stamp(args, fp: str) -> None:
    """A stage's checkpoints are kept only while its inputs (``fp``) are unchanged."""
    stamp = os.path.join(args.output_dir, "fingerprint")
    state = PartialState()
    if state.is_main_process:
        if os.path.isdir(args.output_dir) and (not os.path.isfile(stamp) or open(stamp).read() != fp):
            shutil.rmtree(args.output_dir)
        os.makedirs(args.output_dir, exist_ok=True)
        write_atomic(stamp, fp)
    state.wait_for_everyone()


def _last_checkpoint(ctx, stage: str, args) -> str | None:
    if not ctx.resume:
        return None
    state = PartialState()
    dropped = CK.discard_incomplete(args.output_dir) if state.is_main_process else []
    state.wait_for_everyone()
    if dropped:
        print(f"[distiltune] {stage}: removed incomplete checkpoint(s) {', '.join(dropped)} (cut short by a kill)")
    last = CK.last_complete(args.output_dir)
    if last:
        print(f"[distiltune] {stage}: resuming from {os.path.relpath(last, ctx.out)}")
    return last


def _callbacks(ctx, plateau: bool) -> list:
    callbacks = [EpochTimer(), *ctx.callbacks]
    if plateau:
        callbacks.append(PlateauStop(ctx.cfg.plateau_patience, min_epochs=ctx.cfg.plateau_min_epochs))
    return callbacks


def train_stage(ctx, stage: str, fp: str, model, tokenizer, train_ds, objective, epochs: float, lr: float,
                teacher=None, teacher_tokenizer=None, temperature=None, plateau: bool = False,
                schedule_epochs: float | None = None, online_teacher_lr: float | None = None):
    """One Trainer run. With --resume it continues from the stage's last checkpoint, but only if
    that checkpoint was made with the same inputs (``fp``); otherwise it starts afresh. With
    ``plateau`` the stage runs at most ``epochs`` and stops on a validation plateau (keeping its
    best checkpoint); the loss schedules span ``schedule_epochs`` (default ``epochs``)."""
    task = ctx.task
    cfg = ctx.cfg
    steps = planned_steps(len(train_ds), cfg.per_device_train_batch_size * PartialState().num_processes,
                          cfg.gradient_accumulation_steps, epochs)
    args = training_args(ctx, stage, plateau=plateau, num_train_epochs=epochs, learning_rate=lr,
                         logging_steps=logging_every(cfg.logging_steps, steps))
    _stamp(args, fp)
    evaluating = str(getattr(args.eval_strategy, "value", args.eval_strategy)) != "no"
    if evaluating and len(ctx.data.validation) == 0:  # checked before the run began (checks.check_validation)
        raise DistilTuneError(f"{stage}: validation during training needs validation rows, but the validation split "
                              "is empty", "give validation_file, or a validation_size > 0")
    callbacks = _callbacks(ctx, plateau)
    lora = ctx.cfg.lora_settings["teacher" if stage == "teacher" else "student"]  # the baseline trains as the student
    if lora is not None:
        from ..models.lora import trainable_share, with_lora

        model = with_lora(model, lora, ctx.data.task_type)
        n, total = trainable_share(model)
        print(f"[distiltune] {stage}: LoRA r={lora['r']}, alpha={lora['alpha']:g} on {lora['target_modules']}: "
              f"{n:,} of {total:,} parameters trained ({n / total:.2%})")
    trainer = DistillationTrainer(model=model, args=args, train_dataset=train_ds,
                                  data_collator=task.collator(tokenizer, teacher_tokenizer),
                                  processing_class=tokenizer, teacher=teacher, objective=objective, temperature=temperature,
                                  eval_dataset=task.encode(ctx.data.validation, tokenizer) if evaluating else None,
                                  compute_metrics=task.compute_metrics if evaluating else None, callbacks=callbacks,
                                  preprocess_logits_for_metrics=task.preprocess_logits if evaluating else None,
                                  schedule_epochs=schedule_epochs, online_teacher_lr=online_teacher_lr)
    last = _last_checkpoint(ctx, stage, args)
    t0 = time.perf_counter()
    trainer.train(resume_from_checkpoint=last)
    ctx.records.timings[stage] = time.perf_counter() - t0
    ctx.records.epoch_seconds[stage] = callbacks[0].seconds
    if trainer.is_world_process_zero():  # the report's training curves
        logs = os.path.join(ctx.out, "logs")
        os.makedirs(logs, exist_ok=True)
        write_atomic(os.path.join(logs, f"{stage}.json"), json.dumps(trainer.state.log_history))
    if args.load_best_model_at_end:
        ctx.records.selection[stage] = checkpoint_choice(trainer.state, args.metric_for_best_model, epochs)
    if lora is not None:  # the adapters merged into the weights: the next stage reads a plain model
        from ..models.lora import merged

        return merged(M.plain_model(trainer.model))
    return M.plain_model(trainer.model)


def checkpoint_choice(state, metric: str, epochs_planned: float) -> dict:
    """Which checkpoint a stage kept: the best validation score, its epoch, and whether it stopped early."""
    key = metric if metric.startswith("eval_") else f"eval_{metric}"
    step = int(state.best_model_checkpoint.rsplit("-", 1)[-1]) if state.best_model_checkpoint else None
    at = next((e for e in state.log_history if e.get("step") == step and key in e), {})
    return {"metric": key[5:], "best": state.best_metric, "best_step": step, "best_epoch": at.get("epoch"),
            "epochs_run": round(state.epoch or 0.0, 3), "epochs_planned": epochs_planned,
            "stopped_early": (state.epoch or 0.0) < epochs_planned - 1e-6,
            "evaluations": [e[key] for e in state.log_history if key in e]}


def save_model(ctx, model, tokenizer, name: str, how: str, stages: tuple[str, ...] = ()) -> str:
    """Write the final model folder, then drop the finished stages' resume checkpoints (GBs for a teacher)."""
    path = os.path.join(ctx.out, name)
    state = PartialState()
    if state.is_main_process:  # every rank holds the same weights (DDP): one writes them
        with open(os.path.join(ctx.out, "config.yaml")) as f:  # the resolved run config travels with the model
            config_text = f.read()
        ctx.task.save(model, tokenizer, path, model_card(name, how, ctx.cfg, ctx.data, ctx.task.pipeline_tag),
                      {"distiltune_config.yaml": config_text})
        for stage in stages or (name,):
            shutil.rmtree(os.path.join(ctx.out, "checkpoints", stage), ignore_errors=True)
    state.wait_for_everyone()
    return path
