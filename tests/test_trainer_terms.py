"""Projections owned by loss terms: trained with the student, checkpointed beside it, restored on resume."""
import copy

import torch
from datasets import Dataset
from safetensors import safe_open

from conftest import make_rows, tiny_bert
from distiltune.data.collate import DistillCollator, tokenize
from distiltune.training.trainer import DistillationTrainer
from transformers import TrainingArguments


def setup(tmp_path):
    teacher, tok = tiny_bert(tmp_path / "t", hidden=64, layers=4, heads=4, seed=1, save=False)
    student, _ = tiny_bert(tmp_path / "s", hidden=32, layers=2, heads=4, seed=2, save=False)
    df = make_rows(48, 0)
    df["labels"] = (df.pop("label") == "pos").astype(int)
    ds = tokenize(Dataset.from_pandas(df), tok, ("sentence",), 32)
    return teacher, student, tok, ds


def trainer(tmp_path, teacher, student, tok, ds, max_steps, out="o"):
    args = TrainingArguments(output_dir=str(tmp_path / out), use_cpu=True, report_to="none", remove_unused_columns=False,
                             max_steps=max_steps, per_device_train_batch_size=8, save_strategy="steps", save_steps=2,
                             disable_tqdm=True, learning_rate=1e-3, seed=0, data_seed=0)
    return DistillationTrainer(model=student, args=args, train_dataset=ds, data_collator=DistillCollator(tok),
                               teacher=teacher, objective=[("ce", 0.5), ("hidden_mse", 1.0, {"layers": "uniform"})])


def test_projection_trains_and_is_checkpointed_beside_not_inside_the_student(tmp_path):
    teacher, student, tok, ds = setup(tmp_path)
    tr = trainer(tmp_path, teacher, student, tok, ds, 4)
    before = {k: v.clone() for k, v in tr.terms.state_dict().items()}
    assert before and all(k.startswith("hidden_mse.proj") for k in before)
    tr.train()
    after = tr.terms.state_dict()
    assert any(not torch.equal(before[k], after[k]) for k in before)  # the optimizer updated them
    ck = tmp_path / "o" / "checkpoint-4"
    with safe_open(str(ck / "distill_terms.safetensors"), "pt") as f:
        assert set(f.keys()) == set(after)
    with safe_open(str(ck / "model.safetensors"), "pt") as f:
        assert not any("proj" in k for k in f.keys())


def test_resumed_run_equals_uninterrupted_run(tmp_path):
    teacher, student, tok, ds = setup(tmp_path)
    full = trainer(tmp_path, teacher, copy.deepcopy(student), tok, ds, 4, out="full")
    full.train()
    # as after a crash at step 3: a new trainer with a fresh student and fresh projections resumes from step 2
    torch.manual_seed(123)  # other projection init: the checkpoint must restore them
    resumed = trainer(tmp_path, teacher, copy.deepcopy(student), tok, ds, 4, out="resumed")
    resumed.train(resume_from_checkpoint=str(tmp_path / "full" / "checkpoint-2"))
    # exactly: this also catches projection gradients piling up across steps (the Trainer zeroes
    # only the model's), which made the two runs drift apart
    for a, b in zip(full.model.state_dict().values(), resumed.model.state_dict().values()):
        assert torch.equal(a, b)
    for k, v in full.terms.state_dict().items():
        assert torch.equal(v, resumed.terms.state_dict()[k])


def test_floating_point_ops_equal_the_trainers_count(tmp_path):
    """The FLOP count logged as total_flos is the Trainer's own formula, with the parameter count read once."""
    from transformers import Trainer

    teacher, student, tok, ds = setup(tmp_path)
    tr = trainer(tmp_path, teacher, student, tok, ds, 2)
    batch = DistillCollator(tok)([ds[i] for i in range(4)])
    want = Trainer.floating_point_ops(tr, batch)
    assert want > 0 and tr.floating_point_ops(batch) == want == tr.floating_point_ops(batch)
    assert tr.floating_point_ops({"labels": batch["labels"]}) == 0


def test_feature_only_objective_keeps_every_student_parameter_in_the_graph(tmp_path):
    """With only feature terms the head is not read by the loss; it must still get a (zero) gradient,
    not None: DDP without find_unused_parameters fails on parameters that take no part in backward."""
    teacher, student, tok, ds = setup(tmp_path)
    args = TrainingArguments(output_dir=str(tmp_path / "f"), use_cpu=True, report_to="none", remove_unused_columns=False,
                             max_steps=1, per_device_train_batch_size=8, save_strategy="no", disable_tqdm=True)
    tr = DistillationTrainer(model=student, args=args, train_dataset=ds, data_collator=DistillCollator(tok),
                             teacher=teacher, objective=[("hidden_mse", 1.0, {"layers": "uniform"})])
    batch = tr._prepare_inputs(DistillCollator(tok)([ds[i] for i in range(8)]))
    tr.model.train()
    tr.compute_loss(tr.model, batch).backward()
    missing = [n for n, p in tr.model.named_parameters() if p.requires_grad and p.grad is None]
    assert missing == []
    assert torch.all(tr.model.classifier.weight.grad == 0)


def test_nan_filter_is_off_for_training_steps_and_the_users_for_evaluation_and_saving(tmp_path):
    """The Trainer's NaN/inf filter costs two host syncs a training step and can never fire there (the
    guard acts first); evaluation, where it drops non-finite batches from eval_loss, and the saved
    training_args.bin keep what the user set."""
    teacher, student, tok, ds = setup(tmp_path)
    args = TrainingArguments(output_dir=str(tmp_path / "n"), use_cpu=True, report_to="none", remove_unused_columns=False,
                             max_steps=4, per_device_train_batch_size=8, eval_strategy="steps", eval_steps=2,
                             save_strategy="steps", save_steps=2, disable_tqdm=True)
    tr = DistillationTrainer(model=student, args=args, train_dataset=ds, eval_dataset=ds.select(range(8)),
                             data_collator=DistillCollator(tok), teacher=teacher, objective=[("ce", 1.0)])
    seen = {"step": [], "eval": []}
    step, predict = tr.training_step, tr.prediction_step
    tr.training_step = lambda *a, **k: (seen["step"].append(tr.args.logging_nan_inf_filter), step(*a, **k))[1]
    tr.prediction_step = lambda *a, **k: (seen["eval"].append(tr.args.logging_nan_inf_filter), predict(*a, **k))[1]
    tr.train()
    assert seen["step"] == [False] * 4
    assert seen["eval"] == [True] * 2  # one eval batch at steps 2 and 4, inside training
    saved = torch.load(tmp_path / "n" / "checkpoint-4" / "training_args.bin", weights_only=False)
    assert saved.logging_nan_inf_filter is True and tr.args.logging_nan_inf_filter is True
