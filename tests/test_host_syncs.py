"""A training step reads one value back to the host beyond what the models' own forward passes
read: the NaN guard's flag. On a GPU each read-back (``.item()``, ``bool(tensor)``, ``float(tensor)``)
stalls the host until the device has drained its queue; the same operators run on a CPU, where a
dispatch mode counts them. (transformers' SDPA mask builder reads one per forward, ``mask.all()``,
to skip the mask on unpadded batches: in every loop that runs the model, the plain one too.)"""
import numpy as np
import pytest
import torch
from datasets import Dataset
from torch.utils._python_dispatch import TorchDispatchMode
from transformers import TrainerCallback, TrainingArguments

from conftest import make_rows, tiny_bert
from distiltune.data import teacher_cache as TC
from distiltune.data.collate import DistillCollator, tokenize
from distiltune.constants import IGNORE_INDEX
from distiltune.schedules import Schedule
from distiltune.training.trainer import DistillationTrainer


class ReadBacks(TorchDispatchMode):
    def __init__(self):
        super().__init__()
        self.count = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if func is torch.ops.aten._local_scalar_dense.default:
            self.count += 1
        return func(*args, **(kwargs or {}))


class CountPerStep(TrainerCallback):
    """Read-backs from the start of each optimizer step to its end: forward, loss, backward, the
    Trainer's checks, clipping, optimizer and scheduler (the logging that follows is not counted)."""

    def __init__(self):
        self.counts, self.mode = [], None

    def on_step_begin(self, args, state, control, **kwargs):
        self.mode = ReadBacks()
        self.mode.__enter__()

    def on_step_end(self, args, state, control, **kwargs):
        self.mode.__exit__(None, None, None)
        self.counts.append(self.mode.count)


def forward_read_backs(model, inputs) -> int:
    with ReadBacks() as mode, torch.no_grad():
        model(**inputs)
    return mode.count


def rows(tok, cache: str | None):
    df = make_rows(32, 0)
    df["labels"] = (df.pop("label") == "pos").astype(int)
    df.loc[::3, "labels"] = IGNORE_INDEX  # unlabeled rows too (the mean over labelled ones)
    ds = tokenize(Dataset.from_pandas(df), tok, ("sentence",), 32)
    logits = np.random.default_rng(0).normal(size=(len(ds), 2)).astype(np.float32)
    if cache == "full":
        ds = ds.add_column("teacher_logits", logits.tolist())
    elif cache == "topk":
        for name, col in TC.compress(logits, 1).items():
            ds = ds.add_column(name, col)
    return ds


CASES = {
    "finetune": ([("ce", 1.0)], None, False),
    "live teacher": ([("ce", 0.5), ("kd", 0.5)], None, True),
    "cached logits": ([("ce", 0.5), ("kd", 0.5)], "full", False),
    "cached top-k, annealed T": ([("ce", 0.5), ("kd", 0.5)], "topk", False),
    "dynamic KD (confidence)": ([("ce", 0.5), ("kd", 0.5, {"weighting": "confidence"})], "full", False),
}


@pytest.mark.parametrize("case", list(CASES))
def test_one_read_back_per_training_step(tmp_path, case):
    objective, cache, live = CASES[case]
    teacher, tok = tiny_bert(tmp_path / "t", hidden=32, layers=2, heads=2, seed=1, save=False)
    student, _ = tiny_bert(tmp_path / "s", hidden=32, layers=1, heads=2, seed=2, save=False)
    args = TrainingArguments(output_dir=str(tmp_path / "o"), use_cpu=True, report_to="none", remove_unused_columns=False,
                             max_steps=4, per_device_train_batch_size=8, logging_steps=2, max_grad_norm=1.0,
                             save_strategy="no", disable_tqdm=True, seed=0)
    counter = CountPerStep()
    trainer = DistillationTrainer(model=student, args=args, train_dataset=rows(tok, cache), data_collator=DistillCollator(tok),
                                  teacher=teacher if live else None, objective=objective, callbacks=[counter],
                                  temperature=Schedule("linear", 4.0, 1.0))
    batch = DistillCollator(tok)([trainer.train_dataset[i] for i in range(8)])
    inputs = {k: batch[k] for k in ("input_ids", "attention_mask", "token_type_ids")}
    per_forward = forward_read_backs(student, inputs)
    models = per_forward + (forward_read_backs(teacher, inputs) if live else 0)
    trainer.train()
    assert counter.counts == [models + 1] * 4
    # the Trainer's NaN/inf filter (two syncs a step) was off for training only: the user's setting is back,
    # for evaluation, where it drops non-finite batches from eval_loss
    assert trainer.args.logging_nan_inf_filter is True
    assert all(np.isfinite(h["loss"]) for h in trainer.state.log_history if "loss" in h)
