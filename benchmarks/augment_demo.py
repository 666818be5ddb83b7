"""Does augmenting the distillation data help on the demo task?

Fine-tunes the demo teacher once (fixed data split, data_seed 42), then distils the demo student
over several training seeds with and without augmented copies of its rows (token masking, random
deletion and swap; one copy per row, seeded, labelled by the teacher, cached like any row), on the
same split and the same number of epochs, and prints test accuracy mean ± std per arm. The
augmented arm takes twice the optimizer steps (twice the rows); the teacher (MPNet) has no MLM
head, so the demo cannot use 'mlm' replacement.

    python benchmarks/augment_demo.py                               # 3 seeds, 1,000 unlabeled rows, 2 epochs
    python benchmarks/augment_demo.py --teacher-run runs/feature_terms_demo/teacher   # reuse that teacher
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from feature_terms_demo import config, run_arms, seed_table  # noqa: E402  (same demo config and split)

from distiltune.cli import _quiet_libraries  # noqa: E402
from distiltune.pipeline.run import run_pipeline  # noqa: E402

ARMS = {
    "no augmentation": {},
    "mask/delete/swap x1": {"augment": ["mask", "delete", "swap"], "augment_factor": 1, "augment_prob": 0.15},
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    ap.add_argument("--max-unlabeled", type=int, default=1000)
    ap.add_argument("--epochs", type=float, default=2.0)
    ap.add_argument("--max-test", type=int, default=1000, help="test rows (the same seeded sample for every run)")
    ap.add_argument("--out", default="runs/augment_demo")
    ap.add_argument("--teacher-run", default=None, help="folder of an earlier teacher run (default <out>/teacher)")
    args = ap.parse_args()
    _quiet_libraries()
    t0 = time.perf_counter()
    teacher_run = args.teacher_run or os.path.join(args.out, "teacher")
    # the teacher's run keeps feature_terms_demo's settings, so either script can reuse the other's teacher
    run_pipeline(config(teacher_run, strategy="finetune", student="demo:all-mpnet-base-v2", teacher=None,
                        learning_rate=3e-5, num_train_epochs=1, baseline=False, seed=42, max_unlabeled=2000, export=None),
                 resume=os.path.isdir(teacher_run))
    teacher = os.path.join(teacher_run, "student")
    rows = run_arms(ARMS, args, teacher, lambda name: name.split()[0].replace("/", "_"),
                    export=None, max_test_samples=args.max_test)
    lines, summary = seed_table(rows, "distillation data")
    teacher_acc = next(iter(rows.values()))[0]["teacher"]
    print(f"\nteacher accuracy {teacher_acc:.4f}; seeds {args.seeds}; {args.max_unlabeled} unlabeled rows; "
          f"{args.epochs:g} epochs; total {time.perf_counter() - t0:.0f} s")
    print("\n".join(lines))
    print(json.dumps({"teacher": teacher_acc, "arms": summary}))


if __name__ == "__main__":
    main()
