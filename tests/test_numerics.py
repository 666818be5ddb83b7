"""Numerical faults during training: NaN batches skipped when configured, gradient-norm spikes logged."""
import math

import pytest
import torch
from datasets import Dataset

from distiltune import DistillationTrainer, DistillConfig, NonFiniteLossError, Schedule
from distiltune.data.collate import DistillCollator, tokenize
from distiltune.losses import LOSSES, LossTerm, register_loss
from conftest import tiny_bert

# Steps at which the test terms misbehave (set per test).
BAD_STEPS: set[int] = set()


class _Counting(LossTerm):
    calls = 0

    def value(self, student_out):
        return torch.nn.functional.cross_entropy(student_out.logits.float(), torch.zeros(len(student_out.logits),
                                                 dtype=torch.long, device=student_out.logits.device))


if "nan_at" not in LOSSES:
    @register_loss("nan_at")
    class NanAt(_Counting):
        def forward(self, student_out, teacher_out, batch):
            NanAt.calls += 1
            v = self.value(student_out)
            return v * float("nan") if NanAt.calls in BAD_STEPS else v

    @register_loss("spike_at")
    class SpikeAt(_Counting):
        def forward(self, student_out, teacher_out, batch):
            SpikeAt.calls += 1
            v = self.value(student_out)
            return v * 1e4 if SpikeAt.calls in BAD_STEPS else v


def train(tmp_path, term: str, steps: int, **cfg):
    LOSSES.get(term).calls = 0
    model, tok = tiny_bert(tmp_path / "m", save=False)
    ds = tokenize(Dataset.from_dict({"t": ["w1 good1 w2", "w3 bad2 w4 w5"] * 20, "labels": [1, 0] * 20}), tok, ("t",), 16)
    args = DistillConfig(output_dir=str(tmp_path / "ck"), max_steps=steps, per_device_train_batch_size=4, report_to="none",
                         remove_unused_columns=False, save_strategy="no", strategy="finetune", disable_tqdm=True,
                         learning_rate=1e-3, **cfg)
    trainer = DistillationTrainer(model=model, args=args, train_dataset=ds, data_collator=DistillCollator(tok),
                                  objective=[(term, Schedule("constant", 1.0))])
    trainer.train()
    return trainer


def test_nan_policy_skip_steps_over_bad_batches(tmp_path, capsys):
    BAD_STEPS.clear()
    BAD_STEPS.update({3, 6})
    trainer = train(tmp_path, "nan_at", 10, nan_policy="skip", logging_steps=5)
    out = capsys.readouterr().out
    assert "loss term 'nan_at' is not finite at step 2: batch skipped" in out
    assert "loss term 'nan_at' is not finite at step 5: batch skipped" in out
    assert trainer.state.global_step == 10 and trainer.skipped_batches == 2
    assert [e["skipped_batches"] for e in trainer.state.log_history if "skipped_batches" in e] == [1, 2]
    assert all(torch.isfinite(p).all() for p in trainer.model.parameters())
    assert all(math.isfinite(e["loss"]) for e in trainer.state.log_history if "loss" in e)


def test_nan_policy_stop_is_the_default(tmp_path):
    BAD_STEPS.clear()
    BAD_STEPS.add(4)
    with pytest.raises(NonFiniteLossError) as e:
        train(tmp_path, "nan_at", 10)
    assert e.value.term == "nan_at" and e.value.step == 3


def test_nan_policy_skip_gives_up_on_a_run_of_bad_batches(tmp_path):
    BAD_STEPS.clear()
    BAD_STEPS.update(range(2, 100))
    with pytest.raises(NonFiniteLossError, match="after 10 skipped batches in a row") as e:
        train(tmp_path, "nan_at", 30, nan_policy="skip")
    assert e.value.step == 11


def test_nan_guard_counts_bad_batches_in_a_row_not_in_total(tmp_path, capsys):
    from distiltune.training.monitor import NonFiniteGuard

    guard = NonFiniteGuard("skip")
    for round_ in range(3):  # 30 bad batches in all, never more than 10 in a row
        for step in range(10):
            guard.fire("kd", 10 * round_ + step, str(tmp_path))
        guard.passed()
    assert guard.skipped == 30
    assert "loss term 'kd' is not finite at step 29: batch skipped" in capsys.readouterr().out
    for step in range(10):
        guard.fire("kd", step, str(tmp_path))
    with pytest.raises(NonFiniteLossError, match="after 10 skipped batches in a row"):
        guard.fire("kd", 10, str(tmp_path))
    with pytest.raises(NonFiniteLossError, match="no checkpoint had been written yet") as e:
        NonFiniteGuard("stop").fire("ce", 0, str(tmp_path))
    assert (e.value.term, e.value.step) == ("ce", 0)


def test_gradient_norm_spike_is_logged(tmp_path, capsys):
    BAD_STEPS.clear()
    BAD_STEPS.add(16)
    trainer = train(tmp_path, "spike_at", 20, logging_steps=5)
    out = capsys.readouterr().out
    spikes = [line for line in out.splitlines() if "gradient-norm spike" in line]
    assert len(spikes) == 1 and "spike at step 16:" in spikes[0], out
    logged = [e for e in trainer.state.log_history if "grad_norm_spikes" in e]
    assert len(logged) == 1 and logged[0]["step"] == 20 and logged[0]["grad_norm_spikes"] == 1


def test_no_spike_reported_on_a_smooth_run(tmp_path, capsys):
    BAD_STEPS.clear()
    train(tmp_path, "spike_at", 20, logging_steps=5)
    assert "gradient-norm spike" not in capsys.readouterr().out
