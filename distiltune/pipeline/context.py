"""The state a run needs, explicit: built once by :func:`distiltune.pipeline.checks.plan` after every
check has passed, then passed to each stage. Stages return what they make; what they record for the
report (wall times, epoch times, kept checkpoints) goes into ``records``."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class Records:
    timings: dict[str, float] = field(default_factory=dict)              # stage -> wall seconds
    epoch_seconds: dict[str, list[float]] = field(default_factory=dict)  # stage -> wall seconds per epoch
    selection: dict[str, dict] = field(default_factory=dict)             # stage -> kept checkpoint (validation)


@dataclass
class RunContext:
    cfg: Any                    # the resolved DistillConfig
    task: Any                   # a distiltune.tasks.Task, holding the loaded data
    out: str | None             # the run's folder (None: work on finished models, nothing recorded)
    resume: bool = False
    book: Any = None            # StageBook of finished stages (None without a run folder)
    records: Records = field(default_factory=Records)
    callbacks: tuple = ()       # TrainerCallbacks added to every training stage (a profiler, a logger)
    mlm_filler: Any = None      # the masked LM of augment 'mlm', loaded while checking
    memo: dict = field(default_factory=dict)  # derived rows reused within the process (augmented copies)

    @property
    def data(self):
        return self.task.data
