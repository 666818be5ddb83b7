"""The distillation rows: labelled + unlabeled (+ seeded augmented copies), tokenised for the
student, with the teacher's logits joined from the teacher-output cache (a Pipeline mixin)."""
from __future__ import annotations

import os

from datasets import concatenate_datasets

from ..models.inference import predict_logits


class DistillDataStage:
    def mlm_filler(self):
        """The masked LM for augment 'mlm' (loaded once), or None."""
        if not (self.cfg.augment and "mlm" in self.cfg.augment):
            return None
        if getattr(self, "_mlm", None) is None:
            from ..data.augment import MLMFiller

            self._mlm = MLMFiller(self.cfg.augment_mlm_model or self.cfg.teacher)
        return self._mlm

    def distill_train_set(self, teacher, s_tok, live: bool = False):
        """Labelled + unlabeled rows, tokenised for the student. Teacher logits are attached once
        (cached) unless ``live``: then the teacher runs every step, on its own tokenisation when
        its tokenizer differs from the student's."""
        cfg, data = self.cfg, self.data
        rows = data.train if data.unlabeled is None else concatenate_datasets([data.train, data.unlabeled])
        self.augmented = 0
        if cfg.augment:
            from ..data.augment import expand
            from ..constants import IGNORE_INDEX

            aug = self.__dict__.setdefault("_augmented_rows", {}).get(rows._fingerprint)
            if aug is None:
                print(f"[distiltune] augmenting {len(rows)} rows x {cfg.augment_factor or 1} ({', '.join(cfg.augment)}, "
                      f"p={cfg.augment_prob:g}, seed {cfg.seed})")
                aug = expand(rows, data.text_columns, cfg.augment, cfg.augment_factor or 1, cfg.augment_prob, cfg.seed,
                             s_tok.mask_token or s_tok.unk_token or "_", self.mlm_filler(),
                             float("nan") if data.task_type == "regression" else IGNORE_INDEX)
                self._augmented_rows[rows._fingerprint] = aug
            self.augmented = len(aug)
            rows = concatenate_datasets([rows, aug])
        ds = self._tok(rows, s_tok)
        if live or not cfg.teacher_cache:
            return ds if self.same_tokenizer else self._tok(ds, self.teacher_tok, prefix="teacher_")
        from accelerate import PartialState

        from ..data.teacher_cache import TeacherCache

        prefix = "" if self.same_tokenizer else "teacher_"  # shared tokenisation: read the student's columns
        t_ds = ds if self.same_tokenizer else self._tok(ds, self.teacher_tok, prefix="teacher_")
        padder = self._padder(s_tok, self.teacher_tok)
        columns = [f"{prefix}{k}" for k in padder.keys if f"{prefix}{k}" in t_ds.column_names]

        def predict(rows):
            teacher.to(cfg.device)  # the training device (a GPU when there is one), not where it was loaded
            # inference keeps no activations for backward: on a GPU, bigger batches fill it
            return predict_logits(teacher, padder, rows, batch_size=64 if cfg.device.type == "cpu" else 256,
                                  bf16=cfg.bf16, desc="teacher logits",
                                  prefix=prefix, progress=not cfg.disable_tqdm and len(rows) > 64)

        cache = TeacherCache(os.path.join(self.out, "cache", "teacher"), self.teacher_fp, cfg.teacher_cache_topk,
                             "bf16" if cfg.bf16 else "fp32")
        with PartialState().main_process_first():  # one process computes it; the others then read it
            out = cache.attach(ds, t_ds, columns, predict)
        if cache.built_seconds is not None:
            print(f"[distiltune] teacher labelled {len(rows)} rows once (cached in {cache.root}; reused every epoch)")
            self.timings["teacher_logits"] = cache.built_seconds
        return out
