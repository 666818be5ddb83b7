"""``distiltune compare``: the strategies users weigh — fine-tune the student alone, distil, distil
then fine-tune — on the same student, data and epoch budget, over several seeds, with the
teacher fine-tuned once and shared. Writes compare.json, report.md and a plot."""
from __future__ import annotations

import dataclasses
import json
import os
import time

import numpy as np

from ..errors import DistilTuneError
from .args import Args
from ..pipeline.outputs import check_output_dir, clear_previous, holds_run

STRATEGIES = ("finetune", "distill", "distill_finetune")


def _teacher(cfg, out: str, overwrite: bool, resume: bool) -> tuple[str | None, float]:
    """The task-trained teacher every strategy shares: fine-tuned here once if its head is untrained."""
    from ..config.io import save_config
    from ..models.hf import resolve_path
    from ..pipeline.checks import plan
    from ..pipeline.stages import teacher_stage

    if not cfg.teacher:
        return None, 0.0
    run_dir = os.path.join(out, "teacher_run")
    ctx = plan(cfg, overwrite=overwrite, resume=resume and holds_run(run_dir), out=run_dir)
    save_config(cfg, os.path.join(ctx.out, "config.yaml"))  # travels with the fine-tuned teacher
    t0 = time.perf_counter()
    teacher = teacher_stage(ctx)
    return resolve_path(teacher.path), time.perf_counter() - t0


def budget(cfg, strategy: str) -> dict:
    """Every strategy trains the student for the same number of epochs: num_train_epochs +
    final_finetune_epochs; only distill_finetune splits them into distillation then hard labels."""
    total = cfg.num_train_epochs + cfg.final_finetune_epochs
    if strategy == "distill_finetune" and cfg.final_finetune_epochs > 0:
        return {"num_train_epochs": cfg.num_train_epochs, "final_finetune_epochs": cfg.final_finetune_epochs}
    return {"num_train_epochs": total, "final_finetune_epochs": 0.0}


def _stats(values: list[float]) -> dict:
    a = np.asarray([v for v in values if v is not None], dtype=float)
    if not len(a):
        return {"mean": None, "std": None, "n": 0}
    return {"mean": float(a.mean()), "std": float(a.std(ddof=1)) if len(a) > 1 else 0.0, "n": int(len(a))}


def compare(cfg, seeds: list[int], strategies: list[str], out: str, overwrite: bool = False, resume: bool = False) -> dict:
    from ..pipeline.run import run_pipeline

    bad = [s for s in strategies if s not in STRATEGIES]
    if bad:
        raise DistilTuneError(f"unknown strategy {bad[0]!r} in --strategies", f"use some of {', '.join(STRATEGIES)}")
    if not cfg.teacher and any(s != "finetune" for s in strategies):
        raise DistilTuneError("comparing distillation strategies needs a teacher", "set teacher: <model folder or hub name>")
    if not seeds:
        raise DistilTuneError("no seeds to run", "give --seeds N with N >= 1")
    if overwrite and resume:
        raise DistilTuneError("--overwrite and --resume were both given", "pass only one of them")
    resume = resume and os.path.isdir(out)  # a compare stopped before its first run left nothing to continue
    if not resume:
        check_output_dir(out, overwrite, resume=False)
    teacher, teacher_seconds = _teacher(cfg, out, overwrite, resume)  # checked first, then its folder is made
    if overwrite:
        clear_previous(out)  # the previous compare's summary and plots; each run folder is replaced by its own run
    os.makedirs(out, exist_ok=True)
    runs: dict[str, list[dict]] = {s: [] for s in strategies}
    teacher_row = None
    for seed in seeds:
        for strategy in strategies:
            run_dir = os.path.join(out, f"{strategy}-seed{seed}")
            run_cfg = dataclasses.replace(
                cfg, strategy=strategy, seed=seed, output_dir=run_dir, baseline=False, export=None,
                teacher=teacher if strategy != "finetune" else None, finetune_teacher="no",
                **budget(cfg, strategy))
            print(f"[distiltune] compare: {strategy}, seed {seed} -> {run_dir}")
            t0 = time.perf_counter()
            report = run_pipeline(run_cfg, overwrite=overwrite, resume=resume and holds_run(run_dir))
            report["wall_s"] = time.perf_counter() - t0
            runs[strategy].append(report)
            teacher_row = teacher_row or report["models"].get("teacher")
    return write_compare(out, cfg, seeds, runs, teacher_row, teacher_seconds)


def summarise(runs: dict[str, list[dict]], teacher_row: dict | None) -> dict:
    rows = {}
    for strategy, reports in runs.items():
        students = [r["models"]["student"] for r in reports]
        metric = _stats([s["metric"] for s in students])
        d = reports[0]["data"]
        distils = strategy != "finetune"
        rows[strategy] = {
            "metric": metric, "per_seed": [s["metric"] for s in students],
            "retention": (metric["mean"] / teacher_row["metric"]) if teacher_row and metric["mean"] is not None else None,
            "params": students[0]["params"], "size_mb": students[0]["size_mb"],
            "latency_ms_p50": _stats([s["latency_ms_p50"] for s in students])["mean"],
            "latency_ms_p95": _stats([s["latency_ms_p95"] for s in students])["mean"],
            "throughput_sps": _stats([s["throughput_sps"] for s in students])["mean"],
            "train_wall_s": _stats([sum(v for k, v in r["timings_s"].items() if k in
                                        ("distill", "intermediate", "student_finetune", "student", "teacher_logits"))
                                    for r in reports])["mean"],
            # Teacher logits are computed once per row and reused every epoch (cached).
            "teacher_forward_passes": (d["labelled"] + d["unlabeled"]) if distils else 0,
            "labelled_rows": d["labelled"], "unlabeled_rows_used": d["unlabeled"] if distils else 0,
        }
    return rows


def write_compare(out: str, cfg, seeds, runs: dict, teacher_row: dict | None, teacher_seconds: float) -> dict:
    metric = next(iter(runs.values()))[0]["metric"]
    result = {"metric": metric, "seeds": list(seeds), "epochs_budget": cfg.num_train_epochs + cfg.final_finetune_epochs,
              "teacher": teacher_row and {k: teacher_row[k] for k in ("metric", "params", "size_mb", "latency_ms_p50",
                                                                         "latency_ms_p95", "throughput_sps")}
              | {"finetune_wall_s": round(teacher_seconds, 1),
                 "fine_tuned_here": os.path.isdir(os.path.join(out, "teacher_run", "teacher"))},
              "strategies": summarise(runs, teacher_row),
              "runs": {s: [os.path.join(f"{s}-seed{seed}") for seed in seeds] for s in runs}}
    best = max(result["strategies"], key=lambda s: result["strategies"][s]["metric"]["mean"] or -1e9)
    result["best"] = best
    plot = _plot(out, result)
    if plot:
        result["plots"] = {"strategies": plot}
    from ..report.build import write_atomic

    write_atomic(os.path.join(out, "compare.json"), json.dumps(result, indent=2))
    write_atomic(os.path.join(out, "report.md"), compare_markdown(result))
    return result


def compare_markdown(r: dict) -> str:
    m = r["metric"]
    lines = [f"# distiltune compare: {', '.join(r['strategies'])}", "",
             f"Same student, data and epoch budget ({r['epochs_budget']:g} epochs); seeds {', '.join(map(str, r['seeds']))}; "
             f"test {m} as mean ± std over seeds.", "",
             f"| strategy | {m} | retention | params (M) | size (MB) | latency p50 / p95 (ms) | throughput (samples/s) "
             "| student training (s) | teacher forward passes |", "|---|---|---|---|---|---|---|---|---|"]
    t = r.get("teacher")
    if t:
        how = f"fine-tuned once, {t['finetune_wall_s']:g} s" if t.get("fine_tuned_here") else "given, already fine-tuned"
        lines.append(f"| teacher ({how}) | {t['metric']:.4f} | 100% | "
                     f"{t['params'] / 1e6:.1f} | {t['size_mb'] or 0:.1f} | {t['latency_ms_p50']:.1f} / "
                     f"{t['latency_ms_p95']:.1f} | {t['throughput_sps']:.1f} | - | - |")
    for name, s in r["strategies"].items():
        met = s["metric"]
        ret = f"{s['retention']:.1%}" if s["retention"] is not None else "-"
        lines.append(f"| {'**' + name + '**' if name == r['best'] else name} | {met['mean']:.4f} ± {met['std']:.4f} | "
                     f"{ret} | {s['params'] / 1e6:.1f} | {s['size_mb'] or 0:.1f} | {s['latency_ms_p50']:.1f} / "
                     f"{s['latency_ms_p95']:.1f} | {s['throughput_sps']:.1f} | {s['train_wall_s']:.0f} | "
                     f"{s['teacher_forward_passes']} |")
    lines += ["", f"Best mean {m}: **{r['best']}**. Per seed: " + "; ".join(
        f"{n} {', '.join(f'{v:.4f}' for v in s['per_seed'])}" for n, s in r["strategies"].items()) + ".", ""]
    lines += [f"![{name}]({path})" for name, path in r.get("plots", {}).items()]
    return "\n".join(lines) + "\n"


def _plot(out: str, r: dict) -> str | None:
    from ..report.plots import _pyplot

    plt = _pyplot()
    names = list(r["strategies"])
    means = [r["strategies"][n]["metric"]["mean"] for n in names]
    stds = [r["strategies"][n]["metric"]["std"] for n in names]
    fig, ax = plt.subplots(figsize=(6.4, 4.2), dpi=110)
    ax.bar(names, means, yerr=stds, capsize=6, color=["tab:gray", "tab:blue", "tab:green"][:len(names)])
    if r.get("teacher"):
        ax.axhline(r["teacher"]["metric"], color="tab:red", ls="--", label=f"teacher {r['teacher']['metric']:.4f}")
        ax.legend(fontsize=8)
    low = min(m - s for m, s in zip(means, stds))
    ax.set_ylim(max(0.0, low - 0.05), None)
    ax.set_ylabel(f"test {r['metric']} (mean ± std over {len(r['seeds'])} seeds)")
    ax.set_title("Strategies on the same student and epoch budget")
    ax.grid(True, axis="y", alpha=0.3)
    fig.tight_layout()
    os.makedirs(os.path.join(out, "plots"), exist_ok=True)
    path = os.path.join("plots", "strategies.png")
    fig.savefig(os.path.join(out, path))
    plt.close(fig)
    return path


def cli(argv: list[str]) -> int:
    from ..config.io import parse_config

    pre = Args(prog="distiltune compare", add_help=False, allow_abbrev=False)  # --seed is a config flag
    pre.add_argument("--seeds", type=int, help="Seeds per strategy: seed, seed+1, ... (default 3; 1 with --quick).")
    pre.add_argument("--strategies", nargs="+", default=list(STRATEGIES))
    known, rest = pre.parse_known_args(argv)
    if "-h" in rest or "--help" in rest:
        print("usage: distiltune compare --config x.yaml [--seeds N] [--strategies finetune distill distill_finetune] "
              "[--quick] [--output-dir DIR] [any config flag]\nRuns each strategy on the same student, data and epoch "
              "budget over N seeds (the teacher is fine-tuned once) and writes compare.json, report.md, plots/.")
        return 0
    cfg, flags = parse_config(rest, "compare")
    n = known.seeds if known.seeds is not None else (1 if "--quick" in rest else 3)
    if n < 1:
        raise DistilTuneError(f"--seeds {n} must be >= 1", "use --seeds 3 (or 1 for a quick look)")
    result = compare(cfg, [cfg.seed + i for i in range(n)], known.strategies, cfg.output_dir,
                     overwrite=flags.overwrite, resume=flags.resume)
    with open(os.path.join(cfg.output_dir, "report.md")) as f:
        print(f.read())
    print(f"[distiltune] best: {result['best']}; compare.json and report.md in {cfg.output_dir}")
    return 0
