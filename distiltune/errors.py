"""User-facing errors: one line naming the problem and the fix; the CLI exits with code 2."""


class DistilTuneError(Exception):
    """Bad input or a condition the user can fix. ``str(err)`` is the whole message."""

    def __init__(self, problem: str, fix: str = ""):
        self.problem = problem
        self.fix = fix
        super().__init__(f"{problem}" + (f" -> fix: {fix}" if fix else ""))


class NonFiniteLossError(DistilTuneError):
    """A loss term became NaN/inf; training stopped before the optimizer applied it."""

    def __init__(self, term: str, step: int, checkpoint: str | None, skipped: int | None = None):
        where = f"last good checkpoint kept at {checkpoint}" if checkpoint else "no checkpoint had been written yet"
        why = f" after {skipped} skipped batches in a row" if skipped else ""
        super().__init__(
            f"loss term '{term}' is not finite at step {step}{why}; training stopped ({where})",
            "lower learning_rate or temperature, check the data for empty texts, try mixed_precision: no, "
            "or nan_policy: skip to step over rare bad batches",
        )
        self.term, self.step, self.checkpoint = term, step, checkpoint
