"""Do intermediate (feature/relation) terms beat logits-only distillation on the demo task?

Fine-tunes the demo teacher once (fixed data split, data_seed 42), then distils the demo
student with each objective over several training seeds, on the same split, and prints the
test accuracy mean ± std per objective. The demo's teacher (MPNet) and student (MiniLM) use
different tokenizers, so only sequence-level terms apply: pooled hidden-state cosine and the
RKD relations (token-level presets such as tinybert refuse this pair, by design).

    python benchmarks/feature_terms_demo.py                      # 3 seeds, 2,000 unlabeled rows, 2 epochs
    python benchmarks/feature_terms_demo.py --seeds 1 --max-unlabeled 500 --epochs 1   # smoke run
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import time

from distiltune.cli import _quiet_libraries
from distiltune.commands.run import DEMO_CONFIG
from distiltune.config.io import build_config, read_yaml
from distiltune.pipeline.run import run_pipeline

OBJECTIVES = {
    "logits only (ce + kd)": {},
    "+ pooled hidden cosine": {"losses": [{"name": "hidden_cosine", "pool": "mean", "weight": 1.0}]},
    "+ rkd preset": {"preset": "rkd"},
}


def config(out: str, **changes):
    values = read_yaml(DEMO_CONFIG)
    values.update(output_dir=out, data_seed=42, report_to="tensorboard", disable_tqdm=True, latency_samples=10,
                  export=None)  # accuracy studies: no ONNX export per run
    values.update(changes)
    return build_config(values, "feature_terms_demo")


def seed_table(rows: dict, what: str) -> tuple[list[str], dict]:
    """Markdown lines and a summary of test accuracy over seeds, per arm (shared with augment_demo.py)."""
    lines = [f"| {what} | accuracy mean ± std | per seed | s/run |", "|---|---|---|---|"]
    summary = {}
    for name, rs in rows.items():
        accs = [r["accuracy"] for r in rs]
        mean, std = statistics.mean(accs), statistics.stdev(accs) if len(accs) > 1 else 0.0
        summary[name] = {"mean": round(mean, 4), "std": round(std, 4), "per_seed": accs}
        lines.append(f"| {name} | {mean:.4f} ± {std:.4f} | {', '.join(f'{a:.4f}' for a in accs)} | "
                     f"{statistics.mean(r['seconds'] for r in rs):.0f} |")
    return lines, summary


def run_arms(arms: dict, args, teacher: str, slug, **fixed) -> dict:
    """Distil the student once per (arm, seed) from one teacher on one split; ``arms`` maps a name to
    its config changes. Finished runs are reused (--resume), so an interrupted study continues."""
    rows = {}
    for name, extra in arms.items():
        for seed in args.seeds:
            out = os.path.join(args.out, f"{slug(name)}-seed{seed}")
            cfg = config(out, teacher=teacher, finetune_teacher="no", baseline=False, seed=seed,
                         max_unlabeled=args.max_unlabeled, num_train_epochs=args.epochs, final_finetune_epochs=0,
                         **fixed, **extra)
            started = time.perf_counter()
            report = run_pipeline(cfg, resume=os.path.isdir(out))
            rows.setdefault(name, []).append({"seed": seed, "accuracy": report["models"]["student"]["metric"],
                                              "teacher": report["models"]["teacher"]["metric"],
                                              "seconds": round(time.perf_counter() - started, 1)})
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    ap.add_argument("--max-unlabeled", type=int, default=2000)
    ap.add_argument("--epochs", type=float, default=2.0)
    ap.add_argument("--out", default="runs/feature_terms_demo")
    args = ap.parse_args()
    _quiet_libraries()
    t0 = time.perf_counter()
    # 1. one teacher for every run (fine-tuning it is the same for all objectives)
    teacher_run = os.path.join(args.out, "teacher")
    run_pipeline(config(teacher_run, strategy="finetune", student="demo:all-mpnet-base-v2", teacher=None,
                        learning_rate=3e-5, num_train_epochs=1, baseline=False, seed=42,
                        max_unlabeled=args.max_unlabeled), resume=os.path.isdir(teacher_run))
    teacher = os.path.join(teacher_run, "student")
    # 2. each objective over the seeds, same data split
    rows = run_arms(OBJECTIVES, args, teacher, lambda name: name.split("(")[0].strip(" +").replace(" ", "_"))
    lines, summary = seed_table(rows, "objective")
    teacher_acc = next(iter(rows.values()))[0]["teacher"]
    print(f"\nteacher accuracy {teacher_acc:.4f}; seeds {args.seeds}; {args.max_unlabeled} unlabeled rows; "
          f"{args.epochs:g} epochs; total {time.perf_counter() - t0:.0f} s")
    print("\n".join(lines))
    print(json.dumps({"teacher": teacher_acc, "objectives": summary}))


if __name__ == "__main__":
    main()
