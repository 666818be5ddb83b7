"""Distil a CNN into one with 4% of its parameters, on scikit-learn's 8x8 digits, through the Python API.

The situation: a strong teacher already exists (a CNN, 98k parameters, trained on all 1,257
labelled training images), and the small model must be trained where only 200 images keep their
label; the other 1,057 are unlabeled, and the teacher may be queried on every image.
1. The student CNN (3.8k parameters) learns from ``ce`` on the 200 labelled images, ``kd`` (T = 4)
   on all 1,257 — the teacher's soft labels are the only signal on unlabeled rows — and a FitNets
   ``hint`` (its ``block2`` regresses the teacher's ``block2`` through a learned 1x1 conv).
2. The baseline is the same student (same initial weights, same epochs) on the 200 labelled
   images alone; a second baseline runs as many optimizer steps as the student, so the teacher's
   help is not confused with extra training.
``--teacher_labels labelled`` is the text demo's stricter story: the teacher, too, learns from the
200 labels only, so all it can add is its reading of the unlabeled images.

    python examples/digits/distil_digits.py            # 3 student seeds, about 75 s on 2 CPU cores
    python examples/digits/distil_digits.py --quick    # 1 seed, fewer epochs, about 20 s

Teacher and (first-seed) student are saved with ``distiltune.models.factories.save_module`` under --output_dir.
"""
from __future__ import annotations

import argparse
import copy
import json
import os
import shutil
import tempfile
import time

import torch
from datasets import Dataset, Value, concatenate_datasets, disable_progress_bars
from sklearn.metrics import accuracy_score
from transformers import PrinterCallback, TrainingArguments, set_seed

from distiltune.constants import IGNORE_INDEX  # the label of an unlabeled row: only the teacher's terms learn from it
from distiltune.models.factories import ModuleClassifier, build_module, load_factory, save_module
from distiltune.data.collate import ModuleCollator
from distiltune.schedules import Schedule
from distiltune.training.trainer import DistillationTrainer

# Factories are named the way a config file at the repository root would name them.
REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
MODELS = "examples/digits/models.py"
COLLATE = ModuleCollator("pixel_values")


def split_labels(train: Dataset, num_labeled: int, seed: int) -> tuple[Dataset, Dataset, Dataset]:
    """(all rows labelled, the ``num_labeled`` rows that keep their label, those + the rest unlabeled)."""
    train = train.rename_column("label", "labels").cast_column("labels", Value("int64")).shuffle(seed=seed)
    labelled = train.select(range(num_labeled))
    unlabeled = train.select(range(num_labeled, len(train))).map(lambda _: {"labels": IGNORE_INDEX})
    return train, labelled, concatenate_datasets([labelled, unlabeled]) if len(unlabeled) else labelled


def fit(model: ModuleClassifier, rows: Dataset, objective: list, out: str, epochs: int = 1, max_steps: int = -1,
        teacher: ModuleClassifier | None = None, seed: int = 0) -> int:
    """Train ``model`` in place with ``DistillationTrainer``; returns the optimizer steps taken."""
    args = TrainingArguments(output_dir=out, use_cpu=True, report_to="none", remove_unused_columns=False,
                             num_train_epochs=epochs, max_steps=max_steps, per_device_train_batch_size=32,
                             learning_rate=3e-3, weight_decay=1e-4, lr_scheduler_type="cosine",
                             save_strategy="no", logging_strategy="no", disable_tqdm=True, seed=seed)
    trainer = DistillationTrainer(model=model, args=args, train_dataset=rows, data_collator=COLLATE, teacher=teacher,
                                  objective=objective, temperature=Schedule("constant", 4.0))
    trainer.remove_callback(PrinterCallback)  # it prints the end-of-training summary dict; we print a table
    trainer.train()
    return trainer.state.global_step


@torch.no_grad()
def accuracy(model: ModuleClassifier, ds: Dataset, batch_size: int = 256) -> float:
    model.eval()
    preds, labels = [], []
    for start in range(0, len(ds), batch_size):
        batch = COLLATE([ds[i] for i in range(start, min(start + batch_size, len(ds)))])
        preds += model(pixel_values=batch["pixel_values"]).logits.argmax(-1).tolist()
        labels += batch["labels"].tolist()
    return float(accuracy_score(labels, preds))


def num_params(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true", help="one student seed and fewer epochs (a smoke run)")
    p.add_argument("--num_labeled", type=int, default=200, help="training images that keep their label")
    p.add_argument("--teacher_labels", choices=("all", "labelled"), default="all",
                   help="the teacher learns from all training labels, or only from the student's labelled images")
    p.add_argument("--no_hint", action="store_true", help="distil with ce + kd only")
    p.add_argument("--output_dir", default="runs/digits")
    a = p.parse_args(argv)
    # Tiny convolutions: a second thread costs more than it saves, and stalls when the CPU is shared.
    torch.set_num_threads(1)
    disable_progress_bars()  # the table below is the output
    start = time.time()
    epochs, seeds = (10, [0]) if a.quick else (30, [0, 1, 2])

    data = load_factory(f"{MODELS}:load_digits_splits", REPO)(seed=0)
    everything, labelled, mixed = split_labels(data["train"], a.num_labeled, seed=0)
    print(f"digits: {len(labelled)} labelled + {len(mixed) - len(labelled)} unlabeled training images, "
          f"{len(data['test'])} test images")
    names = data["train"].features["label"].names
    work = tempfile.mkdtemp(prefix="distil_digits_")  # the Trainer's output_dir; nothing is checkpointed

    set_seed(0)
    teacher = build_module(f"{MODELS}:cnn_teacher", base_dir=REPO, label_names=names)
    teacher_rows = everything if a.teacher_labels == "all" else labelled
    # as many optimizer steps either way (a teacher on 200 rows needs more epochs)
    fit(teacher, teacher_rows, [("ce", 1.0)], work, epochs * len(everything) // len(teacher_rows))
    results = {"teacher": {"params": num_params(teacher.net), "accuracy": accuracy(teacher, data["test"])}}
    save_module(teacher, os.path.join(a.output_dir, "teacher"))

    objective = [("ce", 0.5), ("kd", 0.5)]
    if not a.no_hint:
        objective.append(("hint", 1.0, {"student_modules": ["block2"], "teacher_modules": ["block2"]}))
    runs = []
    for seed in seeds:
        set_seed(seed)
        student = build_module(f"{MODELS}:cnn_student", base_dir=REPO, label_names=names)
        baseline, long_baseline = copy.deepcopy(student), copy.deepcopy(student)  # the same initial weights
        steps = fit(student, mixed, objective, work, epochs, teacher=teacher, seed=seed)
        base_steps = fit(baseline, labelled, [("ce", 1.0)], work, epochs, seed=seed)
        fit(long_baseline, labelled, [("ce", 1.0)], work, max_steps=steps, seed=seed)
        runs.append({"seed": seed, "steps": steps, "baseline_steps": base_steps,
                     "student": accuracy(student, data["test"]), "baseline": accuracy(baseline, data["test"]),
                     "baseline_same_steps": accuracy(long_baseline, data["test"])})
        if seed == seeds[0]:
            save_module(student, os.path.join(a.output_dir, "student"))
    mean = {k: sum(r[k] for r in runs) / len(runs) for k in ("student", "baseline", "baseline_same_steps")}
    results.update(runs=runs, mean=mean, student_params=num_params(student.net), objective=repr(objective),
                   wall_s=round(time.time() - start, 1))
    shutil.rmtree(work, ignore_errors=True)
    with open(os.path.join(a.output_dir, "results.json"), "w") as f:
        json.dump(results, f, indent=2)
    _print(results, len(teacher_rows))
    return results


def _print(res: dict, num_labeled: int) -> None:
    t = res["teacher"]
    s_params = res["student_params"]
    print(f"\n{'model':<34}{'params':>8}{'test accuracy':>15}")
    name = f"teacher ({num_labeled:,} labels)"
    print(f"{name:<34}{t['params']:>8,}{t['accuracy']:>15.4f}")
    for name, key in (("student (distilled)", "student"), ("baseline (same init, same epochs)", "baseline"),
                      ("baseline (same init, same steps)", "baseline_same_steps")):
        per_seed = "  ".join(f"{r[key]:.4f}" for r in res["runs"])
        print(f"{name:<34}{s_params:>8,}{res['mean'][key]:>15.4f}" + (f"  (seeds: {per_seed})" if len(res["runs"]) > 1 else ""))
    wins = sum(r["student"] > r["baseline"] for r in res["runs"])
    print(f"\nstudent: {s_params / t['params']:.1%} of the teacher's parameters, retention "
          f"{res['mean']['student'] / t['accuracy']:.1%} of its accuracy, "
          f"{(res['mean']['student'] - res['mean']['baseline']) * 100:+.1f} points over the baseline "
          f"(better on {wins}/{len(res['runs'])} seeds); {res['wall_s']} s")


if __name__ == "__main__":
    main()
