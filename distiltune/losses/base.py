"""The loss-term contract and its registry.

A term is a pure tensor function (in the sibling modules) wrapped by a thin ``nn.Module``:
``term(student_out, teacher_out, batch) -> scalar``. ``student_out``/``teacher_out`` are
:class:`~distiltune.models.features.Outputs` (logits, hidden states, attentions, hooked module outputs);
``batch`` holds ``labels``, ``attention_mask``, ``teacher_attention_mask`` and ``temperature``.
The trainer asks each term what it reads (``requests``), captures just that, weights and sums
the terms — adding a term never touches the training loop.
"""
from __future__ import annotations

import inspect
from dataclasses import dataclass, field

import torch
from torch import nn

from ..errors import DistilTuneError
from ..registry import Registry

LOSSES = Registry("loss term")


def register_loss(name: str):
    """Register a :class:`LossTerm` subclass under ``name`` (raises if the name is taken)."""
    def deco(cls):
        cls.name = name
        return LOSSES.register(name)(cls)

    return deco


@dataclass
class Requests:
    """What a term reads from one model's forward pass."""

    hidden_states: bool = False
    attentions: bool = False
    modules: list[str] = field(default_factory=list)  # submodule paths captured with forward hooks

    def merge(self, other: "Requests") -> "Requests":
        mods = self.modules + [m for m in other.modules if m not in self.modules]
        return Requests(self.hidden_states or other.hidden_states, self.attentions or other.attentions, mods)


class LossTerm(nn.Module):
    """Base class. Subclasses set the class attributes and implement ``forward``.

    ``needs_teacher``: reads teacher outputs. ``token_level``: compares token positions, so teacher
    and student must tokenise alike. ``uses_logits_only``: teacher logits alone suffice (a cache
    can stand in for the live teacher). Options come from the config as keyword arguments.
    """

    name = ""
    needs_teacher = False
    token_level = False
    uses_logits_only = True
    reads_attentions = False
    description = ""

    def __init__(self, **options):
        super().__init__()
        if options:
            raise DistilTuneError(f"loss term '{self.name}' takes no options (got {', '.join(options)})",
                                  "remove them from its entry in losses")

    def setup(self, student: nn.Module, teacher: nn.Module | None) -> None:
        """Resolve layers/modules and build projections once the models are known."""

    def build(self, student_out, teacher_out) -> None:
        """Create parameters (projections) from one sample batch's outputs, before the optimizer exists."""

    def requests(self) -> tuple[Requests, Requests]:
        """(student, teacher) outputs this term reads beyond the logits."""
        return Requests(), Requests()

    def forward(self, student_out, teacher_out, batch: dict) -> torch.Tensor:
        raise NotImplementedError


def build_term(name: str, **options) -> LossTerm:
    """Instantiate a registered term; unknown names and unknown options get one clear line."""
    try:
        cls = LOSSES.get(name)
    except KeyError as e:
        raise DistilTuneError(str(e).strip("'\""), "use a name from `distiltune losses`") from None
    params = {n: p for n, p in inspect.signature(cls.__init__).parameters.items() if n != "self"}
    open_ended = cls.__init__ is not LossTerm.__init__ and any(p.kind is p.VAR_KEYWORD for p in params.values())
    allowed = [n for n, p in params.items() if p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL)]
    unknown = [k for k in options if k not in allowed]
    if unknown and not open_ended:
        import difflib

        near = difflib.get_close_matches(unknown[0], allowed, n=1)
        hint = f"did you mean '{near[0]}'? " if near else ""
        raise DistilTuneError(f"loss term '{name}' has no option '{unknown[0]}'",
                              f"{hint}its options: {', '.join(allowed) or 'none'}")
    try:
        return cls(**options)
    except TypeError as e:
        raise DistilTuneError(f"loss term '{name}': {e}", "check its options in the README") from None
