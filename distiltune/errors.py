"""User-facing errors: one line naming the problem and the fix; the CLI exits with code 2."""
import contextlib


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
