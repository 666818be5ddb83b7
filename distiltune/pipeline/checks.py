"""A run is planned, checked, then executed: :func:`plan` resolves the task and its data, checks
everything that needs no training (config, output folder, data, the models' files and label sets,
the loss terms against weightless copies of the models, free disk) and reports every problem at
once, one line each with its fix. Only when all pass does it touch the output folder."""
from __future__ import annotations

import os
import shutil

from accelerate import PartialState

from ..errors import DistilTuneError, Problems
from .context import RunContext
from .outputs import StageBook, check_output_dir, prepare_output_dir


def check_config(cfg, problems: Problems) -> None:
    """What the config alone must satisfy for any task."""
    with problems.check():
        if cfg.strategy in ("distill", "distill_finetune") and not cfg.teacher:
            raise DistilTuneError(f"strategy '{cfg.strategy}' needs a teacher", "set teacher: <model folder or hub name>")
    with problems.check():
        if not cfg.student:
            raise DistilTuneError("no student given", "set student: <model folder or hub name>, or student: from_teacher")
        if cfg.student == "from_teacher" and not cfg.teacher:
            raise DistilTuneError("student: from_teacher needs a teacher", "set teacher, or name a pretrained student")
    with problems.check():
        # here, not in the config's own checks: a stage's arguments are the config with its own num_train_epochs
        if cfg.distill_stop == "plateau" and cfg.distill_max_epochs is not None and cfg.distill_max_epochs < cfg.num_train_epochs:
            raise DistilTuneError(f"distill_max_epochs={cfg.distill_max_epochs:g} is below num_train_epochs="
                                  f"{cfg.num_train_epochs:g}, the length the schedules span",
                                  "raise distill_max_epochs or lower num_train_epochs")
    with problems.check():
        if cfg.online_teacher_lr is not None and cfg.strategy == "finetune":
            raise DistilTuneError("online_teacher_lr is set but strategy 'finetune' has no distillation for the teacher "
                                  "to adapt in", "use strategy distill or distill_finetune, or drop online_teacher_lr")
    with problems.check():
        if cfg.export_settings:  # before hours of training, not after
            from ..export.onnx import require_runtime

            require_runtime()


def check_validation(cfg, task) -> None:
    """Stages that validate while they train (a plateau stop, or the user's eval_strategy) need validation rows."""
    asks = []
    if cfg.teacher_stop == "plateau" and task.fine_tunes_teacher():
        asks.append("teacher_stop: plateau")
    if cfg.distill_stop == "plateau" and cfg.strategy != "finetune":
        asks.append("distill_stop: plateau")
    if str(getattr(cfg.eval_strategy, "value", cfg.eval_strategy)) != "no":
        asks.append(f"eval_strategy: {getattr(cfg.eval_strategy, 'value', cfg.eval_strategy)}")
    if asks and len(task.data.validation) == 0:
        fixed = " and ".join(f"{a.split(':')[0]}: fixed" for a in asks if "_stop" in a)
        raise DistilTuneError(f"{' and '.join(asks)} validate during training, but the validation split is empty",
                              "give validation_file, or a validation_size > 0" + (f", or set {fixed}" if fixed else ""))


def load_mlm_filler(cfg):
    """The masked LM of augment 'mlm', loaded (with its head) before any training, or None."""
    if not (cfg.augment and "mlm" in cfg.augment and cfg.strategy != "finetune" and (cfg.teacher or cfg.augment_mlm_model)):
        return None
    from ..data.augment import MLMFiller

    return MLMFiller(cfg.augment_mlm_model or cfg.teacher)


def check_disk(out: str, need: int) -> None:
    """Refuse a run whose checkpoints would not fit on output_dir's disk."""
    probe = os.path.abspath(out)
    while not os.path.exists(probe):
        probe = os.path.dirname(probe)
    free = shutil.disk_usage(probe).free
    if need > free:
        raise DistilTuneError(
            f"output_dir's disk has {free / 1e9:.2f} GB free but this run's checkpoints and models need about "
            f"{need / 1e9:.2f} GB", "free disk space, lower save_total_limit, or point output_dir to a larger disk")


def disk_needed(cfg, task) -> int:
    """Bytes the run writes at its peak: a stage's checkpoints (weights + two Adam moments each)
    beside the final teacher, student and baseline folders. Unknown sizes (hub names) count 0."""
    t = task.weights_bytes("teacher") or 0
    s = task.weights_bytes("student")
    s = s if s is not None else t // 2  # from_teacher: part of its layers
    saving = str(getattr(cfg.save_strategy, "value", cfg.save_strategy)) != "no"
    per_stage = 3 * max(t if cfg.finetune_teacher != "no" else 0, s) * ((cfg.save_total_limit or 3) if saving else 0)
    return per_stage + t + 2 * s


def build_task(cfg, problems: Problems, data=None):
    """The task of ``cfg`` over its data (loaded unless given), or None when either check failed."""
    from ..tasks import task_class

    cls = None
    with problems.check():
        cls = task_class(cfg)
    if cls is None:
        return None
    if cfg.temperature is None:  # the task's own default, fixed before any schedule or fingerprint reads it
        cfg.temperature = cls.default_temperature
    cls.check_config(cfg, problems)
    if cfg.sequence_kd and cls.name != "causal_lm":
        problems.found.append(DistilTuneError(f"sequence_kd has the teacher answer prompts by generation, but the task is "
                                              f"{cls.name}", "remove sequence_kd (it is for task_type causal_lm)"))
    if cfg.teacher_cache_tail_samples and cls.name != "causal_lm":
        problems.found.append(DistilTuneError(f"teacher_cache_tail_samples draws from a language model's vocabulary "
                                              f"tail, but the task is {cls.name}",
                                              "remove teacher_cache_tail_samples (it is for task_type causal_lm)"))
    if cfg.student_lora and cfg.strategy != "finetune":
        with problems.check():
            from ..losses.objective import logits_only

            if not all(logits_only(cfg.objectives["intermediate"] + cfg.objectives["main"])):
                raise DistilTuneError("student_lora: feature and attention terms read the student's layers, which LoRA "
                                      "wraps", "distil a LoRA student on logit terms alone, or remove student_lora")
    with problems.check():
        return cls(cfg, data if data is not None else cls.load_data(cfg))
    return None


def plan(cfg, overwrite: bool = False, resume: bool = False, out: str | None = None, data=None,
         callbacks: tuple = ()) -> RunContext:
    """Check everything, then prepare the run folder; returns the run's state. ``data`` (a
    :class:`~distiltune.data.load.TaskData`) replaces loading the config's data."""
    out = out or cfg.output_dir
    P = Problems()
    state = PartialState()
    if state.is_main_process:  # the other ranks would see rank 0's new files
        with P.check():
            check_output_dir(out, overwrite, resume)
    check_config(cfg, P)
    mlm = None
    with P.check():
        mlm = load_mlm_filler(cfg)
    task = build_task(cfg, P, data)
    if task is not None:
        task.check_models(P)
        with P.check():
            check_validation(cfg, task)
        if not P.found and cfg.strategy != "finetune" and cfg.teacher:  # terms are checked against models that load
            objectives = cfg.objectives
            task.check_terms(objectives["intermediate"] + objectives["main"], P)
        with P.check():
            check_disk(out, disk_needed(cfg, task))
    P.raise_all()
    if state.is_main_process:  # only rank 0 clears and writes the output folder
        prepare_output_dir(out, overwrite, resume)
    state.wait_for_everyone()
    book = StageBook(out, reuse=resume, write=state.is_main_process)
    return RunContext(cfg=cfg, task=task, out=out, resume=resume, book=book, callbacks=tuple(callbacks), mlm_filler=mlm)


def open_task(cfg):
    """The task and data of ``cfg`` for work on finished models (``distiltune export``): checked, no run folder."""
    P = Problems()
    task = build_task(cfg, P)
    P.raise_all()
    return RunContext(cfg=cfg, task=task, out=None)


def check_model_folders(model_dirs: list[str], problems: Problems) -> None:
    """``evaluate --model`` names folders: a missing one is 'folder not found', not a hub lookup."""
    from ..models.hf import resolve_path

    for d in model_dirs:
        with problems.check():
            if not os.path.isdir(resolve_path(d)):
                raise DistilTuneError(f"--model {d}: folder not found",
                                      "pass the folder of a trained model, e.g. <output_dir>/student")


def plan_evaluation(cfg, model_dirs: list[str], out: str, overwrite: bool = False, resume: bool = False) -> RunContext:
    """``distiltune evaluate``: the output folder, the model folders and the data are checked before anything is written."""
    P = Problems()
    with P.check():
        check_output_dir(out, overwrite, resume)
    check_model_folders(model_dirs, P)
    task = build_task(cfg, P)
    P.raise_all()
    prepare_output_dir(out, overwrite, resume)
    return RunContext(cfg=cfg, task=task, out=out, resume=resume)
