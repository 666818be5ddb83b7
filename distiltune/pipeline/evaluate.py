"""Evaluation stage: every model on the test split with the task's metric, then timed side by side."""
from __future__ import annotations

import os

from ..models import hf as M
from ..models.inference import measure_speeds


def evaluate_model(ctx, name: str, model, tokenizer, path: str | None) -> dict:
    task = ctx.task
    test = task.encode(ctx.data.test, tokenizer)
    predictions = task.predict(model, test, task.batcher(tokenizer), desc=f"evaluating {name}", bf16=ctx.cfg.bf16)
    labels = task.labels(test)
    metrics = task.metrics(predictions, labels)
    return {"metric": metrics[ctx.data.metric], **metrics, "params": M.count_params(model), "_labels": labels,
            "size_mb": round(M.model_size_mb(path), 4) if path and os.path.isdir(path) else None,
            "path": path, "_speed_input": (model, task.batcher(tokenizer, exact=True), test), "_logits": predictions,
            "_tokenizer": tokenizer}


def majority_baseline(ctx, results: dict) -> dict | None:
    """Classification: the test metric (the task's own) of always predicting the most frequent
    training class, the floor a teacher must clear (report diagnostics)."""
    import numpy as np

    data = ctx.data
    scored = next((r for r in results.values() if r.get("_labels") is not None), None)
    if data.task_type != "classification" or not data.label_names or scored is None:
        return None
    names = list(data.label_names)
    top = int(np.argmax(np.bincount(np.asarray(data.train["labels"]), minlength=len(names))))
    labels = np.asarray(scored["_labels"])
    always = np.zeros((len(labels), len(names)), dtype=np.float32)
    always[:, top] = 1.0
    return {"label": names[top], "metric": round(float(ctx.task.metrics(always, labels)[data.metric]), 6)}


def measure(ctx, results: dict) -> dict:
    """Speed of all evaluated models, side by side (fp32 on CPU, as deployed without export)."""
    entries = {name: (M.cpu_copy(r["_speed_input"][0]), *r.pop("_speed_input")[1:]) for name, r in results.items()}
    print(f"[distiltune] measuring latency and throughput of {', '.join(entries)} side by side")
    speeds = measure_speeds(entries, ctx.cfg.latency_samples, ctx.cfg.throughput_batch_size)
    for name, r in results.items():
        r.update(speeds[name])
    models = {n: (e[0], results[n]["_tokenizer"]) for n, e in entries.items()
              if n in results and results[n].get("_tokenizer") is not None}
    generated = ctx.task.generation_speeds(models, ctx.data.test) if models else None
    for name, g in (generated or {}).items():
        results[name]["generation"] = g
    return results


def generate(ctx, results: dict) -> dict | None:
    """The task's generations on the test prompts (a language model's answers), every model on the same
    rows; per-model scores go into ``results``, the side-by-side examples are returned for the report."""
    models = {n: (r["_speed_input"][0], r["_tokenizer"]) for n, r in results.items()
              if r.get("_speed_input") is not None and r.get("_tokenizer") is not None}
    found = ctx.task.generations(models, ctx.data.test) if models else None
    if found is None:
        return None
    print(f"[distiltune] {found['rows']} test prompts answered by greedy generation"
          + (f", checked by '{found['checker']}'" if found["checker"] else ""))
    for name, scores in found.pop("models").items():
        results[name].update(scores)
    return found
