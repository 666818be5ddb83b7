"""Diagnostics of a finished run: each a pure function of the report and the stages' log histories
that returns one line (what is off, then `-> fix:` what to change) or None. The report lists the
lines that fire; ``distiltune advise --run DIR`` reads the same checks from a finished run's files.

Thresholds are module constants. On the demo (seed 42) only one fires: its distillation is still at
its best at the ceiling of 3 epochs, which is true.
"""
from __future__ import annotations

import numpy as np

STEEP_DROP = 0.10        # training loss of the last fifth of logged steps this much below the fifth before it ...
STEEP_SHARE = 0.15       # ... and that last step down this share of the stage's whole fall (a straight line: 0.25)
TEACHER_MARGIN = 0.005   # a student this much above its teacher (half a point: one test row in 200, not noise)
PEAK_DROP = 0.01         # a validation metric that fell at least this much (absolute) after its best ...
PEAK_SHARE = 0.5         # ... that came in the first half of the evaluations: over-fitting
KD_FLAT = 0.9            # the KD term's last quarter at least this share of its first quarter: it did not fall
MAJORITY_MARGIN = 0.02   # a teacher less than this above always predicting the majority class
IMBALANCE_RATIO = 5.0    # largest / smallest class in the labelled rows

STAGE_NAMES = {"teacher": "teacher's fine-tune", "distill": "distillation", "student_finetune": "student's fine-tune",
               "baseline_student": "baseline student's training", "student": "student's training",
               "intermediate": "intermediate stage"}


def _losses(history: list[dict], key: str = "loss") -> list[float]:
    return [float(e[key]) for e in history if key in e and "train_runtime" not in e and np.isfinite(e[key])]


def _metric_of(report: dict, name: str):
    r = report.get("models", {}).get(name)
    return None if r is None else r.get("metric")


def teacher_below_students(report: dict, histories: dict) -> str | None:
    t = _metric_of(report, "teacher")
    others = [(n, _metric_of(report, n)) for n in ("student", "baseline_student")]
    beaten = [(n, m) for n, m in others if t is not None and m is not None and m - t > TEACHER_MARGIN]
    if not beaten:
        return None
    who = " and ".join(f"the {n.replace('_', ' ')} ({m:.4f})" for n, m in beaten)
    return (f"the teacher ({t:.4f} {report['metric']}) scores below {who}: it does not know the task well enough to "
            "teach it -> fix: let it train to its plateau (teacher_stop: plateau, a higher teacher_max_epochs), "
            "raise teacher_learning_rate, or give a stronger teacher")


def still_learning(report: dict, histories: dict) -> list[str]:
    """Stages that ended while still improving: validation best at the last epoch of the ceiling, or
    (no validation) a training loss still falling steeply over the last logged steps."""
    lines = []
    selection = report.get("checkpoint_selection", {})
    for stage in ("teacher", "distill", "student"):
        history = histories.get(stage)
        if not history:
            continue
        name = STAGE_NAMES[stage]
        sel = selection.get(stage)
        if sel and sel.get("evaluations"):
            evals = sel["evaluations"]
            if not sel["stopped_early"] and len(evals) > 1 and evals.index(max(evals)) == len(evals) - 1:
                lines.append(f"the {name} ended at its ceiling of {sel['epochs_planned']:g} epochs with its validation "
                             f"{sel['metric']} still at its best ({evals[-2]:.4f} -> {evals[-1]:.4f}) -> fix: raise "
                             f"{'teacher_max_epochs' if stage == 'teacher' else 'distill_max_epochs'}")
            continue
        losses = _losses(history)
        if len(losses) < 8:
            continue
        w = max(2, len(losses) // 5)
        first, before, last = float(np.mean(losses[:w])), float(np.mean(losses[-2 * w:-w])), float(np.mean(losses[-w:]))
        # relative to the loss itself and to the stage's whole fall: a loss near zero that halves again is done
        if before > 0 and first > last and (before - last) / before > STEEP_DROP and (before - last) / (first - last) > STEEP_SHARE:
            knob = "teacher_num_train_epochs" if stage == "teacher" else "num_train_epochs"
            lines.append(f"the {name}'s training loss was still falling steeply at the end ({before:.4g} -> {last:.4g} "
                         f"over its last {2 * w} logged steps, -{(before - last) / before:.0%}) -> fix: more epochs "
                         f"({knob}), or stop on a validation plateau ({'teacher' if stage == 'teacher' else 'distill'}"
                         "_stop: plateau)")
    return lines


def peaked_early(report: dict, histories: dict) -> list[str]:
    lines = []
    for stage, sel in report.get("checkpoint_selection", {}).items():
        evals = sel.get("evaluations") or []
        if len(evals) < 3:
            continue
        best = int(np.argmax(evals))
        drop = evals[best] - evals[-1]
        if best + 1 <= PEAK_SHARE * len(evals) and drop >= PEAK_DROP:
            lines.append(f"the {STAGE_NAMES.get(stage, stage)}'s validation {sel['metric']} peaked at evaluation {best + 1} "
                         f"of {len(evals)} ({evals[best]:.4f}) and fell to {evals[-1]:.4f}: over-fitting (the best "
                         "checkpoint is the one kept) -> fix: fewer epochs or a lower learning rate for this stage, "
                         "or more training rows (unlabeled rows or augment for distillation)")
    return lines


def kd_did_not_fall(report: dict, histories: dict) -> str | None:
    """The logit term is T^2-scaled, so its size is comparable across an annealed temperature."""
    key = f"loss_{report.get('logit_term', 'kd')}"
    values = _losses(histories.get("distill") or [], key)
    if len(values) < 8:
        return None
    w = max(2, len(values) // 4)
    first, last = float(np.mean(values[:w])), float(np.mean(values[-w:]))
    if first <= 0 or last < KD_FLAT * first:
        return None
    return (f"the distillation's {key[5:]} term did not fall ({first:.4g} over its first {w} logged steps, {last:.4g} "
            f"over its last {w}): the student is not matching the teacher -> fix: raise learning_rate or the epochs, "
            "check that the teacher scores well (report table), or lower temperature")


def teacher_near_majority(report: dict, histories: dict) -> str | None:
    base = report.get("majority_baseline")
    t = _metric_of(report, "teacher")
    if base is None or t is None or t - base["metric"] >= MAJORITY_MARGIN:
        return None
    return (f"the teacher's {report['metric']} {t:.4f} is barely above the {base['metric']:.4f} of always predicting the "
            f"most frequent class ('{base['label']}'): it has hardly learned the task -> fix: train it longer or at a "
            "higher teacher_learning_rate, check label_column, or give more labelled rows")


def class_imbalance(report: dict, histories: dict) -> str | None:
    counts = report.get("data", {}).get("class_counts")
    if report.get("metric") != "accuracy" or not counts or len(counts) < 2:
        return None
    (big, n_big), (small, n_small) = max(counts.items(), key=lambda kv: kv[1]), min(counts.items(), key=lambda kv: kv[1])
    if n_small > 0 and n_big / n_small < IMBALANCE_RATIO:
        return None
    ratio = f"{n_big / n_small:.0f}x" if n_small else "the smallest has none"
    return (f"the classes are strongly imbalanced ('{big}' {n_big} labelled rows, '{small}' {n_small}: {ratio}) and "
            "accuracy is the metric, which rewards predicting the large classes -> fix: metric: f1 (macro-F1, "
            "every class counts alike)")


CHECKS = (teacher_below_students, still_learning, peaked_early, kd_did_not_fall, teacher_near_majority, class_imbalance)


def diagnose(report: dict, histories: dict[str, list[dict]]) -> list[dict]:
    """Every check that fires: [{"check": name, "line": text}], in CHECKS order."""
    found = []
    for check in CHECKS:
        out = check(report, histories)
        for line in ([out] if isinstance(out, str) else out or []):
            found.append({"check": check.__name__, "line": line})
    return found
