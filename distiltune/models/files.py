"""What a model folder holds, read without loading any weights: weight and tokenizer files, the
weight files' headers, the depth in config.json."""
from __future__ import annotations

import json
import os

from transformers import AutoConfig

from ..errors import DistilTuneError
from .features import LAYOUTS
from .hf import TOKENIZER_FILES


def weights_bytes(path: str | None) -> int | None:
    """Size of a local model folder's weights (None for hub names: unknown before download)."""
    if not path or not os.path.isdir(path):
        return None
    return sum(os.path.getsize(os.path.join(path, f)) for f in os.listdir(path)
               if f.endswith((".safetensors", ".bin", ".pt")) and os.path.isfile(os.path.join(path, f)))


def head_in_checkpoint(path: str) -> bool | None:
    """Whether a local safetensors checkpoint holds a task head (classifier, QA span head); None when unknown
    (hub names, .bin files). Reads only the file headers, not the weights."""
    if not os.path.isdir(path):
        return None
    index = os.path.join(path, "model.safetensors.index.json")
    if os.path.isfile(index):
        with open(index) as f:
            keys = list(json.load(f).get("weight_map", {}))
    elif os.path.isfile(os.path.join(path, "model.safetensors")):
        from safetensors import safe_open

        with safe_open(os.path.join(path, "model.safetensors"), "pt") as f:
            keys = list(f.keys())
    else:
        return None
    heads = ("classifier", "score", "qa_outputs")  # sequence/token classification, extractive QA
    return any(k.split(".")[0] in heads or any(f".{h}." in k for h in heads) or k.startswith(heads) for k in keys)


WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin", "pytorch_model.bin.index.json")


def check_folder(path: str, name: str, role: str) -> None:
    """A local model folder must hold loadable weights and tokenizer files (checked before a run
    changes anything: a missing file would otherwise surface after a previous run was replaced)."""
    if not os.path.isdir(path):
        return  # a hub name: transformers resolves it
    files = set(os.listdir(path))
    if not files & set(WEIGHT_FILES):
        raise DistilTuneError(f"the {role} folder '{name}' holds no weights (none of {', '.join(WEIGHT_FILES)})",
                              "point it at a folder written by save_pretrained, or a hub name")
    if not files & set(TOKENIZER_FILES):
        raise DistilTuneError(f"model folder '{name}' holds no tokenizer files",
                              "save the tokenizer next to the model (tokenizer.save_pretrained(folder))")


def check_freeze_depth(path: str, name: str, role: str, first_layers: int) -> None:
    """``freeze_layers`` within the model's depth, from its config.json alone."""
    if not first_layers:
        return
    config = AutoConfig.from_pretrained(path)
    layout = LAYOUTS.get(getattr(config, "model_type", None))
    if layout is None:
        raise DistilTuneError(f"freeze_layers applies to {', '.join(sorted(LAYOUTS))} models, not the {role} "
                              f"'{name}' ({config.model_type})", "freeze its parameters yourself, or set freeze_layers: 0")
    n = getattr(config, layout[1])
    if first_layers > n:
        raise DistilTuneError(f"freeze_layers={first_layers} but the {role} '{name}' has only {n} layers",
                              f"use freeze_layers between 0 and {n}")
