"""Sequence classification and regression on transformers: one logit vector per text (or text pair)."""
from __future__ import annotations

import numpy as np

from ..data.collate import DistillCollator, Padder, tokenize
from ..errors import DistilTuneError
from ..models import files as MF
from ..models import hf as M
from .base import Loaded, Task
from .metrics import task_metrics


def pad_multiple(cfg) -> int | None:
    # On a GPU, lengths padded to a multiple of 8 suit its matrix units and bound the number of
    # distinct shapes (each new one costs kernel selection); on a CPU the extra padding is pure waste.
    import torch

    return 8 if torch.cuda.is_available() and not cfg.use_cpu else None


class TextClassification(Task):
    name = "text_classification"
    pipeline_tag = "text-classification"
    export_kind = "text"
    head = "ForSequenceClassification"  # the architecture suffix of a model with this task's head

    @staticmethod
    def auto_class():
        from transformers import AutoModelForSequenceClassification

        return AutoModelForSequenceClassification

    # ---- checks ----
    def check_models(self, problems) -> None:
        """Each model folder holds weights and tokenizer files; label sets match the data; a given
        teacher's head was trained; freezing stays within the depth of the model being fine-tuned.
        From the folders' listings, config.json and the weight files' headers: no weights are loaded."""
        cfg = self.cfg
        for role in ("teacher", "student"):
            name = getattr(cfg, role)
            if not name or name == "from_teacher":
                continue
            with problems.check():
                path = M.resolve_path(name)
                MF.check_folder(path, name, role)
                M.check_labels(path, name, self.data.label_names, role, self.head)
                if (role == "teacher" and cfg.finetune_teacher == "no" and cfg.strategy != "finetune"
                        and MF.head_in_checkpoint(path) is False):
                    raise M.untrained_teacher(name)
            with problems.check():
                if self._fine_tuned(role, name):  # freezing applies to the model being fine-tuned
                    MF.check_freeze_depth(M.resolve_path(name), name, role, cfg.freeze_layers)

    def fine_tunes_teacher(self) -> bool:
        try:
            return bool(self.cfg.teacher) and self._fine_tuned("teacher", self.cfg.teacher)
        except Exception:  # a missing folder is reported by check_models
            return super().fine_tunes_teacher()

    def _fine_tuned(self, role: str, name: str) -> bool:
        cfg = self.cfg
        if role == "student":
            return cfg.strategy == "finetune"
        trained = MF.head_in_checkpoint(M.resolve_path(name))  # None: unknown until loaded
        return cfg.finetune_teacher == "yes" or (cfg.finetune_teacher == "auto" and trained is not True)

    def check_terms(self, objective, problems) -> None:
        """Token-level terms against the tokenizers (no weights needed); layer maps, module paths and
        head counts against weightless (meta-device) copies of the models built from config.json."""
        import torch
        from transformers import AutoConfig

        from ..losses.objective import _terms, needs, token_terms_error

        cfg = self.cfg
        with problems.check():
            t_tok = M.load_tokenizer(cfg.teacher)
            s_tok = t_tok if cfg.student == "from_teacher" else M.load_tokenizer(cfg.student)
            if needs(objective, "token_level") and not M.same_tokenizer(s_tok, t_tok):
                raise token_terms_error(objective)

        def weightless(name):
            labels = {} if self.head == "ForQuestionAnswering" else M.label_maps(self.data.label_names)
            conf = AutoConfig.from_pretrained(M.resolve_path(name), **labels)
            with torch.device("meta"):
                return self.auto_class().from_config(conf)

        try:
            teacher = weightless(cfg.teacher)
            student = M.build_student(teacher, cfg.student_layers) if cfg.student == "from_teacher" else weightless(cfg.student)
        except DistilTuneError as e:
            problems.found.append(e)
            return
        except Exception:  # an architecture that cannot be built weightless: the trainer checks the terms later
            return
        for term in _terms(objective):
            with problems.check():
                term.setup(student, teacher)

    def weights_bytes(self, role: str) -> int | None:
        name = getattr(self.cfg, role)
        return MF.weights_bytes(M.resolve_path(name)) if name and name != "from_teacher" else None

    # ---- models ----
    def load(self, name: str, role: str) -> Loaded:
        tok = M.load_tokenizer(name)
        model, trained = M.load_classifier(name, self.data.label_names, role, self.auto_class(), self.head)
        return Loaded(model, tok, trained)

    def load_trained(self, path: str, role: str):
        return M.load_classifier(path, self.data.label_names, role, self.auto_class(), self.head)[0]

    def student_from_teacher(self, teacher, layers):
        student = M.build_student(teacher, layers)
        return student, student.config.distiltune_teacher_layers

    def freeze(self, model) -> None:
        M.freeze(model, self.cfg.freeze_embeddings, self.cfg.freeze_layers)

    def check_pair(self, teacher, student) -> None:
        t, s = teacher.config, student.config
        if t.num_labels != s.num_labels:
            raise DistilTuneError(f"teacher has {t.num_labels} labels but student has {s.num_labels}",
                                  "give both models the same label set (the data's)")
        if [t.id2label[i] for i in sorted(t.id2label)] != [s.id2label[i] for i in sorted(s.id2label)]:
            raise DistilTuneError(f"teacher labels {list(t.id2label.values())} differ from student labels {list(s.id2label.values())}",
                                  "give both models the same label names in the same order")

    def same_inputs(self, student_tokenizer, teacher_tokenizer) -> bool:
        return M.same_tokenizer(student_tokenizer, teacher_tokenizer)

    def save(self, model, tokenizer, path, card, extra) -> None:
        M.save_model(model, tokenizer, path, card, extra)

    # ---- rows ----
    def max_length(self, tokenizer) -> int:
        limit = tokenizer.model_max_length if 0 < tokenizer.model_max_length < 100_000 else self.cfg.max_length
        return min(self.cfg.max_length, limit)

    def encode(self, rows, tokenizer, prefix: str = "", length: int | None = None):
        """Tokenise once per (rows, tokenizer, length) and reuse it in every stage that reads them."""
        length = length or self.max_length(tokenizer)
        key = (getattr(rows, "_fingerprint", id(rows)), id(tokenizer), length, prefix, self.data.text_columns)
        if key not in self.encoded:
            self.encoded[key] = self.tokenize(rows, tokenizer, length, prefix)
        return self.encoded[key]

    def tokenize(self, rows, tokenizer, length: int, prefix: str):
        return tokenize(rows, tokenizer, self.data.text_columns, length, prefix)

    def collator(self, tokenizer, teacher_tokenizer=None):
        return DistillCollator(tokenizer, teacher_tokenizer, regression=self.data.task_type == "regression",
                               pad_to_multiple_of=pad_multiple(self.cfg))

    def batcher(self, tokenizer, teacher_tokenizer=None, exact: bool = False):
        return Padder(tokenizer, teacher_tokenizer, pad_to_multiple_of=None if exact else pad_multiple(self.cfg))

    def teacher_inputs(self, rows, tokenizer, teacher_tokenizer, same: bool):
        if same:  # shared tokenisation: the teacher reads the student's columns
            return rows, ""
        return self.encode(rows, teacher_tokenizer, prefix="teacher_"), "teacher_"

    # ---- score ----
    def metrics(self, predictions, labels) -> dict[str, float]:
        return task_metrics(predictions, labels, self.data.task_type)

    # ---- export ----
    def export_plan(self, model, tokenizer, test, batcher, source: str) -> dict:
        if tokenizer.pad_token_id is None:
            raise DistilTuneError(f"the tokenizer of {source} has no pad token, so batches of texts cannot be padded",
                                  "set one before saving (tokenizer.pad_token = tokenizer.eos_token) and save the folder again")
        # Two rows of different lengths, padded: the traced graph keeps the attention mask's general path.
        order = np.argsort(test["length"])
        pick = [int(order[-1]), int(order[len(order) // 2])] if len(test) > 1 else [0, 0]
        meta = {"max_length": self.max_length(tokenizer), "pad_token_id": tokenizer.pad_token_id,
                "pad_token": tokenizer.pad_token, "pad_token_type_id": getattr(tokenizer, "pad_token_type_id", 0),
                "padding_side": tokenizer.padding_side, "truncation_side": tokenizer.truncation_side,
                "text_columns": list(self.data.text_columns)}
        return {"sample_rows": pick, "meta": meta, "calibration": None}
