"""What the trainer watches while it trains, kept out of the loss code: non-finite losses,
gradient-norm spikes and misaligned token positions. Each is a small object or function of its own."""
from __future__ import annotations

import math
import statistics

import torch

from . import checkpoints as CK
from ..errors import DistilTuneError, NonFiniteLossError


class NonFiniteGuard:
    """What a non-finite loss does (``nan_policy``): ``stop`` raises, naming the term, the step and the
    last complete checkpoint; ``skip`` lets the batch go by, up to ``MAX_SKIPPED_IN_ROW`` in a row
    (more means the run itself has diverged, not a rare bad batch)."""

    MAX_SKIPPED_IN_ROW = 10

    def __init__(self, policy: str = "stop"):
        self.policy = policy
        self.in_row = 0
        self.skipped = 0  # batches skipped so far in this run

    def passed(self) -> None:
        self.in_row = 0

    def fire(self, term: str, step: int, output_dir: str | None) -> None:
        """A batch's loss was not finite: raise, or count it as skipped and say so."""
        self.in_row += 1
        if self.policy != "skip" or self.in_row > self.MAX_SKIPPED_IN_ROW:
            raise NonFiniteLossError(term, step, CK.last_complete(output_dir) if output_dir else None,
                                     skipped=self.in_row - 1 if self.policy == "skip" else None)
        self.skipped += 1
        print(f"[distiltune] loss term '{term}' is not finite at step {step}: batch skipped (nan_policy: skip)")


class GradSpikes:
    """Steps whose gradient norm exceeded ``factor`` x the median of the previous 50 steps. Norms
    stay on the device as they come (``add``) and are read once per logging step (``take``)."""

    def __init__(self, factor: float):
        self.factor = factor
        self.pending: list[tuple[int, torch.Tensor]] = []
        self.history: list[float] = []

    def add(self, step: int, norm) -> None:
        if self.factor and isinstance(norm, torch.Tensor):
            self.pending.append((step, norm.detach().float()))

    def log_into(self, logs: dict) -> None:
        """Print each spike since the last log and count them in ``logs``."""
        spikes = self.take()
        for step, norm, median in spikes:
            print(f"[distiltune] gradient-norm spike at step {step}: {norm:.4g} ({norm / median:.0f}x the median "
                  f"{median:.4g} of the previous steps)")
        if spikes:
            logs["grad_norm_spikes"] = len(spikes)
            logs["grad_norm_spike_max"] = round(max(n for _, n, _ in spikes), 6)

    def take(self) -> list[tuple[int, float, float]]:
        """(step, norm, median before it) of each spike since the last call."""
        pending, self.pending = self.pending, []
        if not pending:
            return []
        spikes = []
        for (step, _), norm in zip(pending, torch.stack([n for _, n in pending]).tolist()):
            if len(self.history) >= 10 and math.isfinite(norm):
                median = statistics.median(self.history[-50:])
                if median > 0 and norm > self.factor * median:
                    spikes.append((step, norm, median))
            if math.isfinite(norm):
                self.history.append(norm)
        del self.history[:-50]
        return spikes


def check_alignment(token_terms, inputs: dict, teacher_inputs: dict) -> None:
    """Token-level terms compare position i of teacher and student: refuse when the two
    tokenisations differ instead of comparing misaligned tokens."""
    if not token_terms or not teacher_inputs:
        return
    s_ids, t_ids = inputs.get("input_ids"), teacher_inputs.get("input_ids")
    if s_ids is not None and t_ids is not None and s_ids.shape == t_ids.shape and torch.equal(s_ids, t_ids):
        return
    names = ", ".join(sorted({t.name for t in token_terms}))

    def length(ids, batch):
        if ids is None:
            return None
        return int(batch["attention_mask"][0].sum()) if "attention_mask" in batch else ids.shape[1]

    raise DistilTuneError(
        f"teacher and student tokenise the text differently (first row: {length(t_ids, teacher_inputs)} vs "
        f"{length(s_ids, inputs)} tokens), so the token-level term(s) {names} would compare misaligned positions",
        "use sequence-level terms instead: pool: mean (or cls) on hidden_mse/hidden_cosine, or the relation terms "
        "rkd_distance, rkd_angle, sp; or a student that shares the teacher's tokenizer (student: from_teacher)")


class TermSums:
    """Running sums of each loss term since the last log, kept on the device (no host sync per step)."""

    def __init__(self):
        self.sums: dict = {}
        self.count = 0

    def add(self, values: dict) -> None:
        for key, value in values.items():
            self.sums[key] = self.sums.get(key, 0.0) + value.detach().float()
        self.count += 1

    def take(self, keys: list[str], accelerator, args) -> dict[str, float] | None:
        """The mean of each term since the last call, over steps and ranks (None when no step ran). Every rank logs at the same
        step and joins the reduction with the same keys (zeros where it skipped every batch), else a
        rank that skipped NaN batches would leave the others waiting in it."""
        local = [torch.as_tensor(self.sums.get(k, 0.0), dtype=torch.float32, device=args.device) for k in keys]
        totals = torch.stack(local + [torch.tensor(float(self.count), device=args.device)])
        if args.world_size > 1:
            totals = accelerator.reduce(totals, reduction="sum")
        values, count = totals[:-1].tolist(), totals[-1].item()
        seen = set(self.sums)
        self.sums.clear()
        self.count = 0
        return {k: round(v / count, 6) for k, v in zip(keys, values) if k in seen} if count else None
