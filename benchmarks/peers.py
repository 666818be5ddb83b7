"""The contenders of ``benchmarks/run.py`` that are not distiltune: the blog-style plain loop, the
bare student loop, TextBrewer and torchdistill. Each ``run_<name>`` trains on the same rows and
models as distiltune's contenders and returns extra fields for the results table."""
from __future__ import annotations

import os


class FixedPadded:
    """Rows padded to ``max_length`` by each model's tokenizer: ``{"teacher": {...}, "student": {...}, "labels"}``."""

    def __init__(self, texts, labels, t_tok, s_tok, max_length):
        import torch

        enc = lambda tok: tok(texts, padding="max_length", truncation=True, max_length=max_length, return_tensors="pt")
        self.t, self.s = dict(enc(t_tok)), dict(enc(s_tok))
        self.labels = torch.tensor(labels)

    def __len__(self):
        return len(self.labels)

    def __getitem__(self, i):
        return {"teacher": {k: v[i] for k, v in self.t.items()}, "student": {k: v[i] for k, v in self.s.items()},
                "labels": self.labels[i]}


def to_device(batch, device):
    if isinstance(batch, dict):
        return {k: to_device(v, device) for k, v in batch.items()}
    return batch.to(device)


def kd_loss(s_logits, t_logits, labels, alpha, T):
    import torch.nn.functional as F

    ce = F.cross_entropy(s_logits, labels)
    kl = F.kl_div(F.log_softmax(s_logits / T, -1), F.softmax(t_logits / T, -1), reduction="batchmean")
    return alpha * ce + (1 - alpha) * T * T * kl


def run_plain(spec, teacher, t_tok, student, s_tok, texts, labels):
    import torch
    from torch.utils.data import DataLoader

    device = spec["device"]
    teacher.to(device).eval()
    student.to(device).train()
    data = FixedPadded(texts, labels, t_tok, s_tok, 128)
    torch.manual_seed(spec["seed"])
    loader = DataLoader(data, batch_size=spec["batch_size"], shuffle=True)
    opt = torch.optim.AdamW(student.parameters(), lr=spec["lr"], weight_decay=0.0)
    steps = 0
    for _ in range(spec["epochs"]):
        for batch in loader:
            batch = to_device(batch, device)
            with torch.no_grad():
                t_logits = teacher(**batch["teacher"]).logits
            s_logits = student(**batch["student"]).logits
            loss = kd_loss(s_logits, t_logits, batch["labels"], spec["alpha"], spec["temperature"])
            loss.backward()
            opt.step()
            opt.zero_grad()
            steps += 1
    return {"steps": steps}


def run_plain_student(spec, teacher, t_tok, student, s_tok, texts, labels, on_step=None):
    """Calibration, no teacher: the student alone on hard labels in a bare loop, dynamic padding,
    bf16 autocast where the device has it (what 'the student's own training speed' means here).
    ``on_step(steps)`` runs after each optimizer step (the profiler's hook); a true result stops."""
    import torch
    from torch.utils.data import DataLoader
    from transformers import DataCollatorWithPadding

    from distiltune.config.schema import cpu_supports_bf16

    device = spec["device"]
    student.to(device).train()
    enc = s_tok(texts, truncation=True, max_length=128)
    rows = [{**{k: enc[k][i] for k in enc}, "labels": labels[i]} for i in range(len(texts))]
    torch.manual_seed(spec["seed"])
    loader = DataLoader(rows, batch_size=spec["batch_size"], shuffle=True, collate_fn=DataCollatorWithPadding(s_tok))
    opt = torch.optim.AdamW(student.parameters(), lr=spec["lr"], weight_decay=0.0, fused=True)  # as the Trainer uses
    bf16 = device == "cuda" or cpu_supports_bf16()
    steps = 0
    for _ in range(spec["epochs"]):
        for batch in loader:
            batch = to_device(dict(batch), device)
            with torch.autocast(device_type=device, dtype=torch.bfloat16, enabled=bf16):
                loss = student(**batch).loss
            loss.backward()
            opt.step()
            opt.zero_grad()
            steps += 1
            if on_step is not None and on_step(steps):
                return {"steps": steps}
    return {"steps": steps}


def run_textbrewer(spec, teacher, t_tok, student, s_tok, texts, labels):
    import torch
    from textbrewer import DistillationConfig, GeneralDistiller, TrainingConfig
    from torch.utils.data import DataLoader

    device = spec["device"]
    teacher.to(device)
    student.to(device)
    data = FixedPadded(texts, labels, t_tok, s_tok, 128)

    def collate(rows):  # the student computes its own CE loss: TextBrewer's hard-label term reads it
        batch = torch.utils.data.default_collate(rows)
        batch["student"]["labels"] = batch.pop("labels")
        return batch

    torch.manual_seed(spec["seed"])
    loader = DataLoader(data, batch_size=spec["batch_size"], shuffle=True, collate_fn=collate)
    T, alpha = spec["temperature"], spec["alpha"]
    # TextBrewer's 'ce' KD loss has no T^2 factor (and equals KL up to the teacher's entropy): put T^2 in its weight.
    distill = DistillationConfig(temperature=T, hard_label_weight=alpha, kd_loss_type="ce",
                                 kd_loss_weight=(1 - alpha) * T * T)
    train = TrainingConfig(device=device, output_dir=os.path.join(spec["work"], "textbrewer"),
                           ckpt_epoch_frequency=spec["epochs"] + 1)  # one checkpoint at the end, like the others' final save
    adaptor = lambda batch, out: {"logits": out.logits, "losses": out.loss} if out.loss is not None else {"logits": out.logits}
    distiller = GeneralDistiller(train_config=train, distill_config=distill, model_T=teacher, model_S=student,
                                 adaptor_T=adaptor, adaptor_S=adaptor)
    opt = torch.optim.AdamW(student.parameters(), lr=spec["lr"], weight_decay=0.0)
    with distiller:
        distiller.train(opt, loader, num_epochs=spec["epochs"])
    return {"steps": spec["epochs"] * len(loader)}


def run_torchdistill(spec, teacher, t_tok, student, s_tok, texts, labels):
    from peer_torchdistill import train

    data = FixedPadded(texts, labels, t_tok, s_tok, 128)
    steps = train(teacher.to(spec["device"]), student.to(spec["device"]), data, epochs=spec["epochs"],
                  batch_size=spec["batch_size"], lr=spec["lr"], temperature=spec["temperature"], alpha=spec["alpha"],
                  seed=spec["seed"], device=spec["device"])
    return {"steps": int(steps)}
