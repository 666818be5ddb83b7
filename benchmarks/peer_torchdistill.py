"""Peer implementation for the training-speed benchmark: the logits KD job run by torchdistill.

Run with benchmarks/.venv/bin/python (torch, torchvision, torchdistill, transformers).
"""
from __future__ import annotations

import torch

from tv_shim import ensure_torchvision_ops

ensure_torchvision_ops()  # torchdistill imports torchvision

from torch.utils.data import RandomSampler  # noqa: E402
from torchdistill.core.distillation import get_distillation_box  # noqa: E402
from torchdistill.core.interfaces.registry import register_forward_proc_func  # noqa: E402


# The teacher and student use different tokenizers, so each gets its own half of the batch.
@register_forward_proc_func
def peer_bench_forward_teacher(model, sample_batch, targets=None, supp_dict=None, **kwargs):
    return model(**sample_batch["teacher"])


@register_forward_proc_func
def peer_bench_forward_student(model, sample_batch, targets=None, supp_dict=None, **kwargs):
    return model(**sample_batch["student"])


def _to(obj, device):
    if isinstance(obj, torch.Tensor):
        return obj.to(device, non_blocking=True)
    if isinstance(obj, dict):
        return {k: _to(v, device) for k, v in obj.items()}
    return obj


def train(teacher, student, dataset, *, epochs: int, batch_size: int, lr: float, temperature: float,
          alpha: float, seed: int, device: str) -> float:
    """Distil `teacher` into `student` with torchdistill's own machinery; return the number of optimizer steps run."""
    device = torch.device(device)  # torchdistill's io-dict code reads device.type
    dataset_id = "train"
    # 'classifier' is the module whose output is the logits in both BERT (nn.Linear) and MPNet
    # (MPNetClassificationHead) sequence classifiers, so the hooks hand KDLoss the raw logits.
    train_config = {
        "num_epochs": epochs,
        "train_data_loader": {
            "dataset_id": dataset_id,
            "sampler": {"class_or_func": RandomSampler, "kwargs": {}},
            "kwargs": {"batch_size": batch_size, "num_workers": 0, "drop_last": False},
            # Items are dicts, not (sample, target) pairs, so no supp wrapper (it would unpack the dict).
            "requires_supp": False,
        },
        "teacher": {"forward_proc": "peer_bench_forward_teacher", "requires_grad": False,
                    "forward_hook": {"input": [], "output": ["classifier"]}},
        "student": {"forward_proc": "peer_bench_forward_student", "requires_grad": True,
                    "forward_hook": {"input": [], "output": ["classifier"]}},
        "optimizer": {"key": "AdamW", "kwargs": {"lr": lr, "weight_decay": 0.0}},
        "criterion": {
            "key": "WeightedSumLoss",
            "kwargs": {"sub_terms": {"kd": {
                "criterion": {"key": "KDLoss", "kwargs": {
                    "student_module_path": "classifier", "student_module_io": "output",
                    "teacher_module_path": "classifier", "teacher_module_io": "output",
                    "temperature": temperature, "alpha": alpha, "reduction": "batchmean"}},
                "weight": 1.0}}},
        },
    }
    torch.manual_seed(seed)  # the RandomSampler draws its shuffle seed from the global RNG per epoch
    box = get_distillation_box(teacher, student, {dataset_id: dataset}, train_config, device,
                               device_ids=None, distributed=False, lr_factor=1)
    # torchdistill's pre-epoch proc only sets student.train(); keep the teacher deterministic (no dropout).
    teacher.eval()
    steps = 0
    for epoch in range(epochs):
        box.pre_epoch_process(epoch=epoch)
        for sample_batch in box.train_data_loader:
            sample_batch = _to(sample_batch, device)
            loss = box.forward_process(sample_batch, sample_batch["labels"], {})
            box.post_forward_process(loss=loss)  # backward + optimizer.step + zero_grad
            steps += 1
        box.post_epoch_process()
    box.clean_modules()  # removes the forward hooks (and sets requires_grad back on the teacher)
    return float(steps)
