"""report.json (read by other tools) and report.md / report.html (read by people); model cards are in card.py."""
from __future__ import annotations

import base64
import html
import json
import os

import numpy as np
import torch

from .generations import generation_lines

KEYS = ("metric", "params", "size_mb", "latency_ms_p50", "latency_ms_p95", "throughput_sps")


def _num(x: float) -> str:
    """One decimal for sizes people read (22.9 MB); three significant digits for tiny models (0.0154)."""
    return f"{x:.1f}" if x >= 10 else f"{x:.3g}"


def _times(ratio: float, more: str, less: str) -> str:
    return f"{ratio:.2f}x {more}" if ratio >= 1 else f"{1 / ratio:.2f}x {less}"


def _ratio(a, b):
    return float(a / b) if a and b else None


# every task's metrics (f1_<type> keys too: per entity type for token classification)
METRIC_KEYS = ("accuracy", "f1", "matthews", "pearson", "spearman", "mse", "entity_f1", "entity_precision",
               "entity_recall", "token_accuracy", "exact_match", "nll", "perplexity", "tokens", "kl_to_teacher",
               "top1_agreement", "answer_accuracy", "answers_checked")
# and per entity type (f1_<TYPE>) for token classification, per answer length (em_len_* / f1_len_*) for QA
METRIC_PREFIXES = ("f1_", "em_len_")


def build_report(cfg, data, results: dict, timings: dict) -> dict:
    models = {name: {k: r.get(k) for k in KEYS} | {
        "metrics": {k: r[k] for k in r if k in METRIC_KEYS or k.startswith(METRIC_PREFIXES)},
        "path": r.get("path")} | {k: r[k] for k in ("agreement", "max_abs_logit_diff", "generation") if k in r}
        for name, r in results.items()}
    t, s, b = results.get("teacher"), results.get("student"), results.get("baseline_student")
    report = {
        "task": data.task_type + (f" ({len(data.label_names)} {'tags' if data.task_type == 'token_classification' else 'classes'})"
                                  if data.label_names else " (answer spans)" if data.task_type == "question_answering" else ""),
        "metric": data.metric, "strategy": cfg.strategy, "models": models,
        "retention": _ratio(s and s["metric"], t and t["metric"]),
        "speedup": _ratio(t and t["latency_ms_p50"], s and s["latency_ms_p50"]),
        "throughput_ratio": _ratio(s and s["throughput_sps"], t and t["throughput_sps"]),
        "compression": _ratio(t and t["params"], s and s["params"]),
        "param_fraction": _ratio(s and s["params"], t and t["params"]),
        "gain_over_baseline": (s["metric"] - b["metric"]) if s and b else None,
        # how much of the teacher's lead over the baseline the distilled student recovered
        "gap_recovered": (s["metric"] - b["metric"]) / (t["metric"] - b["metric"]) if s and b and t
        and t["metric"] > b["metric"] else None,
        "data": {"labelled": len(data.train), "unlabeled": 0 if data.unlabeled is None else len(data.unlabeled),
                 "validation": len(data.validation), "test": len(data.test)},
        "schedules": {"temperature": str(cfg.temperature_sched), "distill_weight": str(cfg.distill_weight_sched)},
        "measurement": {"latency": "fp32, batch 1, real test rows padded beforehand, models timed in turn after warm-up",
                        "throughput": f"fp32, batch {cfg.throughput_batch_size}",
                        "threads": torch.get_num_threads(), "device": "cpu",
                        "metric_precision": "bf16 autocast" if cfg.bf16 else "fp32"},
        "timings_s": {k: round(v, 1) for k, v in timings.items()},
    }
    report["logit_term"] = cfg.logit_loss
    if data.task_type == "classification" and data.label_names:
        classes = class_summary(data, results)
        report["data"].update(classes.pop("data"))
        report.update(classes)
    if "student_onnx" in results:
        import onnxruntime

        report["export"] = export_summary(results)
        report["measurement"]["exported"] = (
            f"student_onnx / student_int8 run in onnxruntime {onnxruntime.__version__} (CPU provider, "
            f"{torch.get_num_threads()} intra-op threads, no thread spinning), timed in turn with the PyTorch models on the same rows")
    return report


def class_summary(data, results: dict) -> dict:
    """Classification: labelled rows per class and each model's per-class precision, recall and F1 on the
    test rows (scikit-learn)."""
    from sklearn.metrics import precision_recall_fscore_support

    names = list(data.label_names)
    counts = np.bincount(np.asarray(data.train["labels"]), minlength=len(names))
    out = {"data": {"class_counts": {n: int(c) for n, c in zip(names, counts)}}}
    per_class = {}
    for name, r in results.items():
        if r.get("_logits") is None or r.get("_labels") is None:
            continue
        p, rec, f1, support = precision_recall_fscore_support(
            np.asarray(r["_labels"]), np.asarray(r["_logits"]).argmax(-1), labels=list(range(len(names))), zero_division=0)
        per_class[name] = {n: {"precision": round(float(a), 6), "recall": round(float(b), 6), "f1": round(float(c), 6),
                               "support": int(d)} for n, a, b, c, d in zip(names, p, rec, f1, support)}
    if per_class:
        out["per_class"] = per_class
    return out


def export_summary(results: dict) -> dict:
    """Exported students against the PyTorch student and the teacher: metric kept, size, speed."""
    s, t = results.get("student"), results.get("teacher")
    out = {}
    for name in ("student_onnx", "student_int8"):
        e = results.get(name)
        if not e:
            continue
        out[name] = {
            "agreement": e["agreement"], "max_abs_logit_diff": e["max_abs_logit_diff"],
            "metric_kept": _ratio(e["metric"], s["metric"]) if s and s["metric"] > 0.05 else None,
            "smaller_than_student": _ratio(s and s["size_mb"], e["size_mb"]),
            "speedup_vs_student": _ratio(s and s["latency_ms_p50"], e["latency_ms_p50"]),
            "throughput_vs_student": _ratio(e["throughput_sps"], s and s["throughput_sps"]),
            "speedup_vs_teacher": _ratio(t and t["latency_ms_p50"], e["latency_ms_p50"]),
            "smaller_than_teacher": _ratio(t and t["size_mb"], e["size_mb"]),
        }
    return out


def _summary_lines(report: dict) -> list[str]:
    """The ratios of the run (retention, speed-up, gain, gap recovered) and each language model's
    closeness to its teacher and generation speed, one bullet each."""
    out = []
    fmt = {"retention": "student metric / teacher metric: {:.1%}", "speedup": "batch-1 speed-up over the teacher: {:.2f}x",
           "compression": "teacher params / student params: {:.2f}x",
           "gain_over_baseline": "student minus baseline student (no teacher): {:+.4f}",
           "gap_recovered": "share of the teacher's lead over the baseline that distillation recovered: {:.1%}"}
    for k, f in fmt.items():
        if report.get(k) is not None:
            out.append(f"- {f.format(report[k])}")
    for name, r in report["models"].items():  # a language model's closeness to its teacher on the test tokens
        if r.get("metrics", {}).get("kl_to_teacher") is not None:
            out.append(f"- {name}: KL(teacher || {name}) {r['metrics']['kl_to_teacher']:.4f} nats a test token, "
                       f"top-1 agreement with the teacher {r['metrics']['top1_agreement']:.2%}")
        if r.get("generation"):
            speeds = ", ".join(f"{k.replace('_', ' ')} {v:g}" for k, v in r["generation"].items())
            out.append(f"- {name} generating (greedy, KV cache, fp32): {speeds}")
    return out


def to_markdown(report: dict) -> str:
    m = report["metric"]
    macro = m == "accuracy" and "per_class" in report  # classification: macro-F1 beside accuracy
    ppl = report["task"] == "causal_lm"  # language models: perplexity of the gold responses beside
    lines = [f"# distiltune report: {report['strategy']}", "",
             f"Task: {report['task']}. Data: {report['data']['labelled']} labelled, {report['data']['unlabeled']} unlabeled "
             f"training rows; {report['data']['test']} test rows.", "",
             f"| model | {m} |" + (" macro-F1 |" if macro else "") + (" perplexity |" if ppl else "") +
             " params (M) | size (MB) | latency p50 / p95 (ms) | throughput (samples/s) |",
             "|---|---|" + ("---|" if macro or ppl else "") + "---|---|---|---|"]
    for name, r in report["models"].items():
        size = _num(r["size_mb"]) if r.get("size_mb") else "-"
        f1 = r.get("metrics", {}).get("f1")
        extra = (f" {f1:.4f} |" if f1 is not None else " - |") if macro else ""
        if ppl:
            extra = f" {r.get('metrics', {}).get('perplexity', float('nan')):.3f} |"
        lines.append(f"| {name} | {r['metric']:.4f} |{extra} {_num(r['params'] / 1e6)} | {size} | "
                     f"{r['latency_ms_p50']:.1f} / {r['latency_ms_p95']:.1f} | {r['throughput_sps']:.1f} |")
    lines.append("")
    if report.get("majority_baseline"):
        mb = report["majority_baseline"]
        lines += [f"Always predicting the most frequent training class ('{mb['label']}') scores {m} {mb['metric']:.4f}.", ""]
    found = report.get("diagnostics")
    if found is not None:
        lines += ["## Diagnostics", ""] + ([f"- {d['line']}" for d in found] if found else
                                           ["- none fired (teacher vs students, stages still improving at their end, "
                                            "over-fitting, a KD term that did not fall, a teacher near the majority "
                                            "class, class imbalance under accuracy)"]) + [""]
    lines += _summary_lines(report)
    lines += generation_lines(report)
    names = {"student_onnx": "ONNX fp32 student", "student_int8": "int8 student"}
    for name, e in report.get("export", {}).items():
        parts = [f"agrees with the PyTorch student on {e['agreement']:.2%} of test predictions "
                 f"(max logit difference {e['max_abs_logit_diff']:.2g})"]
        if e["metric_kept"] is not None:
            parts.append(f"keeps {e['metric_kept']:.2%} of its {m}")
        if e["smaller_than_student"] is not None:
            parts.append(f"{_times(e['smaller_than_student'], 'smaller', 'larger')} on disk")
        if e["speedup_vs_student"] is not None:
            parts.append(f"{_times(e['speedup_vs_student'], 'faster', 'slower')} at batch 1")
        vs_teacher = [_times(e[k], a, b) for k, a, b in (("speedup_vs_teacher", "faster", "slower"),
                                                         ("smaller_than_teacher", "smaller", "larger")) if e[k] is not None]
        if vs_teacher:
            parts.append("vs the teacher: " + ", ".join(vs_teacher))
        lines.append(f"- {names[name]}: " + "; ".join(parts))
    for stage, c in report.get("checkpoint_selection", {}).items():
        if c["best_step"] is None:
            continue
        lines.append(f"- {stage}: kept the checkpoint of epoch {c['best_epoch']:g} (step {c['best_step']}), best validation "
                     f"{c['metric']} {c['best']:.4f} over {len(c['evaluations'])} evaluations; ran {c['epochs_run']:g} of "
                     f"{c['epochs_planned']:g} epochs" + (" (early stopping)" if c["stopped_early"] else ""))
    meas = report["measurement"]
    lines += ["", f"Latency: {meas['latency']}; throughput: {meas['throughput']}; {meas['threads']} CPU threads. "
                  f"Metrics computed with {meas['metric_precision']}." + (f" Exported: {meas['exported']}." if meas.get("exported") else ""),
              f"Schedules: temperature {report['schedules']['temperature']}, distill_weight {report['schedules']['distill_weight']}.",
              "", "Wall time per stage (s): " + ", ".join(f"{k} {v}" for k, v in report["timings_s"].items()), ""]
    lines += [f"![{name.replace('_', ' ')}]({path})" for name, path in report.get("plots", {}).items()]
    return "\n".join(lines)


PLOT_CAPTIONS = {"metric_vs_latency": "Test metric vs batch-1 latency; the dashed line joins the models no other "
                                      "beats on both (the Pareto front).",
                 "metric_vs_size": "Test metric vs size on disk.",
                 "training_curves": "Per training stage: loss terms over steps; temperature and term weights "
                                    "(schedules) and, when evaluated, the validation metric.",
                 "confusion_matrix": "The student's predictions on the test split (per word for token classification).",
                 "f1_per_type": "Test F1 per entity type, for each model."}


def to_html(report: dict, out: str) -> str:
    """One file that opens anywhere: the markdown's content with the plots embedded as base64 PNGs."""
    md = to_markdown(report).splitlines()
    body, table = [], []
    for line in md:
        if line.startswith("|"):
            cells = [html.escape(c.strip()) for c in line.strip("|").split("|")]
            if not set("".join(cells)) <= set("-"):
                tag = "th" if not table else "td"
                table.append("<tr>" + "".join(f"<{tag}>{c}</{tag}>" for c in cells) + "</tr>")
            continue
        if table:
            body.append("<table>" + "".join(table) + "</table>")
            table = []
        if line.startswith("# "):
            body.append(f"<h1>{html.escape(line[2:])}</h1>")
        elif line.startswith("## "):
            body.append(f"<h2>{html.escape(line[3:])}</h2>")
        elif line.startswith("### "):
            body.append(f"<h3>{html.escape(line[4:])}</h3>")
        elif line.startswith("- "):
            body.append(f"<li>{html.escape(line[2:])}</li>")
        elif line.startswith("!["):
            continue
        elif line.strip():
            body.append(f"<p>{html.escape(line)}</p>")
    if table:
        body.append("<table>" + "".join(table) + "</table>")
    for name, path in report.get("plots", {}).items():
        with open(os.path.join(out, path), "rb") as f:
            data = base64.b64encode(f.read()).decode()
        body.append(f'<figure><img alt="{name}" src="data:image/png;base64,{data}">'
                    f"<figcaption>{html.escape(PLOT_CAPTIONS.get(name, name))}</figcaption></figure>")
    style = ("body{font-family:sans-serif;max-width:1100px;margin:2em auto;padding:0 1em}"
             "table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:4px 8px;text-align:right}"
             "img{max-width:100%}figure{margin:1.5em 0}")
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>distiltune report</title>"
            f"<style>{style}</style></head><body>{''.join(body)}</body></html>\n")


def write_report(out: str, cfg, data, results: dict, timings: dict, logs_dir: str | None = None,
                 selection: dict | None = None, majority: dict | None = None, generations: dict | None = None) -> dict:
    """report.json, report.md and a self-contained report.html, with the plots in ``out/plots``."""
    from .diagnostics import diagnose
    from .plots import read_histories, write_plots

    report = build_report(cfg, data, results, timings)
    if selection:
        report["checkpoint_selection"] = selection
    if majority:  # the test metric of always predicting the most frequent training class
        report["majority_baseline"] = majority
    if generations:  # a language model's greedy answers: the checker, and examples side by side
        report["generations"] = generations
    if logs_dir is not None:  # a run's report (not distiltune evaluate's): the checks of report.diagnostics
        report["diagnostics"] = diagnose(report, read_histories(logs_dir))
    # the labels the models were scored against (per word, padded, for token classification)
    scored = next((r["_labels"] for n in ("student", *results) if n in results for r in [results[n]] if "_labels" in r), None)
    labels = scored if scored is not None else (np.asarray(data.test["labels"]) if "labels" in data.test.column_names else None)
    report["plots"] = write_plots(out, report, results, labels, data.label_names, logs_dir)
    for name, text in (("report.json", json.dumps(report, indent=2)), ("report.md", to_markdown(report)),
                       ("report.html", to_html(report, out))):
        write_atomic(os.path.join(out, name), text)
    return report


def write_atomic(path: str, text: str) -> None:
    """Temp file + rename: a reader never sees half a report."""
    with open(path + ".tmp", "w", encoding="utf-8") as f:
        f.write(text)
    os.replace(path + ".tmp", path)


def summary_table(report: dict) -> str:
    """The teacher / student / baseline table printed at the end of a run."""
    m = report["metric"]
    rows = [f"{'model':<18}{m:>10}{'params':>10}{'p50 ms':>9}{'samples/s':>11}"]
    for name, r in report["models"].items():
        rows.append(f"{name:<18}{r['metric']:>10.4f}{_num(r['params'] / 1e6):>9}M{r['latency_ms_p50']:>9.1f}{r['throughput_sps']:>11.1f}")
    extras = []
    if report.get("retention") is not None:
        extras.append(f"retention {report['retention']:.1%}")
    if report.get("speedup") is not None:
        extras.append(f"speed-up {report['speedup']:.1f}x")
    if report.get("param_fraction") is not None:
        extras.append(f"params {report['param_fraction']:.1%} of teacher")
    if report.get("gain_over_baseline") is not None:
        extras.append(f"gain over baseline {report['gain_over_baseline'] * 100:+.1f} points")
    return "\n".join(rows + (["  ".join(extras)] if extras else []))
