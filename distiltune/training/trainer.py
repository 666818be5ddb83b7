"""One ``transformers.Trainer`` subclass for every strategy: it sums named, weighted loss terms.

Fine-tuning is the objective ``[("ce", 1)]``; distillation is ``[("ce", 1 - w), ("kd", w)]`` with ``w`` and
the temperature given as schedules. The loop, checkpointing, mixed precision and distribution are the Trainer's.
"""
from __future__ import annotations

import contextlib
import os

import torch
from torch import nn
from transformers import Trainer
from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR, rotate_checkpoints

from . import checkpoints as CK
from . import online as OT
from ..data import teacher_cache as TC
from .callbacks import _ZeroTermGrads
from .forward import eval_forward, forward_all
from .monitor import GradSpikes, NonFiniteGuard, TermSums
from .sampler import EpochSeededLengthSampler
from .token_mean import token_scales
from ..errors import DistilTuneError
from ..losses import LossTerm, build_term, hard_label_loss
from ..losses.objective import Weight, distill_objective, finetune_objective, normalise_entry
from ..schedules import Schedule, spanned

__all__ = ["DistillationTrainer", "Weight", "distill_objective", "finetune_objective"]


class DistillationTrainer(Trainer):
    """``Trainer`` whose loss is ``sum_i weight_i(progress) * term_i(student_out, teacher_out, batch)``.

    ``objective`` lists ``(name, weight)`` or ``(name, weight, options)``; a weight is a number or
    a schedule. Terms say what they read (hidden states, attentions, hooked submodules) and only
    that is captured. Teacher logits come from a ``teacher_logits`` column when the dataset
    carries them and every active term needs no more; otherwise the frozen ``teacher`` runs on
    the batch's ``teacher_*`` inputs (its own tokenisation) or on the student's inputs.
    Projections owned by terms train with the student and are checkpointed beside it
    (``distill_terms.safetensors``) but are not part of the student.
    """

    TERMS_FILE = "distill_terms.safetensors"

    def __init__(self, *args, teacher: nn.Module | None = None, objective=None,
                 temperature: Weight | None = None, schedule_epochs: float | None = None,
                 online_teacher_lr: float | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        self.schedule_epochs = schedule_epochs
        # An online teacher keeps learning the labels while it teaches (see training.online)
        self.online_teacher_lr = online_teacher_lr if teacher is not None else None
        self.objective = [normalise_entry(o) for o in (objective or finetune_objective())]
        if len(set(k for k, *_ in self.objective)) != len(self.objective):
            raise DistilTuneError(f"the objective names a term twice ({[k for k, *_ in self.objective]})",
                                  "give the second one its own key: (name, weight, {'key': 'name_2', ...})")
        self.terms = nn.ModuleDict({key: build_term(name, **opts) for key, name, _, opts in self.objective})
        self.temperature = temperature or Schedule("constant", 1.0)
        self.teacher = teacher
        if teacher is not None:
            teacher.train(self.online_teacher_lr is not None)
            teacher.requires_grad_(self.online_teacher_lr is not None)  # a frozen teacher keeps no gradient state
            teacher.to(self.args.device)
        if teacher is None:
            live = [k for k, t in self.terms.items() if t.needs_teacher and not (t.uses_logits_only and self._has_cache())]
            if live:
                raise DistilTuneError(f"loss terms {live} need the teacher model", "pass teacher=<model> (a teacher_logits "
                                      "column in the dataset can stand in for it only for logit terms)")
        self._setup_terms()
        if self._term_params():
            self.add_callback(_ZeroTermGrads(self.terms))
        if self.online_teacher_lr is not None:  # outside the (DDP-wrapped) model, like the terms
            self.add_callback(_ZeroTermGrads(self.teacher))
        # Our loss is already a per-batch mean; stop the Trainer rescaling by token counts.
        self.model_accepts_loss_kwargs = False
        self.spikes = GradSpikes(getattr(self.args, "grad_spike_factor", 0))
        self.term_sums = TermSums()
        self.nan_guard = NonFiniteGuard(getattr(self.args, "nan_policy", "stop"))

    # ---- the Trainer's NaN/inf filter: off while training, the user's setting elsewhere ----
    def train(self, *args, **kwargs):
        # compute_loss never returns a non-finite training loss (it stops or skips the batch first), so
        # the Trainer's filter on it could never fire, and it costs two host syncs a step on a GPU. It
        # also drops non-finite batches from eval_loss: evaluation and the saved arguments keep the
        # user's setting.
        self._nan_filter = self.args.logging_nan_inf_filter
        self.args.logging_nan_inf_filter = False
        try:
            return super().train(*args, **kwargs)
        finally:
            self.args.logging_nan_inf_filter = self._nan_filter

    @contextlib.contextmanager
    def _users_nan_filter(self):
        now = self.args.logging_nan_inf_filter
        self.args.logging_nan_inf_filter = self.__dict__.get("_nan_filter", now)
        try:
            yield
        finally:
            self.args.logging_nan_inf_filter = now

    def evaluation_loop(self, *args, **kwargs):
        with self._users_nan_filter():
            return super().evaluation_loop(*args, **kwargs)

    # Private override: _save writes training_args.bin and has no public hook around it.
    def _save(self, *args, **kwargs):
        with self._users_nan_filter():  # training_args.bin holds what the user set
            return super()._save(*args, **kwargs)

    # ---- terms: bind to the models, size projections on one sample batch ----
    def _has_cache(self) -> bool:
        return TC.has_cache(getattr(self.train_dataset, "column_names", None))

    def _setup_terms(self) -> None:
        for term in self.terms.values():
            term.setup(self.model, self.teacher)
        if not any(_has_build(t) for t in self.terms.values()) or self.train_dataset is None:
            return
        rows = [self.train_dataset[i] for i in range(min(2, len(self.train_dataset)))]
        inputs = self._prepare_inputs(self.data_collator(rows))
        was_training = self.model.training
        self.model.eval()
        with torch.no_grad():
            s_out, t_out, batch = self._forward_all(self.model, inputs, list(self.terms))
        self.model.train(was_training)
        for term in self.terms.values():
            if _has_build(term):
                term.build(s_out, t_out)
        self.terms.to(self.args.device)

    def _term_params(self) -> list:
        return [p for p in self.terms.parameters() if p.requires_grad]

    def create_optimizer(self, model=None):
        fresh = self.optimizer is None
        optimizer = super().create_optimizer(model)
        if fresh and self._term_params():
            optimizer.add_param_group({"params": self._term_params(), "weight_decay": 0.0})
        if fresh and self.online_teacher_lr is not None:  # decays with the student's learning rate
            optimizer.add_param_group(OT.param_group(self.teacher, self.online_teacher_lr, self.args.weight_decay))
        return optimizer

    def save_model(self, output_dir: str | None = None, _internal_call: bool = False):
        super().save_model(output_dir, _internal_call)
        state = self.terms.state_dict()
        if state and self.args.should_save:
            from safetensors.torch import save_file

            out = output_dir or self.args.output_dir
            save_file({k: v.detach().cpu().contiguous() for k, v in state.items()}, os.path.join(out, self.TERMS_FILE))
        if self.online_teacher_lr is not None and self.args.should_save:  # a resumed stage goes on with the teacher it had
            OT.save(self.teacher, os.path.join(output_dir or self.args.output_dir, OT.FILE))

    # Private override: no public hook runs between writing a checkpoint and rotating old ones away
    # (on_save comes after the rotation), and sealing must come first.
    def _save_checkpoint(self, model, trial) -> None:
        """The Trainer's checkpoint, sealed with a manifest before older ones are rotated away, so a
        kill at any moment leaves at least one complete checkpoint (see ``checkpoints``)."""
        limit = self.args.save_total_limit
        self.args.save_total_limit = None  # rotate only after sealing
        try:
            super()._save_checkpoint(model, trial)
        finally:
            self.args.save_total_limit = limit
        run_dir = self._get_output_dir(trial=trial)
        self.accelerator.wait_for_everyone()  # every rank's RNG file is written before the manifest lists them
        if self.args.should_save:
            CK.seal(os.path.join(run_dir, f"{PREFIX_CHECKPOINT_DIR}-{self.state.global_step}"))
            rotate_checkpoints(output_dir=run_dir, save_total_limit=limit,
                               best_model_checkpoint=self.state.best_model_checkpoint, use_mtime=True)

    # Private override: callbacks are not told which checkpoint is resumed; the terms' projections load with the model.
    def _load_from_checkpoint(self, resume_from_checkpoint, model=None):
        super()._load_from_checkpoint(resume_from_checkpoint, model)
        path = os.path.join(resume_from_checkpoint, self.TERMS_FILE)
        if os.path.isfile(path):
            from safetensors.torch import load_file

            self.terms.load_state_dict(load_file(path, device=str(self.args.device)))
        if self.online_teacher_lr is not None:
            OT.load(self.teacher, os.path.join(resume_from_checkpoint, OT.FILE), str(self.args.device))

    # Private override: the Trainer takes no sampler argument; this is where it builds its own.
    def _get_train_sampler(self, train_dataset=None):
        """The Trainer's length-grouped sampler, given the ``length`` column as a list (indexing the
        lazy Arrow column row by row costs more than a short epoch's worth of steps), with its order
        drawn from (seed, epoch) so a run resumed mid-epoch sees the same batches."""
        ds = train_dataset if train_dataset is not None else self.train_dataset
        col = self.args.length_column_name
        if (self.args.train_sampling_strategy == "group_by_length" and col in (getattr(ds, "column_names", None) or [])):
            seed = self.args.data_seed if self.args.data_seed is not None else self.args.seed
            # one order for the global batch, which accelerate slices per rank: the same rows per
            # optimizer step for any number of processes
            batch = self.args.train_batch_size * self.args.gradient_accumulation_steps * self.args.world_size
            return EpochSeededLengthSampler(batch, dataset=ds, lengths=list(ds[col]), seed=seed)
        return super()._get_train_sampler(train_dataset)

    # ---- schedules ----
    def progress(self) -> tuple[int, int, float, float]:
        """(step, steps the schedules span, epoch, epochs they span). Schedules span ``schedule_epochs``
        when given (a stage that may run past its planned length to a validation plateau): past it,
        progress is clipped at 1 and every schedule holds its end value."""
        s = self.state
        steps, epochs = spanned(s.max_steps, float(s.num_train_epochs or 1), self.schedule_epochs)
        return s.global_step, steps, float(s.epoch or 0.0), epochs

    def current_values(self) -> dict[str, float]:
        p = self.progress()
        vals = {"temperature": float(self.temperature(*p))}
        vals.update({f"weight_{key}": float(w(*p)) for key, _, w, _ in self.objective})
        return vals

    def floating_point_ops(self, inputs: dict) -> int:
        # The Trainer's version walks every module each step (0.32 ms of host time for a 6-layer BERT); the count is fixed.
        main = getattr(self.model, "main_input_name", "input_ids")
        if main not in inputs or not hasattr(self.model, "num_parameters"):
            return 0
        if self.__dict__.get("_flop_params") is None:
            self._flop_params = self.model.num_parameters(exclude_embeddings=True)
        return 6 * inputs[main].numel() * self._flop_params

    # ---- forward passes ----
    def _forward_all(self, model, inputs: dict, active: list[str], temperature: float = 1.0):
        """Student and (if needed) teacher outputs with what the ``active`` terms read, plus the batch dict."""
        return forward_all(model, self.teacher, inputs, [self.terms[k] for k in active], temperature,
                           hook_model=self.accelerator.unwrap_model(model),
                           teacher_learns=self.online_teacher_lr is not None and model.training)

    # ---- loss ----
    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        if not model.training:  # validation loss is the task loss
            labels = inputs.pop("labels", None)
            inputs = {k: v for k, v in inputs.items() if not k.startswith("teacher_")}
            outputs = eval_forward(model, inputs)
            loss = self.terms["ce"](outputs, None, {"labels": labels}) if "ce" in self.terms else outputs.logits.sum() * 0
            return (loss, outputs) if return_outputs else loss
        vals = self.current_values()
        # skip the work (e.g. the teacher forward) of terms that are switched off right now
        active = [key for key, *_ in self.objective if vals[f"weight_{key}"] != 0]
        student_out, teacher_out, batch = self._forward_all(model, inputs, active, vals["temperature"])
        batch["temperature"] = vals["temperature"]
        # starts from a zero of the logits: the head stays in the graph (its gradient 0, not None) when
        # every term reads only features, as DDP without find_unused_parameters needs
        loss = student_out.logits.sum() * 0.0
        values = {}
        if self.online_teacher_lr is not None:
            values["teacher_ce"] = hard_label_loss(teacher_out.logits, batch["labels"])
            loss = loss + values["teacher_ce"]
            teacher_out = OT.detached(teacher_out)
        scales = token_scales(batch, student_out.logits)  # DDP: each rank's share of the global batch's tokens
        for key in active:
            values[key] = self.terms[key](student_out, teacher_out, batch)
            if scales is not None:
                values[key] = values[key] * scales["labels" if key == "ce" else "positions"]
            loss = loss + vals[f"weight_{key}"] * values[key]
        # One host sync per step for the NaN guard (on a GPU each one stalls the launch queue): a non-finite term makes
        # the weighted sum non-finite, so the sum alone is tested and the culprit looked up only when it fires.
        if not torch.isfinite(loss.detach()):  # (every term finite but their weighted sum overflowed: name the sum)
            key = next((k for k, v in values.items() if not torch.isfinite(v)), f"{' + '.join(values) or 'loss'} (weighted sum)")
            return self._non_finite(model, key, student_out, return_outputs)
        self.nan_guard.passed()
        self.term_sums.add({f"loss_{key}": value for key, value in values.items()})
        return (loss, student_out) if return_outputs else loss

    @property
    def skipped_batches(self) -> int:
        """Batches skipped for a non-finite loss (``nan_policy: skip``)."""
        return self.nan_guard.skipped

    def _non_finite(self, model, key: str, student_out, return_outputs: bool):
        """Stop naming the term and step, or (nan_policy: skip) give this batch a zero loss. The zero
        is built from the parameters, not the NaN activations, so backward still reaches every
        parameter: under DDP every rank must run the same backward, whichever rank skipped."""
        self.nan_guard.fire(key, self.state.global_step, self.args.output_dir)
        zero = sum((p * 0.0).sum() for p in model.parameters() if p.requires_grad)
        return (zero, student_out) if return_outputs else zero

    def _get_grad_norm(self, model, grad_norm=None):
        # Private override: no public hook sees each step's gradient norm (callbacks get it only when logged).
        norm = super()._get_grad_norm(model, grad_norm)
        self.spikes.add(self.state.global_step + 1, norm)  # kept on the device; read when the losses are logged
        return norm

    def log(self, logs: dict, *args, **kwargs) -> None:
        if "loss" in logs:
            self.spikes.log_into(logs)
            if self.nan_guard.skipped:
                logs["skipped_batches"] = self.nan_guard.skipped
            keys = [f"loss_{key}" for key, *_ in self.objective] + (["loss_teacher_ce"] if self.online_teacher_lr else [])
            means = self.term_sums.take(keys, self.accelerator, self.args)
            if means is not None:
                logs.update(means)
                logs.update({k: round(v, 6) for k, v in self.current_values().items()})
        super().log(logs, *args, **kwargs)


def _has_build(term) -> bool:
    return type(term).build is not LossTerm.build

