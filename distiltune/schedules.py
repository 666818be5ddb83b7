"""Schedules for temperature and loss weights: pure functions of training progress.

``progress`` is in [0, 1]. With ``unit="epoch"`` the value only changes at epoch boundaries
(progress = completed epochs / (epochs - 1)); with ``unit="step"`` it moves every step.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

KINDS = ("constant", "linear", "cosine", "list")
UNITS = ("step", "epoch")


def constant(start: float, end: float, progress: float) -> float:
    return start


def linear(start: float, end: float, progress: float) -> float:
    return start + (end - start) * _clip(progress)


def cosine(start: float, end: float, progress: float) -> float:
    """Half-cosine from ``start`` to ``end``: flat near both ends, fastest in the middle."""
    return end + (start - end) * 0.5 * (1.0 + math.cos(math.pi * _clip(progress)))


def per_epoch(values: list[float], epoch: float) -> float:
    """``values[i]`` during epoch i (0-based); the last value holds after the list runs out."""
    return values[min(max(int(epoch), 0), len(values) - 1)]


def spanned(max_steps: int, num_epochs: float, span_epochs: float | None) -> tuple[int, float]:
    """(steps, epochs) a schedule spans in a stage of ``max_steps`` steps over ``num_epochs`` epochs:
    the whole stage, or its first ``span_epochs`` when the stage may run longer (a ceiling of epochs
    for a stop on a validation plateau). Past the span, progress is clipped at 1: every schedule
    holds its end value (a list schedule its last value); a stage that stops before the span ends
    keeps the values where it stopped."""
    if span_epochs is None or span_epochs >= num_epochs:
        return max(max_steps, 1), num_epochs
    return max(math.ceil(max_steps * span_epochs / num_epochs), 1), span_epochs


def _clip(p: float) -> float:
    return min(max(p, 0.0), 1.0)


_CURVES = {"constant": constant, "linear": linear, "cosine": cosine}


@dataclass(frozen=True)
class Schedule:
    """A named schedule. ``Schedule("linear", 4.0, 1.0)`` anneals 4 -> 1 over training."""

    kind: str = "constant"
    start: float = 0.0
    end: float | None = None
    values: tuple[float, ...] = field(default_factory=tuple)
    unit: str = "step"

    def __post_init__(self):
        if self.kind not in KINDS:
            raise ValueError(f"unknown schedule kind '{self.kind}'; choose one of {', '.join(KINDS)}")
        if self.unit not in UNITS:
            raise ValueError(f"unknown schedule unit '{self.unit}'; choose one of {', '.join(UNITS)}")
        if self.kind == "list" and not self.values:
            raise ValueError("a 'list' schedule needs at least one value (one per epoch)")

    def __call__(self, step: int, max_steps: int, epoch: float, num_epochs: float) -> float:
        if self.kind == "list":
            return float(per_epoch(list(self.values), epoch))
        end = self.start if self.end is None else self.end
        if self.unit == "epoch":
            progress = math.floor(epoch) / max(math.ceil(num_epochs) - 1, 1)
        else:
            progress = step / max(max_steps, 1)
        return float(_CURVES[self.kind](self.start, end, progress))

    def __str__(self) -> str:
        """In words, as the report prints it: ``linear 4.0 → 1.0 by step``, ``constant 0.5``."""
        if self.kind == "list":
            return "per epoch " + ", ".join(str(float(v)) for v in self.values)
        end = self.start if self.end is None else self.end
        if self.kind == "constant" or end == self.start:
            return f"constant {float(self.start)}"
        return f"{self.kind} {float(self.start)} → {float(end)} by {self.unit}"

    def extremes(self) -> tuple[float, float]:
        """Smallest and largest value the schedule can take (for range checks)."""
        pts = list(self.values) if self.kind == "list" else [self.start, self.start if self.end is None else self.end]
        return min(pts), max(pts)
