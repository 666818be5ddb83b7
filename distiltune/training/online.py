"""An online teacher (``online_teacher_lr``): during distillation the teacher keeps fine-tuning on the
batch's labelled rows. Its own cross-entropy joins the loss through one more optimizer group of the
student's Trainer; the KD terms read its outputs detached, so the student never pulls the teacher
towards itself. Its weights travel with each checkpoint, so a resumed stage goes on with the teacher
it had."""
from __future__ import annotations

import dataclasses
import os

import torch

FILE = "online_teacher.safetensors"


def param_group(teacher, lr: float, weight_decay: float) -> dict:
    """The teacher's optimizer group (the Trainer's scheduler decays it with the student's)."""
    return {"params": [p for p in teacher.parameters() if p.requires_grad], "lr": lr, "weight_decay": weight_decay}


def detached(outputs):
    """The teacher's outputs as the KD terms read them: no gradient back into the teacher."""
    def cut(v):
        if isinstance(v, torch.Tensor):
            return v.detach()
        if isinstance(v, (tuple, list)):
            return type(v)(cut(x) for x in v)
        if isinstance(v, dict):
            return {k: cut(x) for k, x in v.items()}
        return v

    return dataclasses.replace(outputs, **{f.name: cut(getattr(outputs, f.name)) for f in dataclasses.fields(outputs)})


def save(teacher, path: str) -> None:
    from safetensors.torch import save_file

    tensors, seen = {}, set()
    for k, v in teacher.state_dict().items():  # safetensors refuses shared memory (tied embeddings): copy those
        v = v.detach().cpu().contiguous()
        tensors[k] = v.clone() if v.data_ptr() in seen else v
        seen.add(v.data_ptr())
    save_file(tensors, path)


def load(teacher, path: str, device: str) -> None:
    if os.path.isfile(path):
        from safetensors.torch import load_file

        teacher.load_state_dict(load_file(path, device=device), strict=False)
