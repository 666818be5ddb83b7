"""The deployment step of a run and of ``distiltune export``: export the student (ONNX fp32, int8),
then evaluate each exported file on the test split beside the PyTorch models, with its agreement
with the PyTorch student. The export itself (torch.onnx, onnxruntime.quantization) is
:mod:`distiltune.export`."""
from __future__ import annotations

import os
import time

import numpy as np
import torch

from ..models import hf as M
from ..data.load import load_task_data
from ..errors import DistilTuneError
from ..models.inference import predict_logits
from ..tasks.metrics import task_metrics
from ..report.build import write_report


class ExportStage:
    """Mixed into :class:`~distiltune.pipeline.Pipeline` (uses its data, tokenising and padding)."""

    def export_student(self, model, tok, source: str, results: dict, folder: str, opts: dict) -> None:
        """Export the student (ONNX fp32, and int8 when asked), then evaluate each file on the test
        split like the other models, with its agreement with the PyTorch student's fp32 predictions.
        Adds ``student_onnx`` / ``student_int8`` to ``results``; speeds are measured with the rest."""
        from ..export import onnx as E

        cfg, data = self.cfg, self.data
        print(f"[distiltune] exporting the student to ONNX{' and int8' if opts['quantize'] == 'int8' else ''}: {folder}")
        if tok is not None and tok.pad_token_id is None:
            raise DistilTuneError(f"the tokenizer of {source} has no pad token, so batches of texts cannot be padded",
                                  "set one before saving (tokenizer.pad_token = tokenizer.eos_token) and save the folder again")
        test, padder = self._tok(data.test, tok), self._padder(tok, exact=True)
        original, model = model, M.cpu_copy(model)
        keys = E.model_inputs(model, [k for k in padder.keys if k in test.column_names])
        text = tok is not None
        # Two rows of different lengths, padded: the traced graph keeps the attention mask's general path.
        order = np.argsort(test["length"]) if text else np.arange(len(test))
        pick = [int(order[-1]), int(order[len(order) // 2])] if len(test) > 1 else [0, 0]
        sample = {k: v for k, v in padder.batch([test[i] for i in pick]).items() if k in keys}
        calibration = None
        if not text:  # static int8 for networks with convolutions: activations calibrated on training rows
            train = self._tok(data.train, tok)
            calibration = [{k: v.numpy() for k, v in padder.batch(train.select(range(s, min(s + 32, len(train))))).items()}
                           for s in range(0, min(len(train), 256), 32)]
        meta = {"name": "student", "source": os.path.abspath(source), "kind": "text" if text else "tensor",
                "task_type": data.task_type, "label_names": data.label_names}
        if text:
            meta |= {"max_length": min(cfg.max_length, tok.model_max_length if 0 < tok.model_max_length < 100_000 else cfg.max_length),
                     "pad_token_id": tok.pad_token_id, "pad_token": tok.pad_token,
                     "pad_token_type_id": getattr(tok, "pad_token_type_id", 0), "padding_side": tok.padding_side,
                     "truncation_side": tok.truncation_side,
                     "text_columns": list(data.text_columns)}
        E.write_export(folder, model, sample, meta, opts["quantize"], tokenizer=tok, calibration=calibration,
                       source=source, opset=opts.get("opset"))
        # Agreement is with the student in fp32 (what was exported): evaluation may have run in bf16,
        # and a checkpoint stored in bf16 loads as bf16.
        ref = results["student"]["_logits"]
        if cfg.bf16 or any(p.dtype != torch.float32 for p in original.parameters()):
            ref = predict_logits(model, padder, test, desc="student fp32", progress=not cfg.disable_tqdm)
        labels = np.asarray(test["labels"])
        for variant in E.variants(opts["quantize"]):
            ort_model = E.OrtClassifier(folder, variant)
            logits = predict_logits(ort_model, padder, test, desc=f"evaluating {variant} export", progress=not cfg.disable_tqdm)
            metrics = task_metrics(logits, labels, data.task_type)
            results[E.REPORT_NAMES[variant]] = {
                "metric": metrics[data.metric], **metrics, "params": results["student"]["params"],
                "size_mb": round(ort_model.size_mb(), 4), "path": ort_model.path,
                **E.agreement(ref, logits, data.task_type, labels), "_speed_input": (ort_model, padder, test)}

    def check_export(self, results: dict, opts: dict, folder: str) -> None:
        from ..export.onnx import REPORT_NAMES, ExportCheckFailed

        for variant, key in (("fp32", "min_agreement"), ("int8", "min_agreement_int8")):
            name, floor = REPORT_NAMES[variant], opts[key]
            r = results.get(name, {})
            if r.get("agreement") is not None and r["agreement"] < floor:
                raise ExportCheckFailed(
                    f"{name} agrees with the PyTorch student on {r['agreement']:.2%} of test predictions, below the floor "
                    f"{floor:.2%} (max logit difference {r['max_abs_logit_diff']:.3g})",
                    f"inspect the files kept in {folder}; deploy the fp32 export, or lower {key} knowingly")


def export_model(model_dir: str, output_dir: str, quantize: str = "none", fmt: str = "onnx", overwrite: bool = False,
                 config: str | None = None, min_agreement: float | None = None, min_agreement_int8: float | None = None,
                 opset: int | None = None, teacher: str | None = None) -> dict:
    """``distiltune export``: export a trained model folder, then re-check it on the task's test split
    (metric, agreement with the PyTorch model, latency side by side). Writes ``report.json``/``report.md``
    into the export folder; raises :class:`~distiltune.export.ExportCheckFailed` below an agreement floor.
    With ``teacher`` (a trained model folder) the teacher is evaluated and timed beside them too."""
    from ..export import onnx as E
    from ..config.io import build_config, read_yaml
    from .module_pipeline import pipeline_class

    floors = {"min_agreement": E.FLOORS["fp32"] if min_agreement is None else min_agreement,
              "min_agreement_int8": E.FLOORS["int8"] if min_agreement_int8 is None else min_agreement_int8}
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
    p = pipeline_class(cfg).detached(cfg)
    p.data = load_task_data(cfg)
    model, tok, trained = p._load_model(model_dir, "student")
    if not trained:
        raise DistilTuneError(f"{model_dir} holds an untrained model (a fresh classifier head or network)",
                              "export a trained model folder, e.g. <output_dir>/student")
    t0 = time.perf_counter()
    results = {}
    if teacher:
        t_model, t_tok, t_trained = p._load_model(teacher, "teacher")
        if not t_trained:
            raise DistilTuneError(f"the teacher {teacher} is untrained (a fresh classifier head or network)",
                                  "pass the fine-tuned teacher folder, e.g. <output_dir>/teacher")
        results["teacher"] = p.evaluate_model("teacher", t_model, t_tok, M.resolve_path(teacher))
    results["student"] = p.evaluate_model("student", model, tok, model_dir)
    p.export_student(model, tok, model_dir, results, output_dir, {"quantize": quantize, "opset": opset})
    p.measure(results)
    report = write_report(output_dir, cfg, p.data, results, {"export_and_check": time.perf_counter() - t0})
    p.check_export(results, floors, output_dir)
    return report
