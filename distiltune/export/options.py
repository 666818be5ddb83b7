"""The export options and the checks made before any export work: format, quantisation, agreement
floors, opset, the runtime being installed, the source and destination folders."""
from __future__ import annotations

import json
import os

from ..errors import DistilTuneError
from .predict import META_FILE


FORMATS = ("onnx",)


OPSETS = (17, 23)


QUANTIZE = ("none", "int8")


# Agreement floors: fp32 must be the same function; int8 rounding flips predictions that sit on a
# decision boundary (about 2% of the demo's binary test rows, with accuracy unchanged).
FLOORS = {"fp32": 0.999, "int8": 0.97}
# Extractive QA agrees per answer, a stricter test: one boundary token moved is a different answer.
# The SQuAD example's MiniLM student, dynamic int8: 80% identical answers, 96.7% of its F1 kept.
FLOORS_BY_KIND = {"qa": {"int8": 0.70}}


def floor(opts: dict, variant: str, kind: str) -> float:
    """The agreement floor of an exported variant: the user's, else the task kind's default."""
    key = "min_agreement" if variant == "fp32" else "min_agreement_int8"
    if opts.get(key) is not None:
        return opts[key]
    return FLOORS_BY_KIND.get(kind, {}).get(variant, FLOORS[variant])


OPTION_KEYS = {"format": "onnx", "quantize": "none", "min_agreement": FLOORS["fp32"],
               "min_agreement_int8": None, "opset": None}  # None: the task's default (floor())


class ExportCheckFailed(DistilTuneError):
    """The exported model disagrees with the PyTorch model more than allowed; its files are kept."""


def export_options(value) -> dict | None:
    """Normalise the ``export`` option: a mapping, a JSON string, ``onnx`` or ``onnx:int8``; None = off.
    Raises ValueError naming the bad key or value (the config turns it into a one-line error)."""
    if value in (None, "", "none", "no", False):
        return None
    if isinstance(value, str):
        text = value.strip()
        if text.startswith("{"):
            try:
                value = json.loads(text)
            except json.JSONDecodeError:
                raise ValueError(f"export: '{value}' is not valid JSON; write e.g. "
                                 '{"format": "onnx", "quantize": "int8"}') from None
        else:
            fmt, _, q = text.partition(":")
            value = {"format": fmt, "quantize": q or "none"}
    if not isinstance(value, dict):
        raise ValueError(f"export must be a mapping like {{format: onnx, quantize: int8}}, not {value!r}")
    import difflib

    for key in value:
        if key not in OPTION_KEYS:
            near = difflib.get_close_matches(str(key), OPTION_KEYS, n=1)
            raise ValueError(f"export has an unknown key '{key}'" + (f" (did you mean '{near[0]}'?)" if near else "")
                             + f"; valid keys: {', '.join(OPTION_KEYS)}")
    opts = OPTION_KEYS | value
    check_options(opts["format"], opts["quantize"], [opts["min_agreement"], opts["min_agreement_int8"]], opts["opset"],
                  ValueError, cli=False)
    return opts


def check_options(fmt, quantize, floors, opset=None, error=DistilTuneError, cli: bool = True) -> None:
    """Raise ``error`` for an unsupported format, quantisation or agreement floor (named as the
    command line's flags, or as the config's ``export`` keys)."""
    def name(key):
        return f"--{key.replace('_', '-')}" if cli else f"export {key}"

    def fail(problem, fix):
        raise error(problem, fix) if error is DistilTuneError else error(f"{problem}; {fix}")

    if fmt not in FORMATS:
        fail(f"{name('format')} '{fmt}' is not supported", f"use {name('format')} {' or '.join(FORMATS)}")
    if quantize not in QUANTIZE:
        fail(f"{name('quantize')} '{quantize}' is not supported", f"use {name('quantize')} int8, or leave it out for fp32 only")
    for key, value in zip(("min_agreement", "min_agreement_int8"), floors):
        if value is None:  # the task's default
            continue
        if not isinstance(value, (int, float)) or isinstance(value, bool) or not 0 <= value <= 1:
            fail(f"{name(key)} {value!r} is not a share between 0 and 1", "use e.g. 0.99 (99% identical predictions)")
    # The dynamo exporter writes opset 18 and converts to others; onnxruntime 1.18+ runs 17-23.
    if opset is not None and not (isinstance(opset, int) and not isinstance(opset, bool) and OPSETS[0] <= opset <= OPSETS[1]):
        fail(f"{name('opset')} {opset!r} is not supported", f"use an opset from {OPSETS[0]} to {OPSETS[1]}, or leave it out (18)")


def require_runtime() -> None:
    """The export extra is optional: say how to get it before any work is done."""
    import importlib.util

    missing = [m for m in ("onnx", "onnxscript", "onnxruntime") if importlib.util.find_spec(m) is None]
    if missing:
        raise DistilTuneError(f"ONNX export needs {', '.join(missing)}, which is not installed",
                              f"pip install {' '.join(missing)}")


def variants(quantize: str) -> list[str]:
    return ["fp32"] + (["int8"] if quantize == "int8" else [])


def prepare_export_dir(path: str, overwrite: bool) -> None:
    """Refuse a folder that holds files unless ``overwrite``; even then replace only a previous export."""
    if os.path.isfile(path):
        raise DistilTuneError(f"--output-dir {path} is a file", "choose a folder path for the export")
    if os.path.isdir(path) and os.listdir(path):
        if not overwrite:
            raise DistilTuneError(f"export folder {path} already exists", "pass --overwrite to replace it, or choose another --output-dir")
        if not os.path.isfile(os.path.join(path, META_FILE)):
            raise DistilTuneError(f"{path} holds files that are not a distiltune export, so --overwrite will not delete them",
                                  "choose an empty or new --output-dir")


def check_source(path: str) -> str:
    """'transformers' or 'module' for a folder that holds a trained model; a clear error otherwise."""
    from ..models.factories import is_module_dir

    if not os.path.isdir(path):
        raise DistilTuneError(f"--model {path} is not a folder", "point --model at a model folder, e.g. runs/demo/student")
    if os.path.isfile(os.path.join(path, META_FILE)):
        raise DistilTuneError(f"{path} is already an export", "export the PyTorch model folder it was made from")
    if is_module_dir(path):
        return "module"
    if os.path.isfile(os.path.join(path, "config.json")) and any(
            f.endswith((".safetensors", ".bin")) for f in os.listdir(path)):
        return "transformers"
    raise DistilTuneError(f"{path} holds no model (no config.json with weights, no distiltune_module.json)",
                          "point --model at a model folder written by distiltune, e.g. runs/demo/student")
