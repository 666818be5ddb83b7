"""Configuration: one dataclass that extends ``transformers.TrainingArguments``.

Loaded from flat YAML (``--config x.yaml``) and overridable by flags, see ``config.io``. The data,
model and strategy field groups are in ``config.fields``, their rules in ``config.validate``. The
config is data: ``__post_init__`` resolves defaults and validates; schedules, objectives and export
settings are built from the fields when asked for (properties), never stored.
"""
from __future__ import annotations

import os
from dataclasses import dataclass

import torch
from transformers import TrainingArguments

from ..constants import DEFAULT_TEMPERATURE
from ..export.options import export_options
from ..models.lora import lora_options
from ..losses.objective import build_objectives
from ..schedules import Schedule
from . import validate as V
from .fields import GROUPS, METRICS, STRATEGIES, DataArguments, ModelArguments, StrategyArguments, _f  # noqa: F401
from .precision import cpu_supports_bf16  # noqa: F401  (re-exported)
from .precision import resolve as resolve_precision
from .validate import ConfigError  # noqa: F401  (re-exported)


@dataclass
class DistillConfig(StrategyArguments, ModelArguments, DataArguments, TrainingArguments):
    """Everything one run needs. Unset schedule fields take the strategy's defaults."""

    # TrainingArguments fields whose defaults suit distillation better (same meaning, new default).
    output_dir: str | None = _f("runs/distiltune", "Where models, checkpoints, logs and the report are written.")
    train_sampling_strategy: str = _f("group_by_length", "Batch similar lengths together (less padding): "
                                                         "group_by_length, random, sequential.")
    report_to: None | str | list[str] = _f("tensorboard", "Loggers: tensorboard, none, ...")
    logging_steps: float = _f(10, "Log losses, loss terms and schedule values every N steps (more often in a stage "
                                  "of fewer than 20 N steps: at least 20 points a stage for the report's curves).")
    save_strategy: str = _f("epoch", "When to write checkpoints: epoch, steps or no.")
    save_total_limit: int | None = _f(2, "Keep at most this many checkpoints per stage.")
    learning_rate: float = _f(5e-5, "Peak learning rate of the student (AdamW, linear decay).")
    num_train_epochs: float = _f(3.0, "Epochs of the main stage (distillation, or fine-tuning for strategy finetune).")
    per_device_train_batch_size: int = _f(32, "Training batch size per device.")
    warmup_steps: float = _f(0.06, "Learning-rate warm-up: steps (>= 1) or a fraction of all steps (< 1).")
    dataloader_num_workers: int = _f(-1, "Processes that build batches: -1 = auto (4 beside a GPU, so padding "
                                         "overlaps the GPU's work; 0 on CPU, whose cores do the training).")

    def __post_init__(self):
        if isinstance(self.finetune_teacher, bool):  # YAML reads a bare yes/no as a boolean
            self.finetune_teacher = "yes" if self.finetune_teacher else "no"
        for name in ("train_file", "validation_file", "test_file", "unlabeled_file", "output_dir"):
            value = getattr(self, name)
            if isinstance(value, str) and value.startswith("~"):  # as a shell would read it
                setattr(self, name, os.path.expanduser(value))
        errors = V.check_choices(self)
        if errors:  # later checks assume valid choices
            raise V.ConfigError(errors)
        if self.distill_weight is None:
            self.distill_weight = 0.9 if self.strategy == "distill_finetune" else 0.5
        errors = V.check_values(self)
        for check in (lambda: export_options(self.export), lambda: lora_options(self.teacher_lora, "teacher_lora"),
                      lambda: lora_options(self.student_lora, "student_lora")):
            try:
                check()
            except ValueError as e:
                errors.append(str(e))
        if errors:
            raise V.ConfigError(errors)
        if self.load_best_model_at_end and str(getattr(self.eval_strategy, "value", self.eval_strategy)) == "no":
            # Best-checkpoint selection needs a validation score at every save: evaluate when saving.
            self.eval_strategy = self.save_strategy
        # The task metric (accuracy, pearson, ...) is the default for picking the best checkpoint;
        # it is known once the data is loaded (see pipeline.train.training_args).
        self.best_metric_is_task_metric = self.metric_for_best_model is None
        self.bf16, self.fp16 = resolve_precision(self.mixed_precision)
        if not torch.cuda.is_available():
            self.use_cpu = True  # the Trainer needs this for bf16 autocast on CPU
        if self.dataloader_num_workers is None or self.dataloader_num_workers < 0:
            self.dataloader_num_workers = min(4, max((os.cpu_count() or 1) // 2, 1)) if torch.cuda.is_available() else 0
            self.dataloader_persistent_workers = self.dataloader_num_workers > 0  # no respawn every epoch
        if self.output_dir is None:
            self.output_dir = "runs/distiltune"
        own_accelerator_config = self.accelerator_config is not None
        super().__post_init__()
        if not own_accelerator_config and torch.cuda.is_available() and not self.use_cpu:
            # batches come from pinned memory: a blocking copy to the GPU waits for the device to drain
            # its queue (a host sync per tensor per step); a non-blocking one does not
            self.accelerator_config.non_blocking = True
        # Validated now, before any heavy work; built again by whoever needs them (config stays data).
        self.make_schedule("temperature")
        self.make_schedule("distill_weight")
        build_objectives(self)

    @property
    def distill_epochs(self) -> float:
        """Epochs the distillation stage may run: num_train_epochs, or the ceiling when it stops on a plateau."""
        if self.distill_stop == "fixed":
            return self.num_train_epochs
        return self.distill_max_epochs if self.distill_max_epochs is not None else self.num_train_epochs

    @property
    def temperature_sched(self) -> Schedule:
        return self.make_schedule("temperature")

    @property
    def distill_weight_sched(self) -> Schedule:
        return self.make_schedule("distill_weight")

    @property
    def objectives(self) -> dict[str, list[tuple]]:
        """The weighted loss terms of each stage (see ``losses.objective.build_objectives``)."""
        return build_objectives(self)

    @property
    def lora_settings(self) -> dict[str, dict | None]:
        """LoRA settings per role ('teacher', 'student'), defaults filled in; None where training is full."""
        return {"teacher": lora_options(self.teacher_lora, "teacher_lora"),
                "student": lora_options(self.student_lora, "student_lora")}

    @property
    def export_settings(self) -> dict | None:
        """The ``export`` option with its defaults filled in, or None when the run exports nothing."""
        return export_options(self.export)

    def make_schedule(self, name: str) -> Schedule:
        kind = getattr(self, f"{name}_schedule")
        end = getattr(self, f"{name}_end")
        values = tuple(getattr(self, f"{name}_values") or ())
        annealed = self.strategy == "distill_finetune"
        if kind is None:
            kind = "list" if values else ("linear" if annealed else "constant")
        if end is None and annealed:
            end = {"temperature": 1.0, "distill_weight": 0.2}[name]
        if kind == "list" and not values:
            raise ValueError(f"{name}_schedule is 'list' but {name}_values is empty; give one value per epoch")
        start = getattr(self, name)
        if start is None:  # temperature: the task's default, set when the run's task is known (pipeline.checks)
            start = DEFAULT_TEMPERATURE
        return Schedule(kind=kind, start=start, end=end, values=values, unit=self.schedule_unit)

    def own_fields(self) -> dict:
        """Fields distiltune adds on top of TrainingArguments."""
        import dataclasses

        names = {f.name for c in GROUPS for f in dataclasses.fields(c)}
        return {k: getattr(self, k) for k in sorted(names)}
