"""Checks run before any heavy work (weights, teacher caching, training): every problem found is
reported at once, one line each with its fix, instead of one per attempt."""
from __future__ import annotations

import contextlib
import json
import os
import shutil

from ..errors import DistilTuneError
from .outputs import check_output_dir


class ManyProblems(DistilTuneError):
    def __init__(self, problems: list[DistilTuneError]):
        self.problems = problems
        lines = "\n".join(f"  {i}. {p}" for i, p in enumerate(problems, 1))
        super().__init__(f"{len(problems)} problems found before any work (nothing was trained or overwritten):\n{lines}")


class Problems:
    """Collects DistilTuneErrors from independent checks; ``raise_all`` reports them together."""

    def __init__(self):
        self.found: list[DistilTuneError] = []

    @contextlib.contextmanager
    def check(self):
        try:
            yield
        except ManyProblems as e:
            self.found.extend(e.problems)
        except DistilTuneError as e:
            self.found.append(e)

    def raise_all(self) -> None:
        unique = {str(e): e for e in self.found}  # two checks can trip over the same cause
        self.found = list(unique.values())
        if len(self.found) == 1:
            raise self.found[0]
        if self.found:
            raise ManyProblems(self.found)


def weights_bytes(path: str | None) -> int | None:
    """Size of a local model folder's weights (None for hub names: unknown before download)."""
    if not path or not os.path.isdir(path):
        return None
    return sum(os.path.getsize(os.path.join(path, f)) for f in os.listdir(path)
               if f.endswith((".safetensors", ".bin", ".pt")) and os.path.isfile(os.path.join(path, f)))


def head_in_checkpoint(path: str) -> bool | None:
    """Whether a local safetensors checkpoint holds a classification head; None when unknown
    (hub names, .bin files). Reads only the file headers, not the weights."""
    if not os.path.isdir(path):
        return None
    index = os.path.join(path, "model.safetensors.index.json")
    if os.path.isfile(index):
        with open(index) as f:
            keys = list(json.load(f).get("weight_map", {}))
    elif os.path.isfile(os.path.join(path, "model.safetensors")):
        from safetensors import safe_open

        with safe_open(os.path.join(path, "model.safetensors"), "pt") as f:
            keys = list(f.keys())
    else:
        return None
    return any(k.split(".")[0] in ("classifier", "score") or ".classifier." in k or ".score." in k
               or k.startswith(("classifier", "score")) for k in keys)


def check_disk(out: str, need: int) -> None:
    """Refuse a run whose checkpoints would not fit on output_dir's disk."""
    probe = os.path.abspath(out)
    while not os.path.exists(probe):
        probe = os.path.dirname(probe)
    free = shutil.disk_usage(probe).free
    if need > free:
        raise DistilTuneError(
            f"output_dir's disk has {free / 1e9:.2f} GB free but this run's checkpoints and models need about "
            f"{need / 1e9:.2f} GB", "free disk space, lower save_total_limit, or point output_dir to a larger disk")


def token_terms_error(objective: list[tuple]) -> DistilTuneError:
    from ..losses.objective import needs

    names = sorted({n for n, _, o in objective if needs([(n, None, o)], "token_level")})
    return DistilTuneError(
        f"the teacher and student tokenizers differ, so token-level term(s) {', '.join(names)} would compare "
        "misaligned token positions",
        "use sequence-level terms: pool: mean (or cls) on hidden_mse/hidden_cosine, or rkd_distance, rkd_angle, sp; "
        "or student: from_teacher (shares the teacher's tokenizer)")


class PreflightStage:
    """Pipeline mixin: the checks ``Pipeline.run`` makes before any weights or training."""

    def check_inputs(self, problems: Problems | None = None):
        """Config-level checks; with ``problems`` each failure is collected, else the first raises."""
        P = problems or Problems()
        cfg = self.cfg
        with P.check():
            if cfg.strategy in ("distill", "distill_finetune") and not cfg.teacher:
                raise DistilTuneError(f"strategy '{cfg.strategy}' needs a teacher", "set teacher: <model folder or hub name>")
        with P.check():
            if not cfg.student:
                raise DistilTuneError("no student given", "set student: <model folder or hub name>, or student: from_teacher")
            if cfg.student == "from_teacher" and not cfg.teacher:
                raise DistilTuneError("student: from_teacher needs a teacher", "set teacher, or name a pretrained student")
        with P.check():
            if cfg.augment and getattr(cfg, "input_column", None):
                raise DistilTuneError("augment edits text, but this task's inputs are tensors (input_column)",
                                      "drop augment, and apply your own transforms in the dataset factory")
            if cfg.augment and "mlm" in cfg.augment and cfg.strategy != "finetune" and (cfg.teacher or cfg.augment_mlm_model):
                self.mlm_filler()  # its masked LM must load (with its head) before any training
        with P.check():
            if cfg.export:  # before hours of training, not after
                from ..export.onnx import require_runtime

                require_runtime()
        if problems is None:
            P.raise_all()

    def preflight(self) -> None:
        from accelerate import PartialState

        from ..data.load import load_task_data

        """Every check that needs no weights and no training, all problems reported together."""
        P = Problems()
        if self._pending is not None and PartialState().is_main_process:  # others would see rank 0's new files
            with P.check():
                check_output_dir(self.out, *self._pending)
        self.check_inputs(P)
        self.data = None
        with P.check():
            self.data = load_task_data(self.cfg)
        if self.data is not None:
            self.check_models(P)
            if not P.found:  # the terms are checked against models that load
                self.check_terms(P)
        with P.check():
            check_disk(self.out, self.disk_needed())
        P.raise_all()
        if self._pending is not None:
            self._prepare_output(*self._pending)
            self._pending = None

    def check_models(self, P: Problems) -> None:
        """Label sets of the models against the data, and a teacher head that was never trained,
        from config.json and the weight files' headers (no weights loaded)."""
        from ..models import hf as M

        cfg = self.cfg
        for role in ("teacher", "student"):
            name = getattr(cfg, role)
            if not name or name == "from_teacher":
                continue
            with P.check():
                path = M.resolve_path(name)
                M.check_labels(path, name, self.data.label_names, role)
                if (role == "teacher" and cfg.finetune_teacher == "no" and cfg.strategy != "finetune"
                        and head_in_checkpoint(path) is False):
                    raise M.untrained_teacher(name)

    def check_terms(self, P: Problems) -> None:
        """The objective against the two models before the teacher is fine-tuned or cached: token-level
        terms against the tokenizers (no weights needed), and layer maps, module paths and head counts
        against weightless (meta-device) copies of the models built from their config.json."""
        import torch
        from transformers import AutoConfig, AutoModelForSequenceClassification

        from ..models import hf as M
        from ..losses.objective import _terms, needs

        cfg = self.cfg
        if cfg.strategy == "finetune" or not cfg.teacher:
            return
        every = cfg.objectives["intermediate"] + cfg.objectives["main"]
        with P.check():
            t_tok = M.load_tokenizer(cfg.teacher)
            s_tok = t_tok if cfg.student == "from_teacher" else M.load_tokenizer(cfg.student)
            if needs(every, "token_level") and not M.same_tokenizer(s_tok, t_tok):
                raise token_terms_error(every)

        def weightless(name):
            conf = AutoConfig.from_pretrained(M.resolve_path(name), **M.label_maps(self.data.label_names))
            with torch.device("meta"):
                return AutoModelForSequenceClassification.from_config(conf)

        try:
            teacher = weightless(cfg.teacher)
            student = M.build_student(teacher, cfg.student_layers) if cfg.student == "from_teacher" else weightless(cfg.student)
        except DistilTuneError as e:
            P.found.append(e)
            return
        except Exception:  # an architecture that cannot be built weightless: the trainer checks the terms later
            return
        for term in _terms(every):
            with P.check():
                term.setup(student, teacher)

    def disk_needed(self) -> int:
        """Bytes the run writes at its peak: a stage's checkpoints (weights + two Adam moments each)
        beside the final teacher, student and baseline folders. Unknown sizes (hub names) count 0."""
        from ..models import hf as M

        cfg = self.cfg
        sizes = {}
        for role in ("teacher", "student"):
            name = getattr(cfg, role)
            sizes[role] = weights_bytes(M.resolve_path(name)) if name and name != "from_teacher" else None
        t = sizes["teacher"] or 0
        s = sizes["student"] if sizes["student"] is not None else t // 2  # from_teacher: part of its layers
        saving = str(getattr(cfg.save_strategy, "value", cfg.save_strategy)) != "no"
        per_stage = 3 * max(t if cfg.finetune_teacher != "no" else 0, s) * ((cfg.save_total_limit or 3) if saving else 0)
        return per_stage + t + 2 * s
