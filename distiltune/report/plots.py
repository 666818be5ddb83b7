"""The report's pictures (matplotlib, headless): metric vs latency with the Pareto front, metric vs
size, training curves (loss terms, schedules, validation metric) and the student's confusion matrix."""
from __future__ import annotations

import json
import os

import numpy as np

PLOT_DIR = "plots"
# Models in the order and colours people compare them.
COLOURS = {"teacher": "tab:red", "student": "tab:blue", "baseline_student": "tab:gray",
           "student_onnx": "tab:cyan", "student_int8": "tab:green"}


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")  # no display needed (CI, servers)
    import matplotlib.pyplot as plt

    return plt


def pareto_front(points: dict[str, tuple[float, float]]) -> list[str]:
    """Names of the points no other point beats on both axes (lower cost x, higher metric y),
    ordered by cost: the models worth deploying at some budget."""
    front = [n for n, (x, y) in points.items()
             if not any((x2 <= x and y2 >= y) and (x2 < x or y2 > y) for m, (x2, y2) in points.items() if m != n)]
    return sorted(front, key=lambda n: points[n][0])


def _scatter(models: dict, key: str, xlabel: str, title: str, metric: str, path: str) -> None:
    plt = _pyplot()
    points = {n: (r[key], r["metric"]) for n, r in models.items() if r.get(key) and r.get("metric") is not None}
    fig, ax = plt.subplots(figsize=(6.4, 4.4), dpi=110)
    for n, (x, y) in points.items():
        ax.scatter([x], [y], s=60, color=COLOURS.get(n, "tab:purple"), label=n, zorder=3)
        ax.annotate(n, (x, y), textcoords="offset points", xytext=(6, 4), fontsize=8)
    front = pareto_front(points)
    if len(front) > 1:
        ax.plot([points[n][0] for n in front], [points[n][1] for n in front], "--", color="black", lw=1,
                label="Pareto front", zorder=2)
    ax.set_xscale("log")
    _plain_log_ticks(ax, [x for x, _ in points.values()])
    ax.set_xlabel(xlabel)
    ax.set_ylabel(f"test {metric}")
    ax.set_title(title)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8, loc="best")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


NICE = (1, 2, 3, 5)


def nice_ticks(lo: float, hi: float) -> list[float]:
    """1-2-3-5 steps per decade covering [lo, hi], at most about 8 of them: tick values a person reads
    at a glance on a log axis (3, 5, 10, 20 ms), instead of matplotlib's 3x10^0 minor labels."""
    if not (lo > 0 and hi > 0):
        return []
    ticks = [m * 10.0 ** e for e in range(int(np.floor(np.log10(lo))) - 1, int(np.ceil(np.log10(hi))) + 1) for m in NICE]
    inside = [t for t in ticks if lo / 1.3 <= t <= hi * 1.3]
    while len(inside) > 8:  # wide ranges: keep every other tick
        inside = inside[::2]
    return inside


def _plain_log_ticks(ax, xs: list[float]) -> None:
    from matplotlib.ticker import FixedLocator, FuncFormatter, NullFormatter

    ticks = nice_ticks(min(xs), max(xs)) if xs else []
    if not ticks:
        return
    ax.xaxis.set_major_locator(FixedLocator(ticks))
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    ax.xaxis.set_minor_formatter(NullFormatter())


def _curves(histories: dict[str, list[dict]], metric: str, path: str) -> bool:
    """One row per training stage: loss terms over steps | schedules and validation metric."""
    stages = {s: h for s, h in histories.items() if any("loss" in e for e in h)}
    if not stages:
        return False
    plt = _pyplot()
    fig, axes = plt.subplots(len(stages), 2, figsize=(11, 3.2 * len(stages)), dpi=100, squeeze=False)
    for row, (stage, hist) in enumerate(stages.items()):
        train = [e for e in hist if "loss" in e and "step" in e]
        steps = [e["step"] for e in train]
        ax = axes[row][0]
        keys = ["loss"] + sorted({k for e in train for k in e if k.startswith("loss_")})
        for k in keys:
            ax.plot(steps, [e.get(k, np.nan) for e in train], "o-" if len(steps) < 5 else "-", label=k,
                    lw=1.8 if k == "loss" else 1.0, ms=4)
        ax.set_title(f"{stage}: loss terms (unweighted) and total")
        ax.set_xlabel("optimizer step")
        ax.set_ylabel("loss")
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=7)
        ax = axes[row][1]
        sched = sorted({k for e in train for k in e if k == "temperature" or k.startswith("weight_")})
        for k in sched:
            ax.plot(steps, [e.get(k, np.nan) for e in train], "o-" if len(steps) < 5 else "-", label=k, ms=4)
        ax.set_xlabel("optimizer step")
        ax.set_ylabel("temperature / term weight")
        ax.set_title(f"{stage}: schedules" + (" and validation metric" if any(f"eval_{metric}" in e for e in hist) else ""))
        evals = [e for e in hist if f"eval_{metric}" in e]
        if evals:
            ax2 = ax.twinx()
            ax2.plot([e["step"] for e in evals], [e[f"eval_{metric}"] for e in evals], "o-", color="black",
                     label=f"validation {metric}")
            ax2.set_ylabel(f"validation {metric}")
            ax2.legend(fontsize=7, loc="lower right")
        ax.grid(True, alpha=0.3)
        if sched:
            ax.legend(fontsize=7, loc="upper right")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return True


def _confusion(labels: np.ndarray, pred: np.ndarray, names: list[str], model: str, path: str) -> None:
    from sklearn.metrics import confusion_matrix

    plt = _pyplot()
    cm = confusion_matrix(labels, pred, labels=list(range(len(names))))
    size = min(2.5 + 0.5 * len(names), 12)
    fig, ax = plt.subplots(figsize=(size + 1, size), dpi=110)
    im = ax.imshow(cm, cmap="Blues")
    fig.colorbar(im, ax=ax, label="test rows")
    ax.set_xticks(range(len(names)), names, rotation=45, ha="right", fontsize=8)
    ax.set_yticks(range(len(names)), names, fontsize=8)
    if len(names) <= 20:
        for i in range(len(names)):
            for j in range(len(names)):
                ax.text(j, i, str(cm[i, j]), ha="center", va="center", fontsize=8,
                        color="white" if cm[i, j] > cm.max() / 2 else "black")
    ax.set_xlabel("predicted label")
    ax.set_ylabel("true label")
    ax.set_title(f"{model}: confusion matrix on the test split")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def read_histories(logs_dir: str | None) -> dict[str, list[dict]]:
    """The Trainer's log history of each stage, as written by the pipeline (``logs/<stage>.json``)."""
    if not logs_dir or not os.path.isdir(logs_dir):
        return {}
    order = ["teacher", "intermediate", "distill", "student_finetune", "student", "baseline_student"]
    found = {f[:-5]: os.path.join(logs_dir, f) for f in os.listdir(logs_dir) if f.endswith(".json")}
    out = {}
    for stage in sorted(found, key=lambda s: order.index(s) if s in order else len(order)):
        with open(found[stage]) as f:
            out[stage] = json.load(f)
    return out


def _per_type(models: dict, path: str) -> bool:
    """Grouped bars of F1 per entity type (``f1_<type>`` metrics), one bar per model."""
    kinds = sorted({k[3:] for r in models.values() for k in r.get("metrics", {})
                    if k.startswith("f1_") and not k.startswith("f1_len_")})
    names = [n for n, r in models.items() if any(f"f1_{k}" in r.get("metrics", {}) for k in kinds)]
    if not kinds or not names:
        return False
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(max(5, 1.4 * len(kinds) + 2), 4), dpi=110)
    width = 0.8 / len(names)
    for j, name in enumerate(names):
        vals = [models[name]["metrics"].get(f"f1_{k}", 0.0) for k in kinds]
        ax.bar(np.arange(len(kinds)) + (j - (len(names) - 1) / 2) * width, vals, width, label=name)
    ax.set_xticks(range(len(kinds)), kinds)
    ax.set_ylabel("test F1")
    ax.set_ylim(0, 1.05)
    ax.set_title("F1 per entity type")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return True


def _by_length(models: dict, path: str) -> bool:
    """Extractive QA: exact match and F1 by the gold answer's length in words, one line per model."""
    buckets = []  # in the order the metric gives them (shortest answers first)
    for r in models.values():
        buckets += [k[7:] for k in r.get("metrics", {}) if k.startswith("f1_len_") and k[7:] not in buckets]
    names = [n for n, r in models.items() if any(f"f1_len_{b}" in r.get("metrics", {}) for b in buckets)]
    if not buckets or not names:
        return False
    plt = _pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(10, 4), dpi=110, sharey=True)
    for ax, (key, title) in zip(axes, (("em_len_", "exact match"), ("f1_len_", "F1"))):
        for name in names:
            vals = [models[name]["metrics"].get(f"{key}{b}", np.nan) for b in buckets]
            ax.plot(range(len(buckets)), vals, marker="o", label=name)
        ax.set_xticks(range(len(buckets)), buckets)
        ax.set_xlabel("gold answer length (words)")
        ax.set_title(f"test {title} by answer length")
        ax.set_ylim(0, 1.05)
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return True


def write_plots(out: str, report: dict, results: dict, labels: np.ndarray | None, label_names: list[str] | None,
                logs_dir: str | None = None) -> dict[str, str]:
    """Write the PNGs into ``out/plots``; returns {plot name: path relative to ``out``}."""
    os.makedirs(os.path.join(out, PLOT_DIR), exist_ok=True)
    written = {}

    def target(name):
        written[name] = os.path.join(PLOT_DIR, f"{name}.png")
        return os.path.join(out, written[name])

    models, m = report["models"], report["metric"]
    threads = report["measurement"]["threads"]
    if sum(1 for r in models.values() if r.get("latency_ms_p50")) >= 1:
        _scatter(models, "latency_ms_p50", f"latency p50 at batch 1 (ms, CPU, {threads} threads, log scale)",
                 f"Test {m} vs latency", m, target("metric_vs_latency"))
    if sum(1 for r in models.values() if r.get("size_mb")) >= 1:
        _scatter(models, "size_mb", "size on disk (MB, log scale)", f"Test {m} vs size", m, target("metric_vs_size"))
    curves = os.path.join(PLOT_DIR, "training_curves.png")
    if _curves(read_histories(logs_dir), m, os.path.join(out, curves)):
        written["training_curves"] = curves
    per_type = os.path.join(PLOT_DIR, "f1_per_type.png")
    if _per_type(models, os.path.join(out, per_type)):
        written["f1_per_type"] = per_type
    by_length = os.path.join(PLOT_DIR, "by_answer_length.png")
    if _by_length(models, os.path.join(out, by_length)):
        written["by_answer_length"] = by_length
    student = next((n for n in ("student", *results) if n in results and "_logits" in results[n]), None)
    if label_names and labels is not None and student is not None:
        pred = np.asarray(results[student]["_logits"]).argmax(-1)
        if labels.ndim == 2:  # per word: every labelled word counts once
            keep = labels != -100
            labels, pred = labels[keep], pred[:, :labels.shape[1]][keep]
        _confusion(labels, pred, list(label_names), student, target("confusion_matrix"))
    return written
