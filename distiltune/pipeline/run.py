"""The pipeline: (fine-tune teacher) -> teacher labels the data -> distil -> (fine-tune student)
-> baseline student -> evaluate all -> report. Each training stage is one DistillationTrainer run."""
from __future__ import annotations

import copy
import dataclasses
import json
import os
import shutil
import time

import numpy as np
from accelerate import PartialState
from transformers import set_seed

from ..training import checkpoints as CK
from ..models import hf as M
from ..config.schema import DistillConfig
from ..config.io import save_config, to_yaml_dict
from ..data.collate import DistillCollator, tokenize
from ..data.load import load_task_data
from ..errors import DistilTuneError
from ..losses.objective import describe, logits_only, needs
from ..data.collate import Padder
from ..models.inference import measure_speeds, predict_logits
from ..tasks.metrics import task_metrics
from ..report.build import model_card, write_atomic, write_report
from .export_stage import ExportStage
from .distil_rows import DistillDataStage
from .preflight import PreflightStage, token_terms_error
from .outputs import StageBook, fingerprint, prepare_output_dir
from ..training.trainer import DistillationTrainer, finetune_objective
from ..training.callbacks import EpochTimer

# Config keys that do not change what a stage produces (ignored in stage fingerprints).
_NOT_IN_FINGERPRINT = {"output_dir", "logging_steps", "report_to", "latency_samples", "throughput_batch_size",
                       "baseline", "disable_tqdm", "logging_strategy", "logging_first_step", "save_strategy",
                       "save_total_limit", "save_steps", "run_name", "project", "trackio_space_id",
                       "dataloader_num_workers", "log_level", "export",
                       "nan_policy", "grad_spike_factor"}  # so `--resume --nan_policy skip` continues a stopped stage


# Settings that shape any training stage (each stage adds its own model, data and epochs).
TRAIN_KEYS = ("per_device_train_batch_size", "gradient_accumulation_steps", "seed", "max_length", "mixed_precision",
              "weight_decay", "warmup_steps", "lr_scheduler_type", "optim", "max_grad_norm", "train_sampling_strategy")


class Pipeline(PreflightStage, DistillDataStage, ExportStage):
    # TrainerCallbacks added to every training stage (e.g. a profiler or a custom logger)
    extra_callbacks: tuple = ()

    def __init__(self, cfg: DistillConfig, overwrite: bool = False, resume: bool = False, out: str | None = None,
                 defer: bool = False):
        """``defer``: check output_dir with the other inputs in ``run`` (all problems reported at once)
        and touch it only once they pass."""
        self.cfg, self.resume = cfg, resume
        self.out = out or cfg.output_dir
        self._pending = (overwrite, resume) if defer else None
        if not defer:
            self._prepare_output(overwrite, resume)
        self.timings: dict[str, float] = {}
        self.epoch_seconds: dict[str, list[float]] = {}  # stage -> wall seconds per epoch
        self.selection: dict[str, dict] = {}  # stage -> which checkpoint was kept (validation monitoring)

    def _prepare_output(self, overwrite: bool, resume: bool) -> None:
        state = PartialState()  # one process per device under torchrun / accelerate launch
        if state.is_main_process:  # only rank 0 clears and writes the output folder
            prepare_output_dir(self.out, overwrite, resume)
        state.wait_for_everyone()
        self.book = StageBook(self.out, reuse=resume, write=state.is_main_process)

    @classmethod
    def detached(cls, cfg: DistillConfig) -> "Pipeline":
        """For work on finished models (``distiltune export``): no output folder, no stage records."""
        p = cls.__new__(cls)
        p.cfg, p.resume, p.out, p.timings, p.selection, p.epoch_seconds = cfg, False, None, {}, {}, {}
        return p

    # ------------------------------------------------------------------ helpers
    def _fp(self, *extra) -> str:
        d = {k: v for k, v in to_yaml_dict(self.cfg).items() if k not in _NOT_IN_FINGERPRINT}
        return fingerprint(d, *extra)

    def _args(self, stage: str, **changes) -> DistillConfig:
        os.environ["TENSORBOARD_LOGGING_DIR"] = os.path.join(self.out, "tensorboard", stage)
        if self.cfg.load_best_model_at_end and self.cfg.best_metric_is_task_metric:
            changes.setdefault("metric_for_best_model", self.data.metric)
            changes.setdefault("greater_is_better", True)  # accuracy, f1, matthews, pearson, spearman
        # Stages run for epochs: a max_steps meant for one stage must not cut the others short.
        return dataclasses.replace(self.cfg, output_dir=os.path.join(self.out, "checkpoints", stage),
                                   remove_unused_columns=False, max_steps=-1, **changes)

    def _train_fp(self, *extra) -> str:
        return fingerprint({k: getattr(self.cfg, k) for k in TRAIN_KEYS}, *extra)

    def _train(self, stage: str, fp: str, model, tokenizer, train_ds, objective, epochs: float, lr: float,
               teacher=None, teacher_tokenizer=None, temperature=None):
        """One Trainer run. With --resume it continues from the stage's last checkpoint, but only if
        that checkpoint was made with the same inputs (``fp``); otherwise it starts afresh."""
        args = self._args(stage, num_train_epochs=epochs, learning_rate=lr)
        stamp = os.path.join(args.output_dir, "fingerprint")
        state = PartialState()
        if state.is_main_process:
            if os.path.isdir(args.output_dir) and (not os.path.isfile(stamp) or open(stamp).read() != fp):
                shutil.rmtree(args.output_dir)
            os.makedirs(args.output_dir, exist_ok=True)
            write_atomic(stamp, fp)
        state.wait_for_everyone()
        collator = self._collator(tokenizer, teacher_tokenizer)
        evaluating = str(getattr(args.eval_strategy, "value", args.eval_strategy)) != "no"
        if evaluating and len(self.data.validation) == 0:
            raise DistilTuneError("validation during training (eval_strategy, load_best_model_at_end or "
                                  "early_stopping_patience) needs validation rows, but the validation split is empty",
                                  "give validation_file, or a validation_size > 0")
        timer = EpochTimer()
        callbacks = [timer, *self.extra_callbacks]
        if self.cfg.early_stopping_patience:
            from transformers import EarlyStoppingCallback

            callbacks.append(EarlyStoppingCallback(self.cfg.early_stopping_patience))
        trainer = DistillationTrainer(model=model, args=args, train_dataset=train_ds, data_collator=collator,
                                      processing_class=tokenizer, teacher=teacher, objective=objective,
                                      temperature=temperature,
                                      eval_dataset=self._tok(self.data.validation, tokenizer) if evaluating else None,
                                      compute_metrics=self._compute_metrics if evaluating else None,
                                      callbacks=callbacks)
        last = None
        if self.resume:
            dropped = CK.discard_incomplete(args.output_dir) if state.is_main_process else []
            state.wait_for_everyone()
            if dropped:
                print(f"[distiltune] {stage}: removed incomplete checkpoint(s) {', '.join(dropped)} (cut short by a kill)")
            last = CK.last_complete(args.output_dir)
            if last:
                print(f"[distiltune] {stage}: resuming from {os.path.relpath(last, self.out)}")
        t0 = time.perf_counter()
        trainer.train(resume_from_checkpoint=last)
        self.timings[stage] = time.perf_counter() - t0
        self.epoch_seconds[stage] = timer.seconds
        if trainer.is_world_process_zero():  # the report's training curves
            logs = os.path.join(self.out, "logs")
            os.makedirs(logs, exist_ok=True)
            write_atomic(os.path.join(logs, f"{stage}.json"), json.dumps(trainer.state.log_history))
        if args.load_best_model_at_end:
            self.selection[stage] = checkpoint_choice(trainer.state, args.metric_for_best_model, epochs)
        return M.plain_model(trainer.model)

    def _resuming(self, stage: str, fp: str) -> bool:
        """Whether --resume will continue ``stage`` from a checkpoint made with the same inputs
        (then the stages before it need not run again)."""
        ckpt = os.path.join(self.out, "checkpoints", stage)
        stamp = os.path.join(ckpt, "fingerprint")
        return (self.resume and os.path.isfile(stamp) and open(stamp).read() == fp
                and CK.last_complete(ckpt) is not None)

    def _compute_metrics(self, pred) -> dict:
        """Validation metrics during training (when eval_strategy is set): same code as the final evaluation."""
        return task_metrics(np.asarray(pred.predictions), np.asarray(pred.label_ids), self.data.task_type)

    def _save(self, model, tokenizer, name: str, how: str, stages: tuple[str, ...] = ()) -> str:
        """Write the final model folder, then drop the finished stages' resume checkpoints (GBs for a teacher)."""
        path = os.path.join(self.out, name)
        state = PartialState()
        if state.is_main_process:  # every rank holds the same weights (DDP): one writes them
            with open(os.path.join(self.out, "config.yaml")) as f:  # the resolved run config travels with the model
                config_text = f.read()
            self._write_model(model, tokenizer, path, model_card(name, how, self.cfg, self.data),
                              {"distiltune_config.yaml": config_text})
            for stage in stages or (name,):
                shutil.rmtree(os.path.join(self.out, "checkpoints", stage), ignore_errors=True)
        state.wait_for_everyone()
        return path

    def _tok(self, ds, tokenizer, prefix=""):
        """Tokenise once per (rows, tokenizer, length) and reuse it in every stage that reads them."""
        limit = tokenizer.model_max_length if 0 < tokenizer.model_max_length < 100_000 else self.cfg.max_length
        length = min(self.cfg.max_length, limit)
        memo = self.__dict__.setdefault("_tokenised", {})
        key = (getattr(ds, "_fingerprint", id(ds)), id(tokenizer), length, prefix, self.data.text_columns)
        if key not in memo:
            memo[key] = tokenize(ds, tokenizer, self.data.text_columns, length, prefix)
        return memo[key]

    # ------------------------------------------------------------------ model kind
    # Text transformers here; ModulePipeline overrides these for any nn.Module.
    def _load_model(self, name: str, role: str):
        """(model, tokenizer, head_trained) for a teacher/student reference."""
        tok = M.load_tokenizer(name)
        model, trained = M.load_classifier(name, self.data.label_names, role)
        return model, tok, trained

    def _load_trained(self, path: str, role: str):
        return M.load_classifier(path, self.data.label_names, role)[0]

    def _write_model(self, model, tokenizer, path: str, card: str, extra: dict) -> None:
        M.save_model(model, tokenizer, path, card, extra)

    def _pad_multiple(self) -> int | None:
        # On a GPU, lengths padded to a multiple of 8 suit its matrix units and bound the number of
        # distinct shapes (each new one costs kernel selection); on a CPU the extra padding is pure waste.
        import torch

        return 8 if torch.cuda.is_available() and not self.cfg.use_cpu else None

    def _collator(self, tokenizer, teacher_tokenizer=None):
        return DistillCollator(tokenizer, teacher_tokenizer, regression=self.data.task_type == "regression",
                               pad_to_multiple_of=self._pad_multiple())

    def _padder(self, tokenizer, teacher_tokenizer=None, exact: bool = False):
        """Padding for teacher-cache and evaluation passes; ``exact`` for CPU timing and export, as deployed."""
        return Padder(tokenizer, teacher_tokenizer, pad_to_multiple_of=None if exact else self._pad_multiple())

    def _same_tokenizer(self, a, b) -> bool:
        return M.same_tokenizer(a, b)

    # ------------------------------------------------------------------ stages
    def teacher_stage(self):
        """Returns (teacher model or None, tokenizer, path used for evaluation)."""
        cfg = self.cfg
        self.teacher_fp = None  # identifies the teacher for stages that depend on it
        if not cfg.teacher:
            return None, None, None
        model, tok, trained = self._load_model(cfg.teacher, "teacher")
        if cfg.finetune_teacher == "no" and not trained:
            raise M.untrained_teacher(cfg.teacher)
        if cfg.finetune_teacher == "no" or (cfg.finetune_teacher == "auto" and trained):
            self.teacher_how = f"given ({cfg.teacher}), not fine-tuned here"
            self.teacher_fp = M.weights_fingerprint(M.resolve_path(cfg.teacher))
            return model, tok, M.resolve_path(cfg.teacher)
        path = os.path.join(self.out, "teacher")
        keys = ("teacher", "teacher_num_train_epochs", "teacher_learning_rate", "freeze_embeddings", "freeze_layers")
        fp = self.teacher_fp = self._train_fp({k: getattr(cfg, k) for k in keys}, self.data.fingerprint(("train",)))
        self.teacher_how = f"{cfg.teacher} fine-tuned on {len(self.data.train)} labelled rows, {cfg.teacher_num_train_epochs:g} epochs"
        if self.book.done("teacher", fp, path):
            print(f"[distiltune] reusing the fine-tuned teacher in {path} (inputs unchanged)")
            model = self._load_trained(path, "teacher")
            self.timings["teacher"] = self.book.info("teacher").get("seconds", 0.0)
            return model, tok, path
        print(f"[distiltune] fine-tuning the teacher on {len(self.data.train)} labelled rows")
        set_seed(cfg.seed)
        M.freeze(model, cfg.freeze_embeddings, cfg.freeze_layers)
        model = self._train("teacher", fp, model, tok, self._tok(self.data.train, tok), finetune_objective(),
                            cfg.teacher_num_train_epochs, cfg.teacher_learning_rate)
        model.requires_grad_(True)
        self._save(model, tok, "teacher", self.teacher_how)
        self.book.mark("teacher", fp, seconds=self.timings["teacher"])
        return model, tok, path

    def student_init(self, teacher):
        cfg = self.cfg
        set_seed(cfg.seed)  # same head init for the distilled and the baseline student
        if cfg.student == "from_teacher":
            student = M.build_student(teacher, cfg.student_layers)
            tok = self.teacher_tok
            how = f"layers {student.config.distiltune_teacher_layers} of the teacher"
        else:
            student, tok, _ = self._load_model(cfg.student, "student")
            how = f"pretrained {cfg.student}"
        return student, tok, how

    def prepare_terms(self, teacher, student, s_tok):
        """Check the objective against the models before training: token-level terms need one
        tokenisation; attention-map terms need eager attention (SDPA returns no maps)."""
        objectives = self.cfg.objectives
        every = objectives["intermediate"] + objectives["main"]
        self.same_tokenizer = self._same_tokenizer(s_tok, self.teacher_tok)
        if not self.same_tokenizer and needs(every, "token_level"):
            raise token_terms_error(every)
        self._attn_restore = []
        if needs(every, "reads_attentions"):
            for model in (teacher, student):
                impl = getattr(getattr(model, "config", None), "_attn_implementation", "eager")
                if impl != "eager":
                    model.set_attn_implementation("eager")  # attention maps need it; saved models keep the default
                    self._attn_restore.append((model, impl))
        return objectives

    def restore_attention(self):
        """Back to the models' own attention implementation, so they are timed as deployed."""
        for model, impl in getattr(self, "_attn_restore", []):
            model.set_attn_implementation(impl)

    def evaluate_model(self, name, model, tok, path) -> dict:
        test = self._tok(self.data.test, tok)
        padder = self._padder(tok)
        logits = predict_logits(model, padder, test, bf16=self.cfg.bf16, desc=f"evaluating {name}",
                                progress=not self.cfg.disable_tqdm)
        labels = np.asarray(test["labels"])
        metrics = task_metrics(logits, labels, self.data.task_type)
        return {"metric": metrics[self.data.metric], **metrics, "params": M.count_params(model),
                "size_mb": round(M.model_size_mb(path), 4) if path and os.path.isdir(path) else None,
                "path": path, "_speed_input": (model, self._padder(tok, exact=True), test), "_logits": logits}

    def measure(self, results: dict) -> dict:
        """Speed of all evaluated models, side by side (fp32 on CPU, as deployed without export)."""
        entries = {name: (M.cpu_copy(r["_speed_input"][0]), *r.pop("_speed_input")[1:]) for name, r in results.items()}
        print(f"[distiltune] measuring latency and throughput of {', '.join(entries)} side by side")
        speeds = measure_speeds(entries, self.cfg.latency_samples, self.cfg.throughput_batch_size)
        for name, r in results.items():
            r.update(speeds[name])
        return results

    # ------------------------------------------------------------------ run
    def run(self) -> dict:
        cfg = self.cfg
        t_start = time.perf_counter()
        self.preflight()
        data = self.data
        set_seed(cfg.seed)
        print(f"[distiltune] data: {len(data.train)} labelled, {0 if data.unlabeled is None else len(data.unlabeled)} "
              f"unlabeled, {len(data.validation)} validation, {len(data.test)} test rows; labels {data.label_names}")
        if PartialState().is_main_process:
            save_config(cfg, os.path.join(self.out, "config.yaml"))
        teacher, self.teacher_tok, teacher_path = self.teacher_stage()
        student0, s_tok, init_how = self.student_init(teacher)
        self._check_heads(teacher, student0)
        baseline_init = copy.deepcopy(student0) if cfg.baseline and cfg.strategy != "finetune" else None

        fp = self._fp(self.teacher_fp, data.fingerprint(("train", "unlabeled")))
        student_path = os.path.join(self.out, "student")
        if self.book.done("student", fp, student_path):
            print(f"[distiltune] reusing the student in {student_path} (inputs unchanged)")
            student = self._load_trained(student_path, "student")
        elif cfg.strategy == "finetune":
            M.freeze(student0, cfg.freeze_embeddings, cfg.freeze_layers)
            student = self._train("student", fp, student0, s_tok, self._tok(data.train, s_tok), finetune_objective(),
                                  cfg.num_train_epochs, cfg.learning_rate)
            self._save(student, s_tok, "student", f"{init_how}, fine-tuned on {len(data.train)} labelled rows")
        else:
            objectives = self.prepare_terms(teacher, student0, s_tok)
            live = not all(logits_only(objectives["intermediate"] + objectives["main"]))
            train_set = self.distill_train_set(teacher, s_tok, live=live)
            if objectives["intermediate"] and cfg.intermediate_epochs > 0 and not self._resuming("distill", fp):
                print(f"[distiltune] intermediate stage: {', '.join(n for n, *_ in objectives['intermediate'])} "
                      f"for {cfg.intermediate_epochs:g} epochs")
                student0 = self._train("intermediate", fp, student0, s_tok, train_set, objectives["intermediate"],
                                       cfg.intermediate_epochs, cfg.learning_rate, teacher=teacher,
                                       teacher_tokenizer=self.teacher_tok)
            student = self._train("distill", fp, student0, s_tok, train_set, objectives["main"],
                                  cfg.num_train_epochs, cfg.learning_rate, teacher=teacher,
                                  teacher_tokenizer=self.teacher_tok, temperature=cfg.temperature_sched)
            aug = f", {self.augmented} augmented" if self.augmented else ""
            how = (f"{init_how}, distilled from the teacher on {len(train_set)} rows ({len(data.train)} labelled{aug}), "
                   f"T {cfg.temperature_sched}, loss {describe(objectives['main'])}")
            if objectives["intermediate"] and cfg.intermediate_epochs > 0:
                how += f"; after {cfg.intermediate_epochs:g} intermediate epochs of {describe(objectives['intermediate'])}"
            if cfg.strategy == "distill_finetune" and cfg.final_finetune_epochs > 0:
                student = self._train("student_finetune", fp, student, s_tok, self._tok(data.train, s_tok),
                                      finetune_objective(), cfg.final_finetune_epochs, cfg.learning_rate)
                how += f"; then {cfg.final_finetune_epochs:g} hard-label epochs"
            self.restore_attention()
            self._save(student, s_tok, "student", how, stages=("intermediate", "distill", "student_finetune"))
        if "student" in self.timings or "distill" in self.timings:
            self.book.mark("student", fp, seconds=sum(self.timings.get(k, 0) for k in
                                                      ("intermediate", "distill", "student_finetune", "student")))

        baseline_path = os.path.join(self.out, "baseline_student")
        baseline = None
        if baseline_init is not None:
            epochs = cfg.num_train_epochs + (cfg.final_finetune_epochs if cfg.strategy == "distill_finetune" else 0)
            init = self.teacher_fp if cfg.student == "from_teacher" else cfg.student
            bfp = self._train_fp(init, cfg.student_layers, epochs, cfg.learning_rate, data.fingerprint(("train",)))
            if self.book.done("baseline_student", bfp, baseline_path):
                baseline = self._load_trained(baseline_path, "baseline student")
            else:
                baseline = self._train("baseline_student", bfp, baseline_init, s_tok, self._tok(data.train, s_tok),
                                       finetune_objective(), epochs, cfg.learning_rate)
                self._save(baseline, s_tok, "baseline_student",
                           f"{init_how}, fine-tuned on the {len(data.train)} labelled rows alone for {epochs:g} epochs "
                           "(same init and budget as the student, no teacher): the no-distillation baseline")
                self.book.mark("baseline_student", bfp, seconds=self.timings["baseline_student"])

        if not PartialState().is_main_process:
            return None  # evaluation, timing and the report: rank 0 alone (one copy, timed without a busy peer)
        results = {}
        for name, model, tok, path in (("teacher", teacher, self.teacher_tok, teacher_path),
                                       ("student", student, s_tok, student_path),
                                       ("baseline_student", baseline, s_tok, baseline_path)):
            if model is not None:
                print(f"[distiltune] evaluating {name} on {len(data.test)} test rows")
                results[name] = self.evaluate_model(name, model, tok, path)
        export_dir = os.path.join(self.out, "student_onnx")
        export_error = None
        if cfg.export and student is not None:
            t0 = time.perf_counter()
            try:
                self.export_student(student, s_tok, student_path, results, export_dir, cfg.export)
            except DistilTuneError as e:  # the trained models and their report must not be lost to it
                export_error = e
                for name in ("student_onnx", "student_int8"):
                    results.pop(name, None)
            self.timings["export"] = time.perf_counter() - t0
        self.measure(results)
        self.timings["total"] = time.perf_counter() - t_start
        report = write_report(self.out, cfg, data, results, self.timings, logs_dir=os.path.join(self.out, "logs"),
                              selection=self.selection)
        if export_error is not None:
            raise DistilTuneError(f"{export_error.problem} (the run itself finished: models and report.md are in {self.out})",
                                  export_error.fix)
        if cfg.export and student is not None:
            self.check_export(results, cfg.export, export_dir)
        return report

    def _check_heads(self, teacher, student):
        if teacher is None or student is None:
            return
        t, s = teacher.config, student.config
        if t.num_labels != s.num_labels:
            raise DistilTuneError(f"teacher has {t.num_labels} labels but student has {s.num_labels}",
                                  "give both models the same label set (the data's)")
        if [t.id2label[i] for i in sorted(t.id2label)] != [s.id2label[i] for i in sorted(s.id2label)]:
            raise DistilTuneError(f"teacher labels {list(t.id2label.values())} differ from student labels {list(s.id2label.values())}",
                                  "give both models the same label names in the same order")


def checkpoint_choice(state, metric: str, epochs_planned: float) -> dict:
    """Which checkpoint a stage kept: the best validation score, its epoch, and whether it stopped early."""
    key = metric if metric.startswith("eval_") else f"eval_{metric}"
    step = int(state.best_model_checkpoint.rsplit("-", 1)[-1]) if state.best_model_checkpoint else None
    at = next((e for e in state.log_history if e.get("step") == step and key in e), {})
    return {"metric": key[5:], "best": state.best_metric, "best_step": step, "best_epoch": at.get("epoch"),
            "epochs_run": round(state.epoch or 0.0, 3), "epochs_planned": epochs_planned,
            "stopped_early": (state.epoch or 0.0) < epochs_planned - 1e-6,
            "evaluations": [e[key] for e in state.log_history if key in e]}


def run_pipeline(cfg: DistillConfig, overwrite: bool = False, resume: bool = False) -> dict:
    """Run the configured pipeline; returns the report dict (also written to ``output_dir``)."""
    from .module_pipeline import pipeline_class

    return pipeline_class(cfg)(cfg, overwrite=overwrite, resume=resume, defer=True).run()


def evaluate_models(cfg: DistillConfig, model_dirs: list[str], overwrite: bool = False, resume: bool = False) -> dict:
    """``distiltune evaluate``: the config's teacher (if any) and each model folder on the test split."""
    # Its own folder: evaluating <run>/student never touches the run that made it.
    from .module_pipeline import pipeline_class

    p = pipeline_class(cfg)(cfg, overwrite=overwrite, resume=resume, out=os.path.join(cfg.output_dir, "evaluation"))
    p.data = load_task_data(cfg)
    results = {}
    todo = ([("teacher", cfg.teacher)] if cfg.teacher else []) + [
        ("student" if i == 0 else f"model_{i}", d) for i, d in enumerate(model_dirs)]
    for name, path in todo:
        model, tok, trained = p._load_model(path, name)
        if not trained:
            raise DistilTuneError(f"'{path}' is untrained (a fresh classifier head or network); its predictions would be noise",
                                  "evaluate a trained model folder (e.g. <output_dir>/student)")
        results[name] = p.evaluate_model(name, model, tok, M.resolve_path(path))
    p.measure(results)
    save_config(cfg, os.path.join(p.out, "config.yaml"))
    return write_report(p.out, cfg, p.data, results, {})
