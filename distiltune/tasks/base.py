"""The task interface: everything that differs between tasks, behind one small class.

The stages (:mod:`distiltune.pipeline.stages`) are written once over this interface and never ask
which task they run. A task is built from the resolved config and its loaded data, and holds no
state that appears later (its only mutable member is a memo of encoded rows, created here).
``docs/architecture.md`` shows where token classification and causal LMs plug in.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from ..constants import DEFAULT_TEMPERATURE
from ..models.inference import predict_logits


@dataclass
class Loaded:
    """A model as a stage receives it: the network, its tokenizer (None for tensor inputs) and
    whether its task head is trained (False for a fresh head or a factory-built network)."""

    model: Any
    tokenizer: Any
    trained: bool


class Task:
    """Base class of the tasks. ``cfg`` is the run's :class:`~distiltune.config.DistillConfig`,
    ``data`` its :class:`~distiltune.data.load.TaskData`."""

    name = "task"
    default_temperature = DEFAULT_TEMPERATURE  # where the config leaves temperature unset
    pipeline_tag = ""          # the transformers pipeline that loads a saved model (model cards)
    export_kind = "tensor"     # "text", "words", "qa" or "tensor": what an exported model reads

    def __init__(self, cfg, data):
        self.cfg, self.data = cfg, data
        self.encoded: dict = {}  # (rows, tokenizer, length, prefix) -> encoded rows, reused by every stage

    @classmethod
    def load_data(cls, cfg):
        """Read, check and split the config's data (a :class:`~distiltune.data.load.TaskData`)."""
        from ..data.load import load_task_data

        return load_task_data(cfg)

    # ---- checks before anything is loaded or written (each failure goes into ``problems``) ----
    @classmethod
    def check_config(cls, cfg, problems) -> None:
        """Task-specific checks of the config alone (no data, no weights)."""

    def check_models(self, problems) -> None:
        """The models against the data from their metadata (config files, weight headers), no weights."""

    def fine_tunes_teacher(self) -> bool:
        """Whether the run will fine-tune its teacher (for ``finetune_teacher: auto``, when its head is
        not known to be trained); checked before the run begins."""
        return bool(self.cfg.teacher) and self.cfg.finetune_teacher != "no"

    def check_terms(self, objective: list[tuple], problems) -> None:
        """The distillation terms against the two models, before the teacher is trained or cached."""

    def weights_bytes(self, role: str) -> int | None:
        """Size of the named model's weights on disk (None when unknown), for the free-disk check."""
        return None

    # ---- models ----
    def load(self, name: str, role: str) -> Loaded:
        raise NotImplementedError

    def load_trained(self, path: str, role: str):
        raise NotImplementedError

    def student_from_teacher(self, teacher, layers: list[int] | None):
        """A student made of some of the teacher's layers, and the teacher's layers it kept."""
        raise NotImplementedError

    def freeze(self, model) -> None:
        """Apply the config's freezing (transfer learning) to a model about to be fine-tuned."""

    def check_pair(self, teacher, student) -> None:
        """Teacher and student must predict the same thing (label count and names)."""

    def same_inputs(self, student_tokenizer, teacher_tokenizer) -> bool:
        """Whether position i of the student's input is position i of the teacher's (token-level terms)."""
        return True

    def save(self, model, tokenizer, path: str, card: str, extra: dict[str, str]) -> None:
        raise NotImplementedError

    # ---- rows -> model inputs ----
    def encode(self, rows, tokenizer, prefix: str = ""):
        """Rows with the model inputs added (columns ``{prefix}<input>``); identity for tensor inputs."""
        return rows

    def collator(self, tokenizer, teacher_tokenizer=None):
        raise NotImplementedError

    def batcher(self, tokenizer, teacher_tokenizer=None, exact: bool = False):
        """Pads rows for inference (teacher outputs, evaluation, timing, export); ``exact``: as deployed."""
        raise NotImplementedError

    def training_overrides(self) -> dict:
        """Trainer settings this task needs in every training stage."""
        return {}

    def with_teacher_answers(self, teacher, tokenizer, rows, root: str, teacher_fp: str):
        """Sequence-level KD: ``rows`` with the teacher's generated answers where they lack gold ones
        (a language model's; cached under ``root``)."""
        return rows

    # ---- teacher outputs (what the teacher cache stores per row) ----
    def teacher_inputs(self, rows, tokenizer, teacher_tokenizer, same: bool):
        """The rows as the teacher reads them, and the column prefix of its inputs."""
        return rows, ""

    def cache_form(self) -> dict:
        """Settings of this task's own storage form in the teacher cache (part of the cache's name)."""
        return {}

    def teacher_outputs(self, teacher, rows, batcher, prefix: str = "") -> np.ndarray:
        """The teacher's output for each row, in row order: a logit vector per row here."""
        cfg = self.cfg
        teacher.to(cfg.device)  # the training device (a GPU when there is one), not where it was loaded
        # inference keeps no activations for backward: on a GPU, bigger batches fill it
        return predict_logits(teacher, batcher, rows, batch_size=64 if cfg.device.type == "cpu" else 256, bf16=cfg.bf16,
                              desc="teacher logits", prefix=prefix, progress=not cfg.disable_tqdm and len(rows) > 64)

    # ---- predict and score ----
    def predict(self, model, rows, batcher, desc: str = "predicting", bf16: bool = False) -> np.ndarray:
        return predict_logits(model, batcher, rows, bf16=bf16, desc=desc, progress=not self.cfg.disable_tqdm)

    def metrics(self, predictions: np.ndarray, labels: np.ndarray) -> dict[str, float]:
        raise NotImplementedError

    def labels(self, rows) -> np.ndarray:
        return np.asarray(rows["labels"])

    def teacher_agreement(self, teacher, model, rows, batcher, bf16: bool = False) -> dict | None:
        """How close a student's outputs are to the teacher's on the test rows (None: not reported)."""
        return None

    def generation_speeds(self, models: dict, rows) -> dict | None:
        """Generation speed of each model (name -> (model, tokenizer)) on the test rows: a language
        model's prefill and decode, or None."""
        return None

    def generations(self, models: dict, rows) -> dict | None:
        """Test prompts answered by each model (name -> (model, tokenizer)): a language model's answer
        accuracy and side-by-side generations, or None."""
        return None

    preprocess_logits = None  # optional (logits, labels) -> what validation gathers instead (a language model's scores)

    def compute_metrics(self, pred) -> dict:
        """Validation metrics during training: the same code as the final evaluation."""
        return self.metrics(np.asarray(pred.predictions), np.asarray(pred.label_ids))

    def agreement(self, reference: np.ndarray, predictions: np.ndarray, labels: np.ndarray) -> dict:
        """How an exported model's predictions agree with the PyTorch model's."""
        from ..export.onnx import agreement

        return agreement(reference, predictions, self.data.task_type, labels)

    # ---- export ----
    def export_plan(self, model, tokenizer, test, batcher, source: str) -> dict:
        """What ONNX export needs: a sample batch, the metadata an exported folder carries and,
        for static int8, calibration batches."""
        raise NotImplementedError
