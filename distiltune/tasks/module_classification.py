"""Classification (or regression) with any ``torch.nn.Module``: teacher and student are factories
(``examples/digits/models.py:cnn_teacher``) or networks saved by a previous run; the data is a column
of tensors (``input_column``) instead of text."""
from __future__ import annotations

from ..data.collate import ModuleCollator, TensorPadder
from ..errors import DistilTuneError
from ..models import factories as MD
from .base import Loaded, Task
from .metrics import task_metrics


class ModuleClassification(Task):
    name = "module_classification"
    pipeline_tag = ""
    export_kind = "tensor"

    @classmethod
    def check_config(cls, cfg, problems) -> None:
        with problems.check():
            if cfg.student == "from_teacher":
                raise DistilTuneError("student: from_teacher copies transformer layers, which a plain nn.Module teacher does not have",
                                      "name a student factory, e.g. student: examples/digits/models.py:cnn_student")
        with problems.check():
            if cfg.freeze_embeddings or cfg.freeze_layers:
                raise DistilTuneError("freeze_embeddings / freeze_layers apply to transformer encoders only",
                                      "freeze parameters inside your factory (requires_grad_(False)) instead")
        with problems.check():
            if cfg.teacher_lora or cfg.student_lora:
                raise DistilTuneError("teacher_lora / student_lora wrap transformers models through peft; this task's "
                                      "models are plain nn.Modules", "remove teacher_lora / student_lora")
        with problems.check():
            if cfg.augment:
                raise DistilTuneError("augment edits text, but this task's inputs are tensors (input_column)",
                                      "drop augment, and apply your own transforms in the dataset factory")
        for role in ("teacher", "student"):
            name = getattr(cfg, role)
            with problems.check():
                if name and name != "from_teacher" and not (MD.is_factory(name) or MD.is_module_dir(name)):
                    raise DistilTuneError(f"with input_column set, the {role} must be a factory 'file.py:function' or a "
                                          f"network saved by distiltune, not '{name}'",
                                          f"set {role}: examples/digits/models.py:cnn_{role} (or unset input_column for text)")

    # Factories and saved networks are checked when built or loaded (their label count is the data's);
    # with no config.json to build weightless copies from, the trainer checks the terms on the networks.

    # ---- models ----
    def load(self, name: str, role: str) -> Loaded:
        if MD.is_module_dir(name):
            return Loaded(self.load_trained(name, role), None, True)
        model = MD.build_module(name, input_name=self.cfg.input_column, label_names=self.data.label_names)
        return Loaded(model, None, False)  # a factory builds an untrained network

    def load_trained(self, path: str, role: str):
        model = MD.load_module(path)
        if model.label_names is not None and self.data.label_names is not None and model.label_names != self.data.label_names:
            raise DistilTuneError(f"the {role} in '{path}' predicts labels {model.label_names}, the data has {self.data.label_names}",
                                  f"use a {role} trained on this label set")
        return model

    def check_pair(self, teacher, student) -> None:
        if teacher.num_labels != student.num_labels:
            raise DistilTuneError(f"teacher has {teacher.num_labels} outputs but student has {student.num_labels}",
                                  "build both with the data's number of labels")

    def save(self, model, tokenizer, path, card, extra) -> None:
        MD.save_module(model, path, card, extra)

    # ---- rows ----
    def collator(self, tokenizer, teacher_tokenizer=None):
        return ModuleCollator(self.cfg.input_column, regression=self.data.task_type == "regression")

    def batcher(self, tokenizer, teacher_tokenizer=None, exact: bool = False):
        return TensorPadder(self.cfg.input_column)

    def training_overrides(self) -> dict:
        # length grouping is for token sequences; tensor inputs all have one size
        return {"train_sampling_strategy": "random"} if self.cfg.train_sampling_strategy == "group_by_length" else {}

    # ---- score ----
    def metrics(self, predictions, labels) -> dict[str, float]:
        return task_metrics(predictions, labels, self.data.task_type)

    # ---- export ----
    def export_plan(self, model, tokenizer, test, batcher, source: str) -> dict:
        # static int8 for networks with convolutions: activations calibrated on training rows
        train = self.data.train
        calibration = [{k: v.numpy() for k, v in batcher.batch(train.select(range(s, min(s + 32, len(train))))).items()}
                       for s in range(0, min(len(train), 256), 32)]
        pick = [len(test) - 1, len(test) // 2] if len(test) > 1 else [0, 0]
        return {"sample_rows": pick, "meta": {}, "calibration": calibration}

