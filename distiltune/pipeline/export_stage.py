"""The deployment stage of a run and of ``distiltune export``: export the student (ONNX fp32, int8),
then evaluate each exported file on the test split beside the PyTorch models, with its agreement
with the PyTorch student. The export itself (torch.onnx, onnxruntime.quantization) is
:mod:`distiltune.export.onnx`; what differs between tasks comes from ``task.export_plan``."""
from __future__ import annotations

import os

import torch

from ..export import onnx as E
from ..models import hf as M


def export_student(ctx, model, tok, source: str, results: dict, folder: str, opts: dict) -> None:
    """Export the student (ONNX fp32, and int8 when asked), then evaluate each file on the test
    split like the other models, with its agreement with the PyTorch student's fp32 predictions.
    Adds ``student_onnx`` / ``student_int8`` to ``results``; speeds are measured with the rest."""
    cfg, data, task = ctx.cfg, ctx.data, ctx.task
    print(f"[distiltune] exporting the student to ONNX{' and int8' if opts['quantize'] == 'int8' else ''}: {folder}")
    test, batcher = task.encode(data.test, tok), task.batcher(tok, exact=True)
    plan = task.export_plan(model, tok, test, batcher, source)
    original, model = model, M.cpu_copy(model)
    keys = E.model_inputs(model, [k for k in batcher.keys if k in test.column_names])
    sample = {k: v for k, v in batcher.batch([test[i] for i in plan["sample_rows"]]).items() if k in keys}
    meta = {"name": "student", "source": os.path.abspath(source), "kind": task.export_kind,
            "task_type": data.task_type, "label_names": data.label_names, **plan["meta"]}
    E.write_export(folder, model, sample, meta, opts["quantize"], tokenizer=tok, calibration=plan["calibration"],
                   source=source, opset=opts.get("opset"))
    # Agreement is with the student in fp32 (what was exported): evaluation may have run in bf16,
    # and a checkpoint stored in bf16 loads as bf16.
    ref = results["student"]["_logits"]
    if cfg.bf16 or any(p.dtype != torch.float32 for p in original.parameters()):
        ref = task.predict(model, test, batcher, desc="student fp32")
    labels = task.labels(test)
    for variant in E.variants(opts["quantize"]):
        ort_model = E.OrtClassifier(folder, variant)
        predictions = task.predict(ort_model, test, batcher, desc=f"evaluating {variant} export")
        metrics = task.metrics(predictions, labels)
        results[E.REPORT_NAMES[variant]] = {
            "metric": metrics[data.metric], **metrics, "params": results["student"]["params"],
            "size_mb": round(ort_model.size_mb(), 4), "path": ort_model.path,
            **task.agreement(ref, predictions, labels), "_speed_input": (ort_model, batcher, test)}


def check_export(results: dict, opts: dict, folder: str, kind: str = "text") -> None:
    """Below an agreement floor the export fails (exit 1), its files kept for inspection; ``kind`` is
    the task's export kind (QA agrees per answer and has a lower int8 default)."""
    from ..export.options import floor as floor_of

    for variant, key in (("fp32", "min_agreement"), ("int8", "min_agreement_int8")):
        name, floor = E.REPORT_NAMES[variant], floor_of(opts, variant, kind)
        r = results.get(name, {})
        if r.get("agreement") is not None and r["agreement"] < floor:
            raise E.ExportCheckFailed(
                f"{name} agrees with the PyTorch student on {r['agreement']:.2%} of test predictions, below the floor "
                f"{floor:.2%} (max logit difference {r['max_abs_logit_diff']:.3g})",
                f"inspect the files kept in {folder}; deploy the fp32 export, or lower {key} knowingly")
