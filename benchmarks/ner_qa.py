"""CoNLL-2003 NER and SQuAD v1.1 QA, the DistilBERT/TinyBERT tasks (or any config file), over several seeds.

Runs ``examples/ner.yaml`` or ``examples/qa.yaml`` (teacher all-mpnet-base-v2 -> student
all-MiniLM-L6-v2, taught across tokenizers) once per seed and prints teacher, student and baseline
metric as mean ± std, with retention, gain over the baseline, speed-up and wall time. ``--full``
lifts the examples' caps (every label, every unlabeled row, the whole test set): hours on a 2-core
CPU, minutes on a GPU. ``--student from_teacher`` keeps 6 of the teacher's 12 layers instead (the
same tokenizer as the teacher: token positions align), for the cross- vs same-tokenizer comparison.

    python benchmarks/ner_qa.py ner --seeds 42 43 44              # the subset config, 3 seeds (~10 min each)
    python benchmarks/ner_qa.py qa --full --seeds 42              # SQuAD at full size
    python benchmarks/ner_qa.py ner --student from_teacher --teacher runs/ner/teacher   # reuse a fine-tuned teacher
    python benchmarks/ner_qa.py examples/demo.yaml --seeds 42 43 44   # any config: the demo, your own task

Each seed's run folder is ``<out>/<seed>``; a finished one is reused (``--resume``).
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import time

from distiltune.cli import _quiet_libraries
from distiltune.config.io import build_config, read_yaml

EXAMPLES = {"ner": "examples/ner.yaml", "qa": "examples/qa.yaml"}
CAPS = ("num_labeled", "max_unlabeled", "max_validation_samples", "max_test_samples")


def run_seed(task: str, seed: int, out: str, full: bool, student: str | None, teacher: str | None,
             extra: dict) -> dict:
    from distiltune.pipeline.outputs import holds_run
    from distiltune.pipeline.run import run_pipeline

    path = os.path.join(os.path.dirname(__file__), "..", EXAMPLES[task]) if task in EXAMPLES else task
    values = read_yaml(path)
    if full:
        for k in CAPS:
            values.pop(k, None)
    values.update(seed=seed, data_seed=42, output_dir=out, disable_tqdm=True, report_to="tensorboard")
    if student:
        values["student"] = student
    if teacher:
        values["teacher"] = teacher  # a fine-tuned teacher folder: reused as given
    values.update(extra)
    cfg = build_config(values, f"benchmarks/ner_qa.py {task}")
    t0 = time.perf_counter()
    report = run_pipeline(cfg, resume=holds_run(out))
    report["wall_s"] = time.perf_counter() - t0
    return report


def mean_std(values: list[float]) -> str:
    if not values:
        return "-"
    if len(values) == 1:
        return f"{values[0]:.4f}"
    return f"{statistics.mean(values):.4f} ± {statistics.stdev(values):.4f}"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("task", help="ner, qa, or the path of a config file (YAML)")
    p.add_argument("--seeds", type=int, nargs="+", default=[42, 43, 44])
    p.add_argument("--full", action="store_true", help="no caps on labels, unlabeled rows and test rows")
    p.add_argument("--student", help="e.g. from_teacher (default: the example's MiniLM)")
    p.add_argument("--teacher", help="a fine-tuned teacher folder to reuse in every seed")
    p.add_argument("--out", help="default: runs/bench_<task>[_full][_<student>]")
    p.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE", help="config overrides (YAML values)")
    a = p.parse_args()
    _quiet_libraries()
    import yaml

    extra = {k: yaml.safe_load(v) for k, v in (s.split("=", 1) for s in a.set)}
    name = a.task if a.task in EXAMPLES else os.path.splitext(os.path.basename(a.task))[0]
    out = a.out or f"runs/bench_{name}{'_full' if a.full else ''}{'_' + a.student if a.student else ''}"
    reports = {s: run_seed(a.task, s, os.path.join(out, str(s)), a.full, a.student, a.teacher, extra) for s in a.seeds}
    metric = next(iter(reports.values()))["metric"]
    rows = {name: [r["models"][name]["metric"] for r in reports.values() if name in r["models"]]
            for name in ("teacher", "student", "baseline_student")}
    summary = {"task": a.task, "metric": metric, "seeds": a.seeds, "full": a.full, "student": a.student or "example",
               **{name: mean_std(v) for name, v in rows.items()},
               "retention": mean_std([r["retention"] for r in reports.values() if r.get("retention") is not None]),
               "gain_over_baseline": mean_std([r["gain_over_baseline"] for r in reports.values()
                                               if r.get("gain_over_baseline") is not None]),
               "speedup": mean_std([r["speedup"] for r in reports.values() if r.get("speedup") is not None]),
               "wall_s": mean_std([r["wall_s"] for r in reports.values()]),
               # the epochs each plateau stage kept / ran, per seed
               "epochs": {s: {stage: f"{c['best_epoch']:g} of {c['epochs_run']:g}"
                              for stage, c in r.get("checkpoint_selection", {}).items() if c.get("best_epoch")}
                          for s, r in reports.items()},
               "diagnostics": {s: [d["check"] for d in r.get("diagnostics", [])] for s, r in reports.items()}}
    print(json.dumps(summary, indent=1))
    with open(os.path.join(out, "summary.json"), "w") as f:
        json.dump({"summary": summary, "per_seed": {s: {n: r["models"][n]["metric"] for n in r["models"]}
                                                    for s, r in reports.items()}}, f, indent=1)


if __name__ == "__main__":
    main()
