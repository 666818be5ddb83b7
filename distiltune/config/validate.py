"""Validation of the config's values: each rule one message naming the value and its fix. Run by
``DistillConfig.__post_init__``; nothing here builds runtime objects."""
from __future__ import annotations

from .fields import GROUPS


class ConfigError(ValueError):
    """Invalid config values, one message per problem (``problems``); ``str()`` joins them with '; '."""

    def __init__(self, problems: list[str]):
        self.problems = list(problems)
        super().__init__("; ".join(self.problems))


def check_values(cfg) -> list[str]:
    """Every range and combination rule on the config's values; one message per problem."""
    errors = []
    for name in ("distill_weight", "distill_weight_end"):
        v = getattr(cfg, name)
        if v is not None and not 0.0 <= v <= 1.0:
            errors.append(f"{name}={v} is outside [0, 1]; set it between 0 and 1")
    for v in cfg.distill_weight_values or []:
        if not 0.0 <= v <= 1.0:
            errors.append(f"distill_weight_values contains {v}, outside [0, 1]; use weights between 0 and 1")
    for name in ("temperature", "temperature_end"):
        v = getattr(cfg, name)
        if v is not None and not v > 0:
            errors.append(f"{name}={v} must be > 0; use a positive temperature such as 2.0")
    for v in cfg.temperature_values or []:
        if not v > 0:
            errors.append(f"temperature_values contains {v}; every temperature must be > 0")
    for name in ("num_labeled", "max_unlabeled", "max_validation_samples", "max_test_samples"):
        v = getattr(cfg, name)
        if v is not None and v < 1:
            errors.append(f"{name}={v} must be >= 1 (or leave it unset)")
    for name in ("num_train_epochs", "teacher_num_train_epochs", "learning_rate", "teacher_learning_rate"):
        if not getattr(cfg, name) > 0:
            errors.append(f"{name}={getattr(cfg, name)} must be > 0")
    from ..data.augment import check_options as check_augment

    errors += check_augment(cfg.augment, cfg.augment_factor, cfg.augment_prob)
    if cfg.online_teacher_lr is not None and not cfg.online_teacher_lr > 0:
        errors.append(f"online_teacher_lr={cfg.online_teacher_lr} must be > 0 (e.g. 1e-5), or leave it unset for a "
                      "fixed teacher")
    if cfg.teacher_cache_topk is not None and cfg.teacher_cache_topk < 1:
        errors.append(f"teacher_cache_topk={cfg.teacher_cache_topk} must be >= 1 (or leave it unset for full logits)")
    if cfg.teacher_cache_tail_samples is not None and cfg.teacher_cache_tail_samples < 0:
        errors.append(f"teacher_cache_tail_samples={cfg.teacher_cache_tail_samples} must be >= 0 (0: no tail samples; "
                      "default 10)")
    errors += check_generation(cfg)
    for name in ("latency_samples", "throughput_batch_size", "per_device_train_batch_size"):
        if getattr(cfg, name) < 1:
            errors.append(f"{name}={getattr(cfg, name)} must be >= 1")
    if not cfg.grad_spike_factor >= 0:
        errors.append(f"grad_spike_factor={cfg.grad_spike_factor} must be >= 0 (0 turns the check off)")
    if cfg.max_length < 8:
        errors.append(f"max_length={cfg.max_length} is too small; use at least 8 tokens")
    if cfg.freeze_layers < 0:
        errors.append(f"freeze_layers={cfg.freeze_layers} must be >= 0")
    errors += check_stopping(cfg)
    if cfg.intermediate_epochs < 0:
        errors.append("intermediate_epochs must be >= 0")
    if cfg.final_finetune_epochs < 0:
        errors.append("final_finetune_epochs must be >= 0")
    for name in ("validation_size", "test_size"):
        if getattr(cfg, name) < 0:
            errors.append(f"{name} must be >= 0 (fraction < 1 or a row count)")
    if cfg.student_layers is not None and len(cfg.student_layers) == 0:
        errors.append("student_layers is empty; list at least one teacher layer index")
    errors += check_data_options(cfg)
    errors += check_training_ranges(cfg)
    return errors


def check_stopping(cfg) -> list[str]:
    """The plateau rule's patience, floor and ceilings (whether there are validation rows to stop on is
    known once the data is loaded: pipeline.checks.check_validation)."""
    errors = []
    if cfg.plateau_patience < 1:
        errors.append(f"plateau_patience={cfg.plateau_patience} must be >= 1: the epochs without a better validation "
                      "metric before a stage stops (e.g. 2)")
    if cfg.plateau_min_epochs < 0:
        errors.append(f"plateau_min_epochs={cfg.plateau_min_epochs} must be >= 0")
    ceilings = []
    if cfg.teacher_stop == "plateau":
        ceilings.append(("teacher_max_epochs", cfg.teacher_max_epochs))
    if cfg.distill_stop == "plateau" and cfg.distill_max_epochs is not None:
        ceilings.append(("distill_max_epochs", cfg.distill_max_epochs))  # against num_train_epochs: checks.check_config
    for name, ceiling in ceilings:
        if not ceiling > 0:
            errors.append(f"{name}={ceiling:g} must be > 0")
        elif ceiling < cfg.plateau_min_epochs:
            errors.append(f"{name}={ceiling:g} is below the floor plateau_min_epochs={cfg.plateau_min_epochs:g}; raise "
                          f"{name} or lower plateau_min_epochs")
    return errors


def check_data_options(cfg) -> list[str]:
    """Values that the data loader would take silently in a wrong sense, or crash on mid-load."""
    errors = []
    if isinstance(cfg.output_dir, str) and not cfg.output_dir.strip():
        errors.append(f"output_dir={cfg.output_dir!r} is empty; give the folder the run writes to, e.g. runs/my_run")
    roles = ([("input_column", cfg.input_column)] if cfg.input_column else
             [("text_column", cfg.text_column), ("text_pair_column", cfg.text_pair_column)])
    seen: dict = {}
    for role, col in roles + [("label_column", cfg.label_column)]:
        if col is None:
            continue
        if col in seen:
            errors.append(f"{role}={col!r} is also the {seen[col]}; give each of them its own column")
        else:
            seen[col] = role
    for name in ("validation_size", "test_size"):
        v = getattr(cfg, name)
        if v >= 1 and not float(v).is_integer():
            errors.append(f"{name}={v} is neither a fraction below 1 nor a whole row count; use e.g. 0.1 "
                          f"(that share of train) or 100 (rows)")
    return errors

def check_training_ranges(cfg) -> list[str]:
    """TrainingArguments values that, out of range, pass TrainingArguments' own checks but fail only
    mid-run (after the output folder is written) or make the run do something else than asked."""
    errors = []

    def value(v):
        return str(getattr(v, "value", v))  # enums once TrainingArguments has converted them (replace)

    for name in ("gradient_accumulation_steps", "per_device_eval_batch_size"):
        if getattr(cfg, name) < 1:
            errors.append(f"{name}={getattr(cfg, name)} must be >= 1")
    for name in ("seed", "data_seed"):
        v = getattr(cfg, name)
        if v is not None and not 0 <= v <= 2 ** 32 - 1:
            errors.append(f"{name}={v} must be between 0 and 4294967295 (2**32 - 1), the seeds numpy accepts")
    for name in ("eval_accumulation_steps", "dataloader_prefetch_factor"):
        v = getattr(cfg, name)
        if v is not None and v < 1:
            errors.append(f"{name}={v} must be >= 1 (or leave it unset)")
    for name, strategy in (("logging_steps", "logging_strategy"), ("eval_steps", "eval_strategy"),
                           ("save_steps", "save_strategy")):
        v = getattr(cfg, name)
        if v is not None and (v < 0 or v == 0 and name != "eval_steps" and value(getattr(cfg, strategy)) == "steps"):
            errors.append(f"{name}={v} must be > 0: a step count (>= 1) or a share of the training steps (< 1)")
    for name, note in (("warmup_steps", ""), ("weight_decay", ""), ("max_grad_norm", " (0 turns clipping off)"),
                       ("adam_epsilon", "")):
        v = getattr(cfg, name)
        if v < 0:
            errors.append(f"{name}={v} must be >= 0{note}")
    for name in ("adam_beta1", "adam_beta2"):
        v = getattr(cfg, name)
        if not 0 <= v < 1:
            errors.append(f"{name}={v} must be in [0, 1), e.g. 0.9 or 0.999")
    if cfg.dataloader_num_workers is not None and cfg.dataloader_num_workers < -1:
        errors.append(f"dataloader_num_workers={cfg.dataloader_num_workers} must be >= 0 (or -1 for auto)")
    if cfg.save_total_limit is not None and cfg.save_total_limit < 0:
        errors.append(f"save_total_limit={cfg.save_total_limit} must be >= 1, or 0 (or unset) to keep every checkpoint")
    return errors

def check_choices(cfg) -> list[str]:
    import dataclasses
    import difflib

    errors = []
    for c in GROUPS:
        for f in dataclasses.fields(c):
            choices, value = f.metadata.get("choices"), getattr(cfg, f.name)
            if choices and value is not None and value not in choices:
                near = difflib.get_close_matches(str(value), choices, n=1)
                hint = f"did you mean '{near[0]}'? " if near else ""
                errors.append(f"{f.name}='{value}' is not one of {', '.join(choices)} ({hint}pick one of them)")
    return errors


def check_generation(cfg) -> list[str]:
    """A language model's generation settings: sequence-level KD's teacher answers, test generations."""
    errors = []
    if cfg.sequence_kd_max_new_tokens is not None and cfg.sequence_kd_max_new_tokens < 1:
        errors.append(f"sequence_kd_max_new_tokens={cfg.sequence_kd_max_new_tokens} must be >= 1")
    if not cfg.sequence_kd_temperature >= 0:
        errors.append(f"sequence_kd_temperature={cfg.sequence_kd_temperature} must be >= 0 (0: greedy answers)")
    if cfg.sequence_kd and cfg.strategy == "finetune":
        errors.append("sequence_kd needs a teacher to answer the prompts, but strategy finetune trains the student "
                      "alone; use strategy distill or distill_finetune")
    if cfg.generation_samples < 0:
        errors.append(f"generation_samples={cfg.generation_samples} must be >= 0 (0: no generations)")
    if cfg.generation_max_new_tokens is not None and cfg.generation_max_new_tokens < 1:
        errors.append(f"generation_max_new_tokens={cfg.generation_max_new_tokens} must be >= 1 (or leave it unset: "
                      "the longest gold test response plus a quarter)")
    return errors
