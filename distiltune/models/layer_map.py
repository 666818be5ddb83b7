"""Which teacher layer each student layer learns from.

Indices are 0-based transformer layers (hidden_states[i + 1] is layer i's output). A map is a
list of ``(student_layer, [teacher_layers])``: one teacher layer for the fixed presets, several
for ``dynamic`` (the student layer matches whichever of them it is closest to, NNI-style).
"""
from __future__ import annotations

from ..errors import DistilTuneError

PRESETS = ("uniform", "last", "skip", "dynamic")


def uniform(n_student: int, n_teacher: int) -> list[tuple[int, list[int]]]:
    """Spread student layers evenly over the teacher's, ending on the last (TinyBERT's g(m) = m·N/M):
    6 over 12 -> 1, 3, 5, 7, 9, 11."""
    return [(i, [max((i + 1) * n_teacher // n_student - 1, 0)]) for i in range(n_student)]


def last(n_student: int, n_teacher: int) -> list[tuple[int, list[int]]]:
    return [(n_student - 1, [n_teacher - 1])]


def skip(n_student: int, n_teacher: int, init_layers: list[int] | None = None) -> list[tuple[int, list[int]]]:
    """DistilBERT-style: each student layer matches the teacher layer it was initialised from
    (every k-th from 0 when the student was not built from the teacher)."""
    if init_layers and len(init_layers) == n_student:
        return [(i, [t]) for i, t in enumerate(init_layers)]
    k = max(n_teacher // n_student, 1)
    return [(i, [min(i * k, n_teacher - 1)]) for i in range(n_student)]


def dynamic(n_student: int, n_teacher: int) -> list[tuple[int, list[int]]]:
    """Each student layer is linked to its bucket of teacher layers (12 over 6: {0,1}, {2,3}, ...)."""
    out = []
    for i in range(n_student):
        lo, hi = i * n_teacher // n_student, max((i + 1) * n_teacher // n_student, i * n_teacher // n_student + 1)
        out.append((i, list(range(lo, min(hi, n_teacher)))))
    return out


def parse_pairs(spec) -> list[tuple[int, list[int]]]:
    """``"0:1,1:3"`` or ``[[0, 1], [1, 3]]`` or ``{0: 1, 1: [2, 3]}`` -> [(0, [1]), (1, [3])]."""
    try:
        if isinstance(spec, str):
            items = [p.split(":") for p in spec.replace(" ", "").split(",") if p]
        elif isinstance(spec, dict):
            items = list(spec.items())
        else:
            items = [tuple(p) for p in spec]
        out = []
        for s, t in items:
            ts = [int(x) for x in (t if isinstance(t, (list, tuple)) else str(t).split("|"))]
            out.append((int(s), ts))
        return out
    except (ValueError, TypeError, OverflowError):
        raise DistilTuneError(f"layer map {spec!r} is not understood",
                              f"use a preset ({', '.join(PRESETS)}) or pairs 'student:teacher' such as '0:1,1:3'") from None


def resolve(spec, n_student: int, n_teacher: int, init_layers: list[int] | None = None) -> list[tuple[int, list[int]]]:
    """A preset name or explicit pairs -> checked pairs."""
    if isinstance(spec, str) and spec in PRESETS:
        pairs = skip(n_student, n_teacher, init_layers) if spec == "skip" else globals()[spec](n_student, n_teacher)
    else:
        pairs = parse_pairs(spec)
    for s, ts in pairs:
        if not 0 <= s < n_student:
            raise DistilTuneError(f"layer map {spec!r}: student layer {s} is out of range (the student has {n_student} layers)",
                                  f"use student layers 0..{n_student - 1}")
        bad = [t for t in ts if not 0 <= t < n_teacher]
        if bad or not ts:
            raise DistilTuneError(f"layer map {spec!r}: teacher layer {bad[0] if bad else '(none)'} is out of range "
                                  f"(the teacher has {n_teacher} layers)", f"use teacher layers 0..{n_teacher - 1}")
    return pairs
