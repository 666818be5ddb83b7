"""Configuration: one dataclass that extends ``transformers.TrainingArguments``.

Loaded from flat YAML (``--config x.yaml``) and overridable by flags, see ``config_io``.
The data, model and strategy groups are separate mixins so each stays readable.
"""
from __future__ import annotations

import functools
import os
from dataclasses import dataclass, field

import torch
from transformers import TrainingArguments

from ..schedules import KINDS, UNITS, Schedule

STRATEGIES = ("finetune", "distill", "distill_finetune")
METRICS = ("auto", "accuracy", "f1", "matthews", "pearson", "spearman")


def _f(default, help, **kw):
    return field(default=default, metadata={"help": help, **kw})


def _lf(help):
    return field(default=None, metadata={"help": help})


@dataclass
class DataArguments:
    dataset_name: str | None = _f(None, "Hub dataset name (needs internet), or 'demo:rotten_tomatoes' for the bundled demo data.")
    dataset_config_name: str | None = _f(None, "Hub dataset configuration, e.g. 'sst2' for dataset_name 'glue'.")
    train_file: str | None = _f(None, "Local training file (.csv, .json, .jsonl or .parquet).")
    validation_file: str | None = _f(None, "Local validation file; a seeded split of train is used when absent.")
    test_file: str | None = _f(None, "Local test file; a seeded split of train is used when absent.")
    unlabeled_file: str | None = _f(None, "Local file of unlabeled text the student learns from through the teacher alone.")
    text_column: str = _f("text", "Column holding the text (first sentence for pairs).")
    input_column: str | None = _f(None, "For any nn.Module (not text): the dataset column fed to the network, e.g. "
                                        "pixel_values; teacher/student are then factories 'file.py:function'.")
    text_pair_column: str | None = _f(None, "Second sentence column for sentence-pair tasks (GLUE-style), else none.")
    label_column: str = _f("label", "Column holding the label (class name/id, or a number for regression).")
    task_type: str = _f("auto", "'classification', 'regression', or 'auto' (float labels mean regression).",
                        choices=["auto", "classification", "regression"])
    metric: str = _f("auto", "Main metric: accuracy, f1 (macro), matthews, pearson, spearman; auto = accuracy or pearson.",
                     choices=list(METRICS))
    max_length: int = _f(128, "Truncate texts to this many tokens (each model's own tokenizer).")
    validation_size: float = _f(0.1, "Validation split made from train when none is given: fraction (<1) or row count.")
    test_size: float = _f(0.15, "Test split made from train when none is given: fraction (<1) or row count.")
    num_labeled: int | None = _f(None, "Keep labels for only this many training rows; the rest becomes unlabeled text "
                                       "that the student learns from the teacher's soft labels (few-label setting).")
    max_unlabeled: int | None = _f(None, "Use at most this many unlabeled rows (seeded sample).")
    max_validation_samples: int | None = _f(None, "Use at most this many validation rows (seeded sample).")
    max_test_samples: int | None = _f(None, "Use at most this many test rows (seeded sample).")


@dataclass
class ModelArguments:
    teacher: str | None = _f(None, "Teacher: local folder, hub name, or 'demo:all-mpnet-base-v2'.")
    student: str | None = _f(None, "Student: local folder, hub name, 'demo:all-MiniLM-L6-v2', or 'from_teacher' "
                                   "(keep student_layers of the teacher's layers).")
    student_layers: list[int] | None = _f(None, "Teacher layers copied into a 'from_teacher' student, e.g. 0 2 4 7 9 11; "
                                                "default every other layer.")
    finetune_teacher: str = _f("auto", "Fine-tune the teacher on the labelled data first: yes, no, or auto (when its "
                                       "classifier head is untrained).", choices=["auto", "yes", "no"])
    teacher_num_train_epochs: float = _f(2.0, "Epochs for fine-tuning the teacher.")
    teacher_learning_rate: float = _f(3e-5, "Learning rate for fine-tuning the teacher.")
    freeze_embeddings: bool = _f(False, "Freeze the embeddings of the model being fine-tuned (transfer learning).")
    freeze_layers: int = _f(0, "Freeze the first N transformer layers of the model being fine-tuned.")


@dataclass
class StrategyArguments:
    strategy: str = _f("distill_finetune", "finetune (hard labels only), distill, or distill_finetune (scheduled "
                                           "distillation, then optional hard-label epochs).", choices=list(STRATEGIES))
    temperature: float = _f(4.0, "Softmax temperature T for soft targets (start value when scheduled).")
    temperature_end: float | None = _f(None, "Final temperature for linear/cosine schedules (default 1.0 for distill_finetune).")
    temperature_schedule: str | None = _f(None, "constant, linear, cosine or list; default constant for distill, linear "
                                                "(high -> low) for distill_finetune.", choices=list(KINDS))
    temperature_values: list[float] | None = _f(None, "Per-epoch temperatures for temperature_schedule 'list'.")
    distill_weight: float | None = _f(None, "Weight w of the distillation term: loss = (1-w)*CE + w*T^2*KL (start value when "
                                            "scheduled). Default 0.5 for distill, 0.9 for distill_finetune.")
    distill_weight_end: float | None = _f(None, "Final distill_weight for linear/cosine schedules (default 0.2 for distill_finetune: "
                                                "distillation-heavy early, task-heavy late).")
    distill_weight_schedule: str | None = _f(None, "constant, linear, cosine or list; default constant for distill, linear "
                                                   "for distill_finetune.", choices=list(KINDS))
    distill_weight_values: list[float] | None = _f(None, "Per-epoch weights for distill_weight_schedule 'list'.")
    schedule_unit: str = _f("step", "Advance schedules every 'step' or only at each 'epoch'.", choices=list(UNITS))
    final_finetune_epochs: float = _f(0.0, "distill_finetune: hard-label-only epochs after distillation.")
    preset: str | None = _f(None, "Named recipe of extra loss terms: distilbert, tinybert, minilm, fitnets, rkd "
                                  "(`distiltune losses` lists them).", choices=["distilbert", "tinybert", "minilm", "fitnets", "rkd"])
    losses: list[str] | None = _f(None, "Extra loss terms beyond CE and the logit term: names, name:weight, or (YAML) "
                                        "mappings {name, weight, weight_end, stage, <options>}; JSON strings on the command line.")
    logit_loss: str = _f("kd", "The logit term weighted by distill_weight: kd, reverse_kl, js or logit_mse.",
                         choices=["kd", "reverse_kl", "js", "logit_mse"])
    kd_weighting: str = _f("none", "Dynamic KD: 'confidence' weights each example by the teacher's probability of the "
                                   "true label (top probability when unlabeled); 'none' weights all alike.",
                           choices=["none", "confidence"])
    layer_map: str | None = _f(None, "Default teacher layers for layer-wise terms: uniform, last, skip, dynamic (each "
                                     "student layer matches the closest of its linked teacher layers), or pairs '0:1,1:3'.")
    student_modules: list[str] | None = _f(None, "Default student submodule paths for feature terms (any nn.Module), "
                                                 "paired one to one with teacher_modules.")
    teacher_modules: list[str] | None = _f(None, "Default teacher submodule paths for feature terms.")
    intermediate_epochs: float = _f(1.0, "Epochs of the intermediate stage (terms with stage: intermediate, e.g. the "
                                         "tinybert and fitnets presets), run before the main distillation stage.")
    early_stopping_patience: int | None = _f(None, "Stop a training stage after this many validation evaluations without "
                                                   "improvement of the task metric (turns on per-epoch validation and "
                                                   "keeps the best checkpoint, load_best_model_at_end).")
    augment: list[str] | None = _f(None, "Augment the distillation rows: mask, delete, swap, mlm (masked-LM word "
                                         "replacement, TinyBERT-style); copies carry no hard label, the teacher labels them.")
    augment_factor: int | None = _f(None, "Augmented copies per distillation row (seeded, so their teacher logits are "
                                          "cached like any row's); default 1 when augment is set.")
    augment_prob: float = _f(0.15, "Chance that each word of a text is changed by the augmentation (at least one is).")
    augment_mlm_model: str | None = _f(None, "Masked LM for augment 'mlm' (default: the teacher, if it has an MLM head).")
    teacher_cache: bool = _f(True, "Compute teacher logits once per (teacher, data, tokenisation) and reuse them every "
                                   "epoch and stage (Arrow on disk, keyed by example; --no_teacher_cache: teacher every step).")
    teacher_cache_topk: int | None = _f(None, "Cache only the k largest teacher logits per row plus one tail value (large "
                                              "label spaces); the remaining mass is spread evenly over the other classes.")
    nan_policy: str = _f("stop", "A NaN/inf loss term: 'stop' (name the term and step; the last good checkpoint is "
                                 "kept) or 'skip' the batch (no update; stops after 10 skipped batches in a row).",
                         choices=["stop", "skip"])
    grad_spike_factor: float = _f(10.0, "Log a gradient-norm spike when a step's norm exceeds this many times the "
                                        "median of the previous 50 steps (0 turns the check off).")
    baseline: bool = _f(True, "Also train the baseline student (same init and budget, labelled data only, no teacher).")
    mixed_precision: str = _f("auto", "bf16, fp16, no, or auto (bf16 where the CPU/GPU supports it).",
                              choices=["auto", "bf16", "fp16", "no"])
    latency_samples: int = _f(100, "Batch-1 forward passes timed for latency percentiles (after warm-up).")
    throughput_batch_size: int = _f(32, "Batch size for the throughput measurement.")
    export: dict | str | None = _f(None, "Export the student after the run: a mapping {format: onnx, quantize: int8, "
                                         "min_agreement: 0.999, min_agreement_int8: 0.97, opset: null} or 'onnx' / "
                                         "'onnx:int8' (JSON on the command line); the exported files are evaluated and "
                                         "timed beside the others, and the run fails (exit 1) below an agreement floor.")


class AtMost(int):
    """A ``num_labeled`` that caps rather than asks (``--quick``'s slice): a training split with fewer
    rows keeps them all, where a num_labeled the user set above the row count is refused."""


class ConfigError(ValueError):
    """Invalid config values, one message per problem (``problems``); ``str()`` joins them with '; '."""

    def __init__(self, problems: list[str]):
        self.problems = list(problems)
        super().__init__("; ".join(self.problems))


@functools.lru_cache(maxsize=None)
def cpu_supports_bf16() -> bool:
    """bf16 autocast on this CPU only when it has bf16 instructions *and* they are faster here:
    with AMX, or on some avx512_bf16 cores, bf16 matmuls beat fp32; on others (measured: an Intel
    Xeon with avx512_bf16 but no AMX) BERT inference ran 2x slower in bf16. So time one
    transformer-sized matmul both ways (~0.3 s, once per process)."""
    try:
        flags = open("/proc/cpuinfo").read()
    except OSError:
        return False
    if "amx_bf16" in flags:
        return True
    if "avx512_bf16" not in flags:
        return False
    import time

    x, w = torch.randn(1024, 768), torch.randn(3072, 768)

    def best(bf16: bool) -> float:
        times = []
        with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            for _ in range(4):
                t0 = time.perf_counter()
                torch.nn.functional.linear(x, w)
                times.append(time.perf_counter() - t0)
        return min(times[1:])

    return best(True) < 0.9 * best(False)


@dataclass
class DistillConfig(StrategyArguments, ModelArguments, DataArguments, TrainingArguments):
    """Everything one run needs. Unset schedule fields take the strategy's defaults."""

    # TrainingArguments fields whose defaults suit distillation better (same meaning, new default).
    output_dir: str | None = _f("runs/distiltune", "Where models, checkpoints, logs and the report are written.")
    train_sampling_strategy: str = _f("group_by_length", "Batch similar lengths together (less padding): "
                                                         "group_by_length, random, sequential.")
    report_to: None | str | list[str] = _f("tensorboard", "Loggers: tensorboard, none, ...")
    logging_steps: float = _f(10, "Log losses, loss terms and schedule values every N steps.")
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
        errors = self._check_choices()
        if errors:  # later checks assume valid choices
            raise ConfigError(errors)
        if self.distill_weight is None:
            self.distill_weight = 0.9 if self.strategy == "distill_finetune" else 0.5
        for name in ("distill_weight", "distill_weight_end"):
            v = getattr(self, name)
            if v is not None and not 0.0 <= v <= 1.0:
                errors.append(f"{name}={v} is outside [0, 1]; set it between 0 and 1")
        for v in self.distill_weight_values or []:
            if not 0.0 <= v <= 1.0:
                errors.append(f"distill_weight_values contains {v}, outside [0, 1]; use weights between 0 and 1")
        for name in ("temperature", "temperature_end"):
            v = getattr(self, name)
            if v is not None and not v > 0:
                errors.append(f"{name}={v} must be > 0; use a positive temperature such as 2.0")
        for v in self.temperature_values or []:
            if not v > 0:
                errors.append(f"temperature_values contains {v}; every temperature must be > 0")
        for name in ("num_labeled", "max_unlabeled", "max_validation_samples", "max_test_samples"):
            v = getattr(self, name)
            if v is not None and v < 1:
                errors.append(f"{name}={v} must be >= 1 (or leave it unset)")
        for name in ("num_train_epochs", "teacher_num_train_epochs", "learning_rate", "teacher_learning_rate"):
            if not getattr(self, name) > 0:
                errors.append(f"{name}={getattr(self, name)} must be > 0")
        from ..data.augment import check_options as check_augment

        errors += check_augment(self.augment, self.augment_factor, self.augment_prob)
        if self.teacher_cache_topk is not None and self.teacher_cache_topk < 1:
            errors.append(f"teacher_cache_topk={self.teacher_cache_topk} must be >= 1 (or leave it unset for full logits)")
        for name in ("latency_samples", "throughput_batch_size", "per_device_train_batch_size"):
            if getattr(self, name) < 1:
                errors.append(f"{name}={getattr(self, name)} must be >= 1")
        if not self.grad_spike_factor >= 0:
            errors.append(f"grad_spike_factor={self.grad_spike_factor} must be >= 0 (0 turns the check off)")
        if self.max_length < 8:
            errors.append(f"max_length={self.max_length} is too small; use at least 8 tokens")
        if self.freeze_layers < 0:
            errors.append(f"freeze_layers={self.freeze_layers} must be >= 0")
        if self.intermediate_epochs < 0:
            errors.append("intermediate_epochs must be >= 0")
        if self.final_finetune_epochs < 0:
            errors.append("final_finetune_epochs must be >= 0")
        for name in ("validation_size", "test_size"):
            if getattr(self, name) < 0:
                errors.append(f"{name} must be >= 0 (fraction < 1 or a row count)")
        if self.student_layers is not None and len(self.student_layers) == 0:
            errors.append("student_layers is empty; list at least one teacher layer index")
        errors += self._check_data_options()
        errors += self._check_training_ranges()
        from ..export.onnx import export_options

        try:
            self.export = export_options(self.export)
        except ValueError as e:
            errors.append(str(e))
        if errors:
            raise ConfigError(errors)
        if self.early_stopping_patience is not None and self.early_stopping_patience < 1:
            raise ValueError(f"early_stopping_patience={self.early_stopping_patience} must be >= 1 (or leave it unset)")
        if self.early_stopping_patience:
            self.load_best_model_at_end = True
        if self.load_best_model_at_end and str(getattr(self.eval_strategy, "value", self.eval_strategy)) == "no":
            # Best-checkpoint selection needs a validation score at every save: evaluate when saving.
            self.eval_strategy = self.save_strategy
        # The task metric (accuracy, pearson, ...) is the default for picking the best checkpoint;
        # it is known once the data is loaded (see pipeline.train.training_args).
        self.best_metric_is_task_metric = self.metric_for_best_model is None
        self._set_precision()
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
        # Schedule objects are built here so bad list/kind combinations fail at load time.
        self.temperature_sched = self.make_schedule("temperature")
        self.distill_weight_sched = self.make_schedule("distill_weight")
        from ..losses.objective import build_objectives  # validates loss names and options now, before any heavy work

        self.objectives = build_objectives(self)

    def _check_data_options(self) -> list[str]:
        """Values that the data loader would take silently in a wrong sense, or crash on mid-load."""
        errors = []
        if isinstance(self.output_dir, str) and not self.output_dir.strip():
            errors.append(f"output_dir={self.output_dir!r} is empty; give the folder the run writes to, e.g. runs/my_run")
        roles = ([("input_column", self.input_column)] if self.input_column else
                 [("text_column", self.text_column), ("text_pair_column", self.text_pair_column)])
        seen: dict = {}
        for role, col in roles + [("label_column", self.label_column)]:
            if col is None:
                continue
            if col in seen:
                errors.append(f"{role}={col!r} is also the {seen[col]}; give each of them its own column")
            else:
                seen[col] = role
        for name in ("validation_size", "test_size"):
            v = getattr(self, name)
            if v >= 1 and not float(v).is_integer():
                errors.append(f"{name}={v} is neither a fraction below 1 nor a whole row count; use e.g. 0.1 "
                              f"(that share of train) or 100 (rows)")
        return errors

    def _check_training_ranges(self) -> list[str]:
        """TrainingArguments values that, out of range, pass TrainingArguments' own checks but fail only
        mid-run (after the output folder is written) or make the run do something else than asked."""
        errors = []

        def value(v):
            return str(getattr(v, "value", v))  # enums once TrainingArguments has converted them (replace)

        for name in ("gradient_accumulation_steps", "per_device_eval_batch_size"):
            if getattr(self, name) < 1:
                errors.append(f"{name}={getattr(self, name)} must be >= 1")
        for name in ("seed", "data_seed"):
            v = getattr(self, name)
            if v is not None and not 0 <= v <= 2 ** 32 - 1:
                errors.append(f"{name}={v} must be between 0 and 4294967295 (2**32 - 1), the seeds numpy accepts")
        for name in ("eval_accumulation_steps", "dataloader_prefetch_factor"):
            v = getattr(self, name)
            if v is not None and v < 1:
                errors.append(f"{name}={v} must be >= 1 (or leave it unset)")
        for name, strategy in (("logging_steps", "logging_strategy"), ("eval_steps", "eval_strategy"),
                               ("save_steps", "save_strategy")):
            v = getattr(self, name)
            if v is not None and (v < 0 or v == 0 and name != "eval_steps" and value(getattr(self, strategy)) == "steps"):
                errors.append(f"{name}={v} must be > 0: a step count (>= 1) or a share of the training steps (< 1)")
        for name, note in (("warmup_steps", ""), ("weight_decay", ""), ("max_grad_norm", " (0 turns clipping off)"),
                           ("adam_epsilon", "")):
            v = getattr(self, name)
            if v < 0:
                errors.append(f"{name}={v} must be >= 0{note}")
        for name in ("adam_beta1", "adam_beta2"):
            v = getattr(self, name)
            if not 0 <= v < 1:
                errors.append(f"{name}={v} must be in [0, 1), e.g. 0.9 or 0.999")
        if self.dataloader_num_workers is not None and self.dataloader_num_workers < -1:
            errors.append(f"dataloader_num_workers={self.dataloader_num_workers} must be >= 0 (or -1 for auto)")
        if self.save_total_limit is not None and self.save_total_limit < 0:
            errors.append(f"save_total_limit={self.save_total_limit} must be >= 1, or 0 (or unset) to keep every checkpoint")
        return errors

    def _check_choices(self) -> list[str]:
        import dataclasses
        import difflib

        errors = []
        for c in (DataArguments, ModelArguments, StrategyArguments):
            for f in dataclasses.fields(c):
                choices, value = f.metadata.get("choices"), getattr(self, f.name)
                if choices and value is not None and value not in choices:
                    near = difflib.get_close_matches(str(value), choices, n=1)
                    hint = f"did you mean '{near[0]}'? " if near else ""
                    errors.append(f"{f.name}='{value}' is not one of {', '.join(choices)} ({hint}pick one of them)")
        return errors

    def _set_precision(self):
        mp = self.mixed_precision
        if mp == "auto":
            if torch.cuda.is_available():
                mp = "bf16" if torch.cuda.is_bf16_supported() else "fp16"
            else:
                mp = "bf16" if cpu_supports_bf16() else "no"
        if mp == "fp16" and not torch.cuda.is_available():
            mp = "no"  # fp16 autocast on CPU is slow and unsupported by the Trainer
        self.bf16, self.fp16 = mp == "bf16", mp == "fp16"
        if not torch.cuda.is_available():
            self.use_cpu = True  # the Trainer needs this for bf16 autocast on CPU

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
        return Schedule(kind=kind, start=getattr(self, name), end=end, values=values, unit=self.schedule_unit)

    def own_fields(self) -> dict:
        """Fields distiltune adds on top of TrainingArguments."""
        import dataclasses

        names = {f.name for c in (DataArguments, ModelArguments, StrategyArguments) for f in dataclasses.fields(c)}
        return {k: getattr(self, k) for k in sorted(names)}
