"""``distiltune export``: export a trained model folder, then re-check it on the task's test split."""
from __future__ import annotations

import os
import sys
import time

from ..errors import DistilTuneError
from .args import Args
from ..export import onnx as E
from ..models import hf as M
from ..pipeline.checks import open_task
from ..pipeline.evaluate import evaluate_model, measure
from ..pipeline.export_stage import check_export, export_student
from ..report.build import write_report


def _trained(ctx, path: str, role: str):
    loaded = ctx.task.load(path, role)
    if not loaded.trained:
        what = "holds an untrained model" if role == "student" else "is untrained"
        fix = ("export a trained model folder, e.g. <output_dir>/student" if role == "student"
               else "pass the fine-tuned teacher folder, e.g. <output_dir>/teacher")
        raise DistilTuneError(f"{'' if role == 'student' else 'the teacher '}{path} {what} (a fresh classifier head or network)", fix)
    return loaded


def export_model(model_dir: str, output_dir: str, quantize: str = "none", fmt: str = "onnx", overwrite: bool = False,
                 config: str | None = None, min_agreement: float | None = None, min_agreement_int8: float | None = None,
                 opset: int | None = None, teacher: str | None = None) -> dict:
    """Export a trained model folder, then re-check it on the task's test split (metric, agreement
    with the PyTorch model, latency side by side). Writes ``report.json``/``report.md`` into the
    export folder; raises :class:`~distiltune.export.onnx.ExportCheckFailed` below an agreement floor.
    With ``teacher`` (a trained model folder) the teacher is evaluated and timed beside them too."""
    from ..config.io import build_config, read_yaml

    floors = {"min_agreement": E.FLOORS["fp32"] if min_agreement is None else min_agreement,
              "min_agreement_int8": min_agreement_int8}  # None: the task's default
    E.check_options(fmt, quantize, list(floors.values()), opset)
    E.require_runtime()
    E.check_source(model_dir)
    E.prepare_export_dir(output_dir, overwrite)
    cfg_path = config or os.path.join(model_dir, "distiltune_config.yaml")
    if not os.path.isfile(cfg_path):
        raise DistilTuneError(f"no data to re-check the export against: {model_dir} holds no distiltune_config.yaml",
                              "pass --config <a config naming the task data> (the one the model was trained with)")
    values = {k: v for k, v in read_yaml(cfg_path).items() if k != "export"}
    cfg = build_config(values | {"baseline": False}, cfg_path)
    ctx = open_task(cfg)
    student = _trained(ctx, model_dir, "student")
    t0 = time.perf_counter()
    results = {}
    if teacher:
        t = _trained(ctx, teacher, "teacher")
        results["teacher"] = evaluate_model(ctx, "teacher", t.model, t.tokenizer, M.resolve_path(teacher))
    results["student"] = evaluate_model(ctx, "student", student.model, student.tokenizer, model_dir)
    export_student(ctx, student.model, student.tokenizer, model_dir, results, output_dir, {"quantize": quantize, "opset": opset})
    measure(ctx, results)
    report = write_report(output_dir, cfg, ctx.data, results, {"export_and_check": time.perf_counter() - t0})
    check_export(results, floors, output_dir, ctx.task.export_kind)
    return report


def cli(argv: list[str]) -> int:
    from ..export.onnx import ExportCheckFailed
    from ..report.build import summary_table

    p = Args(prog="distiltune export", description="Export a trained model folder to ONNX (and int8), then re-check "
              "it on the task's test split: metric, agreement with the PyTorch model, latency.")
    p.add_argument("--model", required=True, help="Model folder written by distiltune (e.g. runs/demo/student).")
    p.add_argument("--format", default="onnx", help="Export format: onnx.")
    p.add_argument("--quantize", default="none", help="int8 (adds model.int8.onnx), or none.")
    p.add_argument("--output-dir", help="Export folder (default: <model>_onnx).")
    p.add_argument("--overwrite", action="store_true", help="Replace a previous export in --output-dir.")
    p.add_argument("--config", help="Config naming the task data for the re-check (default: the model folder's "
                                     "distiltune_config.yaml).")
    p.add_argument("--min-agreement", type=float,
                   help="Fail (exit 1, files kept) when the fp32 file agrees with PyTorch on a smaller share of test "
                        "predictions (default 0.999).")
    p.add_argument("--min-agreement-int8", type=float, help="The same floor for the int8 file (default 0.97; 0.70 for "
                                                             "extractive QA, which agrees per answer span).")
    p.add_argument("--opset", type=int, help="ONNX opset (default: the exporter's).")
    p.add_argument("--teacher", help="A trained teacher folder to evaluate and time beside the exports (speed-up, size ratio).")
    a = p.parse_args(argv)
    out = a.output_dir or a.model.rstrip("/") + "_onnx"
    try:
        report = export_model(a.model, out, quantize=a.quantize, fmt=a.format, overwrite=a.overwrite, config=a.config,
                              min_agreement=a.min_agreement, min_agreement_int8=a.min_agreement_int8, opset=a.opset,
                              teacher=a.teacher)
    except ExportCheckFailed as e:
        print(f"distiltune: export check failed: {e}", file=sys.stderr)
        return 1
    print(summary_table(report))
    print(f"[distiltune] exported to {out} (report.md there)")
    return 0
