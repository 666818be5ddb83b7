"""A teacher that adapts while it teaches (``online_teacher_lr``) against the cached static teacher:
the same fine-tuned teacher, student init, data and epochs; test metric of the student and the
distillation stage's wall time, side by side in one process.

    python benchmarks/online_teacher.py --config examples/demo.yaml --teacher runs/demo/teacher --lr 1e-5
    python benchmarks/online_teacher.py --config benchmarks/configs/trec.yaml --teacher runs/trec/teacher --seeds 42 43

Both runs use fixed distillation epochs (distill_stop: fixed), so the comparison is at one budget.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics

from distiltune.cli import _quiet_libraries
from distiltune.config.io import build_config, read_yaml


def one(config: str, teacher: str, out: str, seed: int, lr: float | None, extra: dict) -> dict:
    from distiltune.pipeline.outputs import holds_run
    from distiltune.pipeline.run import run_pipeline

    values = read_yaml(config)
    values.update(teacher=teacher, seed=seed, output_dir=out, disable_tqdm=True, distill_stop="fixed", baseline=False,
                  export=None, online_teacher_lr=lr)
    values.update(extra)
    report = run_pipeline(build_config(values, "benchmarks/online_teacher.py"), resume=holds_run(out))
    t = report["timings_s"]
    return {"student": report["models"]["student"]["metric"], "teacher": report["models"]["teacher"]["metric"],
            "distill_s": t.get("distill"), "rows_s": t.get("teacher_logits")}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--config", required=True)
    p.add_argument("--teacher", required=True, help="a fine-tuned teacher folder (e.g. <run>/teacher)")
    p.add_argument("--lr", type=float, default=1e-5, help="online_teacher_lr")
    p.add_argument("--seeds", type=int, nargs="+", default=[42])
    p.add_argument("--out", default="runs/bench_online")
    p.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE", help="config overrides (YAML values)")
    a = p.parse_args()
    _quiet_libraries()
    import yaml

    extra = {k: yaml.safe_load(v) for k, v in (s.split("=", 1) for s in a.set)}
    rows = {}
    for seed in a.seeds:
        for name, lr in (("static", None), ("online", a.lr)):
            rows[(name, seed)] = one(a.config, a.teacher, os.path.join(a.out, f"{name}_{seed}"), seed, lr, extra)
    summary = {}
    for name in ("static", "online"):
        got = [rows[(name, s)] for s in a.seeds]
        student = [g["student"] for g in got]
        summary[name] = {"student": round(statistics.mean(student), 4),
                         "student_std": round(statistics.stdev(student), 4) if len(student) > 1 else None,
                         "distill_s": round(statistics.mean(g["distill_s"] or 0 for g in got), 1),
                         "teacher_outputs_s": round(statistics.mean(g["rows_s"] or 0 for g in got), 1)}
    s, o = summary["static"], summary["online"]
    summary["online_minus_static"] = round(o["student"] - s["student"], 4)
    summary["time_ratio"] = round((o["distill_s"] + o["teacher_outputs_s"]) / max(s["distill_s"] + s["teacher_outputs_s"], 1e-9), 2)
    summary["per_seed"] = {f"{n}_{sd}": r for (n, sd), r in rows.items()}
    print(json.dumps(summary, indent=1))
    os.makedirs(a.out, exist_ok=True)
    with open(os.path.join(a.out, "summary.json"), "w") as f:
        json.dump(summary, f, indent=1)


if __name__ == "__main__":
    main()
