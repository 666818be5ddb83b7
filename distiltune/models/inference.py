"""Task metrics (scikit-learn/scipy), batched inference in length-sorted order, and CPU speed."""
from __future__ import annotations

import contextlib
import time

import numpy as np
import torch
from datasets import Dataset
from tqdm.auto import tqdm


MODEL_KEYS = ("input_ids", "attention_mask", "token_type_ids")


def _autocast(enabled: bool, device):
    if not enabled:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16)


@torch.inference_mode()
def predict_logits(model, padder, ds: Dataset, batch_size: int = 64, bf16: bool = False,
                   desc: str = "predicting", prefix: str = "", progress: bool = True) -> np.ndarray:
    """Logits for every row of a tokenised ``ds`` (columns ``{prefix}input_ids`` ...), in row order.

    Rows are run longest-first in batches of similar length, which wastes little on padding.
    """
    model.eval()
    device = model.device if isinstance(getattr(model, "device", None), torch.device) else next(model.parameters()).device
    if f"{prefix}length" in ds.column_names:
        order = np.argsort(-np.asarray(ds[f"{prefix}length"]), kind="stable")
    else:  # fixed-size inputs (images): any order
        order = np.arange(len(ds))
    keys = [k for k in padder.keys if f"{prefix}{k}" in ds.column_names]
    # Plain lists read once: indexing a `datasets` column row by row costs ~0.1 ms a value.
    table = ds.select_columns([f"{prefix}{k}" for k in keys])[:]
    cols = {k: table[f"{prefix}{k}"] for k in keys}
    out, pending = None, []

    def flush():  # one device-to-host copy for several batches: the host pads the next ones meanwhile
        nonlocal out
        logits = torch.cat([x for _, x in pending]).cpu().numpy()
        if out is None:
            out = np.zeros((len(ds), logits.shape[-1]), dtype=np.float32)
        out[np.concatenate([i for i, _ in pending])] = logits
        pending.clear()

    for start in tqdm(range(0, len(order), batch_size), desc=desc, leave=False, disable=not progress):
        idx = order[start:start + batch_size]
        rows = [{k: cols[k][i] for k in keys} for i in idx]
        batch = {k: v.to(device, non_blocking=True) for k, v in padder.tokenizer_pad(rows, prefix).items()}
        with _autocast(bf16, device):
            pending.append((idx, model(**batch).logits.float()))
        if device.type == "cpu" or len(pending) >= 16:
            flush()
    if pending:
        flush()
    return out


@torch.inference_mode()
def measure_speeds(entries: dict, latency_samples: int = 100, batch_size: int = 32,
                   throughput_batches: int = 4) -> dict[str, dict[str, float]]:
    """fp32 CPU latency at batch 1 (p50/p95 over ``latency_samples`` real rows) and throughput at
    ``batch_size``, for several models measured side by side.

    ``entries`` maps a name to ``(model, padder, dataset)``; ``padder.batch(rows)`` turns dataset rows
    into model inputs (a :class:`Padder` for text). The models take turns on
    each row and each batch, so a slow phase of a shared machine hits all of them alike and their
    ratios stay meaningful. Each model gets 6 warm-up calls first; inputs are padded beforehand.
    """
    prepared = {}
    for name, (model, padder, ds) in entries.items():
        model.eval()
        n = min(len(ds), latency_samples)
        # Inputs are built before timing: latency is the model's forward pass, not the padding code.
        singles = [padder.batch([ds[i]]) for i in range(n)]
        rows = [ds[i % len(ds)] for i in range(batch_size * throughput_batches)]
        batches = [padder.batch(rows[b * batch_size:(b + 1) * batch_size]) for b in range(throughput_batches)]

        def run(batch, model=model):
            model(**batch)

        for b in singles[:5]:  # warm-up: first calls allocate and pick kernels
            run(b)
        run(batches[0])
        prepared[name] = (run, singles, batches)
    times = {name: [] for name in prepared}
    for i in range(latency_samples):
        for name, (run, singles, _) in prepared.items():
            t0 = time.perf_counter()
            run(singles[i % len(singles)])
            times[name].append((time.perf_counter() - t0) * 1000)
    spent = {name: 0.0 for name in prepared}
    done = {name: 0 for name in prepared}
    for b in range(throughput_batches):
        for name, (run, _, batches) in prepared.items():
            t0 = time.perf_counter()
            run(batches[b])
            spent[name] += time.perf_counter() - t0
            done[name] += len(next(iter(batches[b].values())))
    return {name: {"latency_ms_p50": float(np.percentile(times[name], 50)),
                   "latency_ms_p95": float(np.percentile(times[name], 95)),
                   "throughput_sps": float(done[name] / spent[name]), "threads": torch.get_num_threads()}
            for name in prepared}


def gather_words(logits: torch.Tensor, word_index: torch.Tensor) -> torch.Tensor:
    """(batch, length, C) token logits -> (batch, words, C) at each word's first sub-token;
    ``word_index`` is -1 past a row's last word (those rows read position 0 and are masked by the caller)."""
    idx = word_index.clamp(min=0).long().unsqueeze(-1).expand(-1, -1, logits.shape[-1])
    return logits.gather(1, idx)


@torch.inference_mode()
def predict_word_logits(model, padder, ds: Dataset, batch_size: int = 64, bf16: bool = False,
                        desc: str = "predicting", prefix: str = "", progress: bool = True) -> list[np.ndarray]:
    """Per-word logits of every row of a word-encoded ``ds`` (``{prefix}word_index``), in row order:
    one (words, C) array per row, read at each word's first sub-token."""
    model.eval()
    device = model.device if isinstance(getattr(model, "device", None), torch.device) else next(model.parameters()).device
    order = np.argsort(-np.asarray(ds[f"{prefix}length"]), kind="stable")
    keys = [k for k in padder.keys if k != "word_index" and f"{prefix}{k}" in ds.column_names]
    table = ds.select_columns([f"{prefix}{k}" for k in keys] + [f"{prefix}word_index"])[:]
    cols = {k: table[f"{prefix}{k}"] for k in keys}
    words = table[f"{prefix}word_index"]
    left = padder.tokenizers[prefix].padding_side == "left"
    out: list = [None] * len(ds)
    for start in tqdm(range(0, len(order), batch_size), desc=desc, leave=False, disable=not progress):
        idx = order[start:start + batch_size]
        rows = [{k: cols[k][i] for k in keys} for i in idx]
        batch = {k: v.to(device) for k, v in padder.tokenizer_pad(rows, prefix).items()}
        with _autocast(bf16, device):
            logits = model(**batch).logits.float().cpu().numpy()
        n = logits.shape[1]
        for j, i in enumerate(idx):
            shift = n - len(cols["input_ids"][i]) if left else 0
            out[i] = logits[j, np.asarray(words[i], dtype=np.int64) + shift]
    return out


@torch.inference_mode()
def predict_span_logits(model, padder, ds: Dataset, batch_size: int = 64, bf16: bool = False,
                        desc: str = "predicting", prefix: str = "", progress: bool = True) -> list[np.ndarray]:
    """Start and end logits of every window of ``ds`` (columns ``{prefix}input_ids`` ...), in row
    order: one (2, length) array per window, its own length (right padding cut off)."""
    from .spans import stacked

    model.eval()
    device = model.device if isinstance(getattr(model, "device", None), torch.device) else next(model.parameters()).device
    order = np.argsort(-np.asarray(ds[f"{prefix}length"]), kind="stable")
    keys = [k for k in MODEL_KEYS if f"{prefix}{k}" in ds.column_names]
    table = ds.select_columns([f"{prefix}{k}" for k in keys])[:]
    cols = {k: table[f"{prefix}{k}"] for k in keys}
    out: list = [None] * len(ds)
    for start in tqdm(range(0, len(order), batch_size), desc=desc, leave=False, disable=not progress):
        idx = order[start:start + batch_size]
        rows = [{k: cols[k][i] for k in keys} for i in idx]
        batch = {k: v.to(device) for k, v in padder.tokenizer_pad(rows, prefix).items()}
        with _autocast(bf16, device):
            res = model(**batch)
        if isinstance(res, torch.Tensor):
            logits = res
        else:
            logits = stacked(res) if getattr(res, "start_logits", None) is not None else res.logits
        logits = logits.float().cpu().numpy()
        for j, i in enumerate(idx):
            out[i] = logits[j, :, :len(cols["input_ids"][i])]
    return out
