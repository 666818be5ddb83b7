"""Export a trained model to ONNX (fp32) and int8, and run the exported files like a model.

``torch.onnx`` (the dynamo exporter) writes ``model.onnx`` with dynamic batch (and, for text,
sequence) axes; ``onnxruntime.quantization`` writes ``model.int8.onnx``: dynamic quantisation for
transformers (int8 weights, activations quantised per call), static QDQ quantisation calibrated on
training rows for convolutional networks, where the dynamic kind gains nothing. The tokenizer,
``distiltune_export.json`` and ``predict.py`` (a copy of :mod:`distiltune.export.predict`) travel
with the files, so a plain onnxruntime session or ``python predict.py`` serves them.
The re-check (metric, agreement with PyTorch, latency) is the pipeline's: see :func:`distiltune.pipeline.export_stage.export_student`.
"""
from __future__ import annotations

import contextlib
import inspect
import io
import json
import logging
import os
import re
import shutil
import types
import warnings

import numpy as np
import torch

from ..errors import DistilTuneError
from .options import (FLOORS, FORMATS, OPSETS, OPTION_KEYS, QUANTIZE, ExportCheckFailed, check_options,  # noqa: F401
                      check_source, export_options, prepare_export_dir, require_runtime, variants)
from .predict import META_FILE, TEXT_KINDS, ExportedModel

FILES = {"fp32": "model.onnx", "int8": "model.int8.onnx"}
# Entry names in reports: same keys as the PyTorch models.
REPORT_NAMES = {"fp32": "student_onnx", "int8": "student_int8"}


# ---------------------------------------------------------------- ONNX

class _LogitsOf(torch.nn.Module):
    """Positional tensors in, logits out: the graph's inputs are named and ordered by ``names``."""

    def __init__(self, model, names: list[str]):
        super().__init__()
        self.model, self.names = model, names

    def forward(self, *tensors):
        out = self.model(**dict(zip(self.names, tensors)))
        if getattr(out, "logits", None) is None and getattr(out, "start_logits", None) is not None:
            return torch.stack([out.start_logits, out.end_logits], dim=1)  # a span head: (batch, 2, sequence)
        return out.logits


def model_inputs(model, keys) -> list[str]:
    """The batch keys the model's forward takes (MPNet, DistilBERT take no token_type_ids)."""
    params = inspect.signature(model.forward).parameters
    if any(p.kind is p.VAR_KEYWORD for p in params.values()):
        return list(keys)
    return [k for k in keys if k in params]


@contextlib.contextmanager
def _quiet_exporter():
    """The exporter logs each step and warns about optional torchvision ops; users need none of it."""
    loggers = [logging.getLogger(n) for n in ("torch.onnx", "torch.export", "torch._dynamo", "onnxscript")]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            yield
    finally:
        for lg, level in zip(loggers, levels):
            lg.setLevel(level)


def _export_failure(err: Exception, what: str, source: str) -> DistilTuneError:
    """One line for an exporter error: the unsupported op when there is one, else the error's summary."""
    text = str(err)
    op = re.search(r"No ONNX function found for <OpOverload\(op='([\w.:]+)'", text)
    keep = f"or keep the PyTorch folder {source}: it loads with safetensors and `distiltune evaluate` times it"
    if op:
        return DistilTuneError(f"ONNX has no translation for the op {op.group(1)} used by {what}",
                               f"replace that op in the network with ONNX-expressible ones, {keep}")
    summary = re.search(r"<class '([\w.]+)'>: (.+)", text)
    reason = f"{summary.group(1).rsplit('.', 1)[-1]}: {summary.group(2)}" if summary else (text.splitlines() or [type(err).__name__])[0]
    return DistilTuneError(f"torch.onnx could not export {what} ({reason[:200]})",
                           f"make forward traceable by torch.export (no data-dependent Python control flow), {keep}")


def to_onnx(model, sample: dict[str, torch.Tensor], path: str, text: bool, what: str, source: str,
            opset: int | None = None) -> None:
    """Write ``model`` (a classifier: keyword tensors in, ``.logits`` out) as ONNX with a dynamic batch
    axis, and a dynamic sequence axis for ``text``. ``sample`` must be a padded batch of >= 2 rows of
    different lengths, so the traced graph keeps the attention mask's general path."""
    names = list(sample)
    batch, seq = torch.export.Dim("batch"), torch.export.Dim("sequence")
    shapes = (tuple({0: batch, 1: seq} if text else {0: batch} for _ in names),)  # forward(*tensors): one varargs entry
    was_training = model.training
    model.eval()
    params = sum(p.numel() * p.element_size() for p in model.parameters())
    try:
        with _quiet_exporter(), torch.no_grad():
            torch.onnx.export(_LogitsOf(model, names), tuple(sample[n] for n in names), path, input_names=names,
                              output_names=["logits"], dynamic_shapes=shapes, dynamo=True, opset_version=opset,
                              external_data=params > 1.8e9, verbose=False)  # protobuf files stop at 2 GB
    except DistilTuneError:
        raise
    except Exception as e:  # the exporter raises many kinds; each becomes one line
        raise _export_failure(e, what, source) from None
    finally:
        model.train(was_training)


def _has_op(path: str, op_type: str) -> bool:
    import onnx

    return any(n.op_type == op_type for n in onnx.load(path, load_external_data=False).graph.node)


class _Calibration:
    """onnxruntime's CalibrationDataReader protocol over a list of feeds."""

    def __init__(self, feeds: list[dict]):
        self.it = iter(feeds)

    def get_next(self):
        return next(self.it, None)


def quantize_int8(src: str, dst: str, calibration: list[dict] | None = None) -> str:
    """int8 copy of ``src``. Static QDQ (weights per channel, activations calibrated on
    ``calibration`` feeds) for graphs with convolutions; dynamic otherwise. Returns how."""
    from onnxruntime.quantization import QuantFormat, QuantType, quantize_dynamic, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    pre = dst + ".pre.onnx"
    try:
        with _quiet_exporter():
            # Shape inference and constant folding first, as onnxruntime advises; the symbolic pass
            # cannot follow the dynamo exporter's shape ops, and ONNX's own inference suffices here.
            big = os.path.isfile(src + ".data")  # over 2 GB: weights live beside the graph
            quant_pre_process(src, pre, skip_symbolic_shape=True, save_as_external_data=big)
            if calibration and _has_op(pre, "Conv"):
                quantize_static(pre, dst, _Calibration(calibration), quant_format=QuantFormat.QDQ, per_channel=True,
                                weight_type=QuantType.QInt8, activation_type=QuantType.QUInt8,
                                use_external_data_format=big)
                return f"static QDQ int8 (per-channel weights, activations calibrated on {len(calibration)} training batches)"
            # Per-channel scales: on the demo student 98.3% agreement with fp32 instead of 96.1% per tensor.
            quantize_dynamic(pre, dst, weight_type=QuantType.QInt8, per_channel=True, use_external_data_format=big)
            return "dynamic int8 (per-channel int8 weights incl. embeddings, activations quantised per call)"
    except Exception as e:
        raise DistilTuneError(f"onnxruntime could not quantise {src} to int8 ({str(e).splitlines()[0][:200]})",
                              "use the fp32 export (leave --quantize out)") from None
    finally:
        for leftover in (pre, pre + ".data"):
            if os.path.exists(leftover):
                os.remove(leftover)


def write_export(folder: str, model, sample: dict[str, torch.Tensor], meta: dict, quantize: str,
                 tokenizer=None, calibration: list[dict] | None = None, source: str = "", opset: int | None = None,
                 readme: str = "") -> dict:
    """Fill ``folder`` atomically: ONNX file(s), tokenizer, metadata, predict.py and a README."""
    from ..models.hf import write_folder

    def weights(tmp):
        what = f"{type(getattr(model, 'net', model)).__name__}"
        to_onnx(model, sample, os.path.join(tmp, FILES["fp32"]), meta["kind"] in TEXT_KINDS, what, source, opset)
        if quantize == "int8":
            meta["int8_method"] = quantize_int8(os.path.join(tmp, FILES["fp32"]), os.path.join(tmp, FILES["int8"]), calibration)
        if tokenizer is not None:
            tokenizer.save_pretrained(tmp)
            if not os.path.isfile(os.path.join(tmp, "tokenizer.json")):
                raise DistilTuneError(f"the tokenizer of {source} has no fast (tokenizers) version, which predict.py needs",
                                      "use a model whose tokenizer ships tokenizer.json")
        shutil.copyfile(os.path.join(os.path.dirname(__file__), "predict.py"), os.path.join(tmp, "predict.py"))
        with open(os.path.join(tmp, META_FILE), "w") as f:
            json.dump(meta, f, indent=2)

    meta = dict(meta, format="onnx", files={v: FILES[v] for v in variants(quantize)},
                default="int8" if quantize == "int8" else "fp32", inputs=list(sample))
    write_folder(folder, weights, {"README.md": readme or export_readme(meta)})
    return meta


def export_readme(meta: dict) -> str:
    ex = {"text": '"a gorgeous, witty, seductive movie"', "words": '"Peter Blackburn flew to Brussels ."',
          "qa": "$'Who flew to Brussels?\\tPeter Blackburn flew to Brussels .'"}.get(
        meta["kind"], "--input-file examples.npy")
    return (f"# {meta.get('name', 'model')} (ONNX)\n\nExported by distiltune from `{meta.get('source')}`.\n\n"
            f"- Files: {', '.join(f'`{f}` ({v})' for v, f in meta['files'].items())}"
            + (f"; int8: {meta['int8_method']}" if meta.get("int8_method") else "") + ".\n"
            f"- Inputs: {', '.join(meta['inputs'])} (dynamic batch axis"
            + (", dynamic sequence axis" if meta["kind"] in TEXT_KINDS else "") + "); output: `logits`"
            + (" (batch, 2, sequence): start and end logits per token" if meta["kind"] == "qa" else "") + ".\n"
            f"- Labels: {meta.get('label_names') or meta.get('task_type')}.\n\n"
            "```bash\n"
            f"python predict.py {ex}          # needs numpy, onnxruntime" + (", tokenizers" if meta["kind"] != "tensor" else "") +
            "\ndistiltune predict --model <this folder> " + ex + "\n```\n\n"
            "```python\nimport onnxruntime as ort\nsession = ort.InferenceSession('model.onnx')\n"
            f"logits = session.run(None, {{{', '.join(repr(n) + ': ...' for n in meta['inputs'])}}})[0]\n```\n\n"
            "Agreement with the PyTorch model, metric and latency of each file: `report.md` in this folder "
            "(or the run's report).\n")


class OrtClassifier:
    """An exported variant behind the PyTorch calling convention (``model(**batch).logits``), so
    evaluation and the side-by-side speed measurement treat it like the other models."""

    device = torch.device("cpu")

    def __init__(self, folder: str, variant: str, threads: int | None = None):
        self.folder, self.variant = folder, variant
        # Same thread count as PyTorch, and no spinning threads that would slow the next model timed.
        self.path = os.path.join(folder, FILES[variant])
        try:
            self.exported = ExportedModel(folder, variant, threads=threads or torch.get_num_threads(), spinning=False)
        except Exception as e:  # onnxruntime's own error kinds: an op or opset it lacks, a broken file
            raise DistilTuneError(f"onnxruntime cannot load {self.path}: {str(e).splitlines()[0][:200]}",
                                  "export with the default opset (leave --opset out), or use the fp32 file") from None

    def eval(self):
        return self

    def __call__(self, **batch):
        return types.SimpleNamespace(logits=torch.from_numpy(self.exported.logits(batch)))

    def size_mb(self) -> float:
        return file_size_mb(self.path)


def file_size_mb(path: str) -> float:
    """An ONNX file plus its external-data sidecar (models over 2 GB)."""
    return sum(os.path.getsize(p) for p in (path, path + ".data") if os.path.isfile(p)) / 1e6


def agreement(reference: np.ndarray, logits: np.ndarray, task_type: str, labels: np.ndarray | None = None) -> dict[str, float]:
    """Share of identical predictions (regression: within 1% of the labels' range) and the
    largest absolute logit difference."""
    diff = float(np.max(np.abs(reference - logits))) if len(reference) else 0.0
    if task_type == "regression":
        spread = max(float(np.ptp(labels)) if labels is not None and len(labels) else 0.0, float(np.ptp(reference)))
        tol = 0.01 * (spread or 1.0)
        same = np.abs(reference.reshape(-1) - logits.reshape(-1)) <= tol
    else:
        same = reference.argmax(-1) == logits.argmax(-1)
    return {"agreement": float(np.mean(same)) if len(same) else 1.0, "max_abs_logit_diff": diff}
