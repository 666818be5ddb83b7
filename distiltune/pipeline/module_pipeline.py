"""The same pipeline for any ``torch.nn.Module``: teacher and student are factories
(``examples/digits/models.py:cnn_teacher``) or networks saved by a previous run, the data is a
column of tensors (``input_column``) instead of text. Only what depends on the kind of model
differs from :class:`~distiltune.pipeline.Pipeline`: loading, saving, batching."""
from __future__ import annotations

from ..models import factories as MD
from ..data.collate import TensorPadder
from ..errors import DistilTuneError
from .run import Pipeline
from .preflight import Problems


class ModulePipeline(Pipeline):
    def check_inputs(self, problems: Problems | None = None):
        P = problems or Problems()
        super().check_inputs(P)
        cfg = self.cfg
        with P.check():
            if cfg.student == "from_teacher":
                raise DistilTuneError("student: from_teacher copies transformer layers, which a plain nn.Module teacher does not have",
                                      "name a student factory, e.g. student: examples/digits/models.py:cnn_student")
        with P.check():
            if cfg.freeze_embeddings or cfg.freeze_layers:
                raise DistilTuneError("freeze_embeddings / freeze_layers apply to transformer encoders only",
                                      "freeze parameters inside your factory (requires_grad_(False)) instead")
        for role in ("teacher", "student"):
            name = getattr(cfg, role)
            with P.check():
                if name and name != "from_teacher" and not (MD.is_factory(name) or MD.is_module_dir(name)):
                    raise DistilTuneError(f"with input_column set, the {role} must be a factory 'file.py:function' or a "
                                          f"network saved by distiltune, not '{name}'",
                                          f"set {role}: examples/digits/models.py:cnn_{role} (or unset input_column for text)")
        if problems is None:
            P.raise_all()

    def check_models(self, P: Problems) -> None:
        pass  # factories and saved networks are checked when built/loaded (their label count is the data's)

    def check_terms(self, P: Problems) -> None:
        pass  # no config.json to build weightless copies from: the trainer checks the terms on the networks

    def _args(self, stage: str, **changes):
        # length grouping is for token sequences; tensor inputs all have one size
        if self.cfg.train_sampling_strategy == "group_by_length":
            changes.setdefault("train_sampling_strategy", "random")
        return super()._args(stage, **changes)

    def _load_model(self, name: str, role: str):
        if MD.is_module_dir(name):
            return self._load_trained(name, role), None, True
        model = MD.build_module(name, input_name=self.cfg.input_column, label_names=self.data.label_names)
        return model, None, False  # a factory builds an untrained network

    def _load_trained(self, path: str, role: str):
        model = MD.load_module(path)
        if model.label_names is not None and self.data.label_names is not None and model.label_names != self.data.label_names:
            raise DistilTuneError(f"the {role} in '{path}' predicts labels {model.label_names}, the data has {self.data.label_names}",
                                  f"use a {role} trained on this label set")
        return model

    def _write_model(self, model, tokenizer, path, card, extra) -> None:
        MD.save_module(model, path, card, extra)

    def _collator(self, tokenizer, teacher_tokenizer=None):
        return MD.ModuleCollator(self.cfg.input_column, regression=self.data.task_type == "regression")

    def _padder(self, tokenizer, teacher_tokenizer=None, exact: bool = False):
        return TensorPadder(self.cfg.input_column)

    def _same_tokenizer(self, a, b) -> bool:
        return True  # both read the same tensor column

    def _tok(self, ds, tokenizer, prefix=""):
        return ds  # nothing to tokenise

    def _check_heads(self, teacher, student):
        if teacher is not None and student is not None and teacher.num_labels != student.num_labels:
            raise DistilTuneError(f"teacher has {teacher.num_labels} outputs but student has {student.num_labels}",
                                  "build both with the data's number of labels")


def pipeline_class(cfg) -> type[Pipeline]:
    """Text transformers, or any nn.Module when the config names an input column."""
    if cfg.input_column:
        return ModulePipeline
    for role in ("teacher", "student"):
        name = getattr(cfg, role)
        if name and MD.is_factory(name):
            raise DistilTuneError(f"the {role} '{name}' is a network factory, but input_column is not set",
                                  "set input_column to the dataset column the network reads (e.g. pixel_values)")
    return Pipeline


