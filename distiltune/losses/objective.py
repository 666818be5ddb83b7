"""From config to objectives: the weighted loss terms of each training stage.

The main stage is always ``(1 - w) · ce + w · <logit_loss>`` (``w`` = distill_weight, a schedule)
plus any extra terms from ``preset`` and ``losses``. Extra terms marked ``stage: intermediate``
form a stage of their own that runs first. A ``losses`` entry is a name (``hidden_mse``), a
``name:weight`` string, or a mapping ``{name, weight, weight_end, weight_schedule, stage, key,
<term options>}``; JSON strings work on the command line.
"""
from __future__ import annotations

import inspect
import json
import math
from typing import Callable

from ..errors import DistilTuneError
from . import LOSSES, build_term
from .presets import preset_losses
from ..schedules import KINDS, Schedule

STAGES = ("main", "intermediate")
# Config-wide defaults for term options a loss entry leaves unset.
GLOBAL_OPTIONS = {"layer_map": "layers", "student_modules": "student_modules", "teacher_modules": "teacher_modules"}


class OneMinus:
    """``1 - schedule``: the hard-label weight that mirrors ``distill_weight``."""

    def __init__(self, schedule):
        self.schedule = schedule

    def __call__(self, *progress) -> float:
        return 1.0 - self.schedule(*progress)

    def __repr__(self) -> str:
        return f"1 - {self.schedule}"


def parse_entry(entry) -> dict:
    if isinstance(entry, str):
        text = entry.strip()
        if text.startswith("{"):
            try:
                entry = json.loads(text)
            except json.JSONDecodeError as e:
                raise DistilTuneError(f"losses entry {text!r} is not valid JSON ({e.msg})",
                                      'write it as {"name": "hidden_mse", "weight": 1.0}') from None
        else:
            name, _, weight = text.partition(":")
            try:
                entry = {"name": name} | ({"weight": float(weight)} if weight else {})
            except ValueError:
                raise DistilTuneError(f"losses entry {text!r}: weight '{weight}' is not a number",
                                      "write name:weight, e.g. hidden_mse:0.5") from None
    if not isinstance(entry, dict) or "name" not in entry:
        raise DistilTuneError(f"losses entry {entry!r} has no name", "write {name: hidden_mse, weight: 1.0} or 'hidden_mse:1.0'")
    return dict(entry)


def _weight(entry: dict, unit: str):
    start = entry.pop("weight", 1.0)
    end = entry.pop("weight_end", None)
    kind = entry.pop("weight_schedule", "constant" if end is None else "linear")
    name = entry["name"]
    if kind not in KINDS or kind == "list":
        raise DistilTuneError(f"loss term '{name}': weight_schedule '{kind}' is not supported here",
                              "use constant, linear or cosine")
    for v in (start, end):
        if v is not None and (not isinstance(v, (int, float)) or isinstance(v, bool) or not math.isfinite(v) or v < 0):
            raise DistilTuneError(f"loss term '{name}': weight {v!r} must be a number >= 0", "give a non-negative weight")
    return Schedule(kind=kind, start=float(start), end=None if end is None else float(end), unit=unit)


def build_objectives(cfg) -> dict[str, list[tuple]]:
    """``{"intermediate": [...], "main": [...]}`` of ``(name, weight, options)`` for the trainer."""
    w = cfg.distill_weight_sched
    main = [("ce", OneMinus(w), {}),
            (cfg.logit_loss, w, {"weighting": cfg.kd_weighting} if cfg.kd_weighting != "none" else {})]
    stages = {"intermediate": [], "main": main}
    keys = {"main": {"ce", cfg.logit_loss}, "intermediate": set()}
    extra = [cfg.losses] if isinstance(cfg.losses, (str, dict)) else list(cfg.losses or [])
    for raw in preset_losses(cfg.preset) + extra:
        entry = parse_entry(raw)
        name = entry["name"]
        if name not in LOSSES:
            build_term(name)  # raises the one-line unknown-name error with the registered names
        stage = entry.pop("stage", "main")
        if stage not in STAGES:
            raise DistilTuneError(f"loss term '{name}': stage '{stage}' is unknown", "use stage: main or intermediate")
        key = entry.pop("key", name)
        if key in keys[stage]:
            raise DistilTuneError(f"loss term '{key}' appears twice in the objective",
                                  "drop the duplicate, or give the second one its own key: <name>")
        keys[stage].add(key)
        weight = _weight(entry, cfg.schedule_unit)
        options = {k: v for k, v in entry.items() if k != "name"}
        accepted = inspect.signature(LOSSES.get(name).__init__).parameters
        for cfg_key, opt in GLOBAL_OPTIONS.items():
            if opt in accepted and opt not in options and getattr(cfg, cfg_key, None) is not None:
                options[opt] = getattr(cfg, cfg_key)
        build_term(name, **options)  # unknown options and bad values fail now, before any heavy work
        stages[stage].append((name, weight, options | ({"key": key} if key != name else {})))
    return stages


def _terms(objective: list[tuple]):
    return [build_term(name, **{k: v for k, v in options.items() if k != "key"}) for name, _, options in objective]


def needs(objective: list[tuple], attr: str) -> bool:
    """Whether any term of an objective has ``attr`` set (token_level, reads_attentions, ...)."""
    return any(getattr(t, attr) for t in _terms(objective))


def logits_only(objective: list[tuple]) -> list[bool]:
    """Per teacher-reading term: can cached teacher logits stand in for the live teacher?"""
    return [t.uses_logits_only for t in _terms(objective) if t.needs_teacher]


def describe(objective: list[tuple]) -> str:
    """``0.5·ce + 0.5·kd + 1·hidden_mse(layers=last)`` for model cards and logs."""
    parts = []
    for name, weight, *rest in objective:  # (name, weight) or (name, weight, options)
        opts = ", ".join(f"{k}={v}" for k, v in (rest[0] if rest else {}).items() if k != "key")
        parts.append(f"{weight}·{name}" + (f"({opts})" if opts else ""))
    return " + ".join(parts)


def token_terms_error(objective: list[tuple]) -> DistilTuneError:
    names = sorted({n for n, _, o in objective if needs([(n, None, o)], "token_level")})
    return DistilTuneError(
        f"the teacher and student tokenizers differ, so token-level term(s) {', '.join(names)} would compare "
        "misaligned token positions",
        "use sequence-level terms: pool: mean (or cls) on hidden_mse/hidden_cosine, or rkd_distance, rkd_angle, sp; "
        "or student: from_teacher (shares the teacher's tokenizer)")


# A weight is a function of (step, max_steps, epoch, num_epochs) -> float, e.g. a Schedule.
Weight = Callable[[int, int, float, float], float]


def distill_objective(distill_weight: Weight) -> list[tuple[str, Weight]]:
    return [("ce", OneMinus(distill_weight)), ("kd", distill_weight)]


def finetune_objective() -> list[tuple[str, Weight]]:
    return [("ce", Schedule("constant", 1.0))]


def normalise_entry(entry) -> tuple[str, str, Weight, dict]:
    """``(name, weight[, options])`` -> ``(key, name, weight_fn, options)``; ``options['key']``
    names a second instance of the same term (e.g. two hidden_mse maps)."""
    name, weight, *rest = entry
    opts = dict(rest[0]) if rest else {}
    key = opts.pop("key", name)
    if isinstance(weight, (int, float)):
        weight = Schedule("constant", float(weight))
    return key, name, weight, opts
