"""Make ``import torchvision`` work where PyPI's torchvision was built for another torch.

transformers and torchdistill import torchvision; a torchvision whose compiled ``_C`` does not match
the installed torch dies on import ("operator torchvision::nms does not exist"). Load ``_C`` first, so
a matching build keeps its real ops, and declare schema-only stand-ins for the two ops its import
looks up only when that fails (text distillation never calls them).
"""
from __future__ import annotations

import importlib.machinery
import importlib.util
import os


def ensure_torchvision_ops() -> None:
    import torch

    spec = importlib.util.find_spec("torchvision")
    if spec is None or not spec.submodule_search_locations:
        return
    for suffix in importlib.machinery.EXTENSION_SUFFIXES:
        lib = os.path.join(spec.submodule_search_locations[0], "_C" + suffix)
        if os.path.exists(lib):
            try:
                torch.ops.load_library(lib)
            except (OSError, RuntimeError):
                pass
            break
    if not hasattr(torch.ops.torchvision, "nms"):
        for op in ("nms", "qnms"):
            torch.library.define(f"torchvision::{op}", "(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
