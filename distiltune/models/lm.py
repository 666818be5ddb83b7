"""Causal-LM inference: per-token scores of gold responses (NLL, top-1 accuracy) and a teacher's
per-token top-k form (with draws from its tail) for the cache, both a batch (and a chunk of positions) at a time, never a
dense (rows x length x vocabulary) array."""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from ..constants import IGNORE_INDEX, TAIL_SAMPLE_COLUMNS, TAIL_TEMPERATURES, TOPK_COLUMNS
from .chunked import per_position
from .inference import _autocast
from .spans import NEG


def _scores(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """(rows, 2): the log-probability of each row's label and whether it is the top-1 token."""
    logp = F.log_softmax(logits.float(), dim=-1)
    lab = labels.clamp(min=0)
    picked = logp.gather(-1, lab[:, None])[:, 0]
    top1 = (logp.argmax(-1) == lab).float()
    keep = (labels != IGNORE_INDEX).float()
    return torch.stack([picked * keep, top1 * keep], dim=-1)


def token_scores(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """(batch, length, 2) per-token [log p(gold token), top-1 correct], 0 where the label is -100; a
    chunk of positions at a time (validation reduces a batch's logits to this before it gathers them)."""
    return per_position(_scores, logits, labels.reshape(logits.shape[:-1]))


def token_topk(logits: torch.Tensor, k: int, tail_samples: int = 0, seed: int = 0) -> dict[str, torch.Tensor]:
    """A language model's per-token cache form, computed where the logits are (a GPU), a chunk of
    tokens at a time (no fp32 copy of the whole vocabulary matrix). For (tokens, vocabulary) logits,
    the columns of ``constants.TOPK_COLUMNS``: the k largest log-probabilities (log-probabilities, not
    logits: at most 0, so half precision keeps its digits where the mass is), their ids and the log-sum-exp
    of the others' log-probabilities / T at each of TAIL_TEMPERATURES. With ``tail_samples``, also
    ``constants.TAIL_SAMPLE_COLUMNS``: that many ids drawn with replacement from the teacher's
    distribution over the other ids at T = 1, and their log-probabilities, from a generator seeded
    with ``seed`` (a row's own hash: a resumed build draws what an uninterrupted one would)."""
    rows = max(1, (1 << 23) // max(logits.shape[-1], 1))
    gen = torch.Generator(device=logits.device).manual_seed(seed) if tail_samples else None
    parts = {c: [] for c in TOPK_COLUMNS + (TAIL_SAMPLE_COLUMNS if tail_samples else ())}
    for a in range(0, logits.shape[0], rows):
        z = logits[a:a + rows].float()
        z = z - torch.logsumexp(z, dim=-1, keepdim=True)
        v, i = z.topk(min(k, z.shape[-1]), dim=-1)
        if i.shape[-1] >= z.shape[-1]:  # nothing missing: the tail is never read, nothing to draw
            tail, s_ids = z.new_zeros(len(z), len(TAIL_TEMPERATURES)), i[:, :0]
        else:
            rest = z.scatter(-1, i, float("-inf"))
            tail = torch.stack([torch.logsumexp(rest / t, dim=-1) for t in TAIL_TEMPERATURES], dim=-1)
            s_ids = (torch.multinomial(torch.softmax(rest, dim=-1), tail_samples, replacement=True, generator=gen)
                     if tail_samples else None)
        for c, x in zip(parts, (v, i, tail, s_ids, None if s_ids is None else z.gather(-1, s_ids))):
            parts[c].append(x)
    return {c: torch.cat(x) for c, x in parts.items()}


def teacher_token_forms(teacher, rows, batcher, device, bf16: bool, vocab: int | None, k: int,
                        tail_samples: int) -> dict[str, list[np.ndarray]]:
    """The teacher cache's rows for a causal LM: per row, the :func:`token_topk` columns of its response
    tokens, stored in half precision (ids as int32), longest rows batched first. A row's draws from the
    tail are seeded by a hash of its token ids (the same row, the same draws, in any batch)."""
    import zlib

    teacher.to(device).eval()
    out = {c: [None] * len(rows) for c in TOPK_COLUMNS + (TAIL_SAMPLE_COLUMNS if tail_samples else ())}
    order = np.argsort(-np.asarray(rows["length"]), kind="stable")
    size = 8 if device.type == "cpu" else 32
    table = rows.select_columns(["input_ids", "attention_mask", "response_mask"])[:]
    with torch.inference_mode():
        for a in range(0, len(order), size):
            idx = order[a:a + size]
            batch = batcher([{c: table[c][i] for c in table} for i in idx])
            with _autocast(bf16, device):
                logits = teacher(input_ids=batch["input_ids"].to(device),
                                 attention_mask=batch["attention_mask"].to(device)).logits
            logits = logits[..., :vocab] if vocab else logits
            mask = batch["response_mask"].bool().to(logits.device)
            for j, i in enumerate(idx):
                seed = zlib.crc32(np.asarray(table["input_ids"][i], dtype=np.int64).tobytes())
                form = token_topk(logits[j][mask[j]], k, tail_samples, seed)
                for c, x in form.items():
                    x = x.cpu().numpy()
                    out[c][i] = x.astype(np.int32 if x.dtype.kind == "i" else np.float16)
    return out


def _kl_and_agreement(student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
    """(rows, 2): KL(teacher || student) at T = 1 and whether the two top-1 tokens agree."""
    log_s, log_t = F.log_softmax(student.float(), -1), F.log_softmax(teacher.float(), -1)
    kl = (log_t.exp() * (log_t - log_s)).sum(-1)
    return torch.stack([kl, (log_s.argmax(-1) == log_t.argmax(-1)).float()], dim=-1)


def kl_and_agreement(student_logits: torch.Tensor, teacher_logits: torch.Tensor) -> torch.Tensor:
    """(batch, length, 2) per token: the teacher-student KL and top-1 agreement, a chunk at a time."""
    return per_position(_kl_and_agreement, student_logits, teacher_logits)


def student_vocabulary(teacher: torch.Tensor, n: int) -> torch.Tensor:
    """A teacher language model's logits over the student's ``n`` output rows, for two models of one
    tokenizer whose output layers were padded to different sizes (Qwen2.5: 151,936 vs 152,064). The
    rows past the tokenizer are never produced as tokens (the task checks the tokenizers before
    training): the teacher's extra ones are cut, and the student's extra ones get a teacher logit of
    -10^4, so KD teaches the student to give them no mass, as the teacher does."""
    have = teacher.shape[-1]
    if have >= n:
        return teacher[..., :n]
    return torch.nn.functional.pad(teacher, (0, n - have), value=NEG)


def agreement_on_rows(teacher, model, rows, batcher, bf16: bool = False) -> dict[str, float]:
    """The mean KL(teacher || model) (T = 1) over the gold tokens of encoded rows, and how often the
    two models' top-1 tokens agree there; a batch of rows at a time."""
    device = next(model.parameters()).device
    teacher.to(device).eval()
    model.eval()
    totals, tokens = np.zeros(2), 0
    table = rows.select_columns(["input_ids", "attention_mask", "labels"])[:]
    order = np.argsort(-np.asarray(rows["length"]), kind="stable")
    with torch.inference_mode():
        for a in range(0, len(order), 8):
            batch = batcher([{k: table[k][i] for k in table} for i in order[a:a + 8]])
            ids, mask = batch["input_ids"].to(device), batch["attention_mask"].to(device)
            with _autocast(bf16, device):
                s = model(input_ids=ids, attention_mask=mask).logits
                t = teacher(input_ids=ids, attention_mask=mask).logits
            t = student_vocabulary(t, s.shape[-1])
            scored = batch["labels"].to(device) != IGNORE_INDEX
            per = kl_and_agreement(s, t)[scored]
            totals += per.sum(0).double().cpu().numpy()
            tokens += int(scored.sum())
    return {"kl_to_teacher": float(totals[0] / max(tokens, 1)), "top1_agreement": float(totals[1] / max(tokens, 1))}


def left_padded(rows: list[list[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Prompts as a batch for generation: left-padded, so every row's next token is at the end."""
    n = max(len(r) for r in rows)
    ids = torch.full((len(rows), n), pad_id, dtype=torch.long)
    mask = torch.zeros((len(rows), n), dtype=torch.long)
    for i, r in enumerate(rows):
        ids[i, n - len(r):], mask[i, n - len(r):] = torch.as_tensor(r), 1
    return ids, mask


@torch.inference_mode()
def greedy_generate(model, prompts: list[list[int]], pad_id: int, eos_ids: list[int], max_new_tokens: int,
                    batch_size: int = 8, bf16: bool = False, desc: str = "generating", progress: bool = True,
                    temperature: float = 0.0) -> list[list[int]]:
    """Greedy continuations of token-id prompts with the KV cache (sampled at ``temperature`` when it is
    above 0), each cut at its first end-of-sequence token; prompts of similar length are batched
    together (less padding), answers come back in order."""
    device = next(model.parameters()).device
    model.eval()
    order = sorted(range(len(prompts)), key=lambda i: -len(prompts[i]))
    out: list[list[int]] = [[] for _ in prompts]
    stop = set(eos_ids)
    bar = tqdm(total=len(prompts), desc=desc, disable=not progress, leave=False)
    for a in range(0, len(order), batch_size):
        idx = order[a:a + batch_size]
        ids, mask = left_padded([prompts[i] for i in idx], pad_id)
        with _autocast(bf16, device):
            gen = model.generate(input_ids=ids.to(device), attention_mask=mask.to(device), max_new_tokens=max_new_tokens,
                                 do_sample=temperature > 0, use_cache=True, pad_token_id=pad_id, eos_token_id=list(stop),
                                 **({"temperature": temperature, "top_k": 0, "top_p": 1.0} if temperature > 0 else {}))
        for j, i in enumerate(idx):
            new = gen[j, ids.shape[1]:].tolist()
            cut = next((k for k, t in enumerate(new) if t in stop), len(new))
            out[i] = new[:cut]
        bar.update(len(idx))
    bar.close()
    return out


@torch.inference_mode()
def generation_speed(models: dict, new_tokens: int = 32, batch_sizes: tuple[int, ...] = (1, 8),
                     rounds: int = 3) -> dict[str, dict[str, float]]:
    """``models``: name -> (model, its prompts as token ids, its pad id). Greedy generation with the KV
    cache, each model in turn on the same prompts (so a slow phase of a shared machine hits all alike):
    prefill time (the prompt's forward pass and the first token) and decode speed (tokens a second over
    the next ``new_tokens - 1``), at each batch size, median of ``rounds``. Prompts are left-padded,
    as batched generation needs."""
    import time

    def timed(model, ids, mask, steps, pad_id):
        t0 = time.perf_counter()
        model.generate(input_ids=ids, attention_mask=mask, max_new_tokens=steps, min_new_tokens=steps, do_sample=False,
                       use_cache=True, pad_token_id=pad_id)
        return time.perf_counter() - t0

    out = {name: {} for name in models}
    for size in batch_sizes:
        inputs = {name: (*left_padded([prompts[i % len(prompts)] for i in range(size)], pad), pad)
                  for name, (_, prompts, pad) in models.items()}
        times = {name: ([], []) for name in models}
        for name, (model, *_) in models.items():  # warm-up
            model.eval()
            timed(model, *inputs[name][:2], 2, inputs[name][2])
        for _ in range(rounds):
            for name, (model, *_) in models.items():
                ids, mask, pad = inputs[name]
                first, whole = timed(model, ids, mask, 1, pad), timed(model, ids, mask, new_tokens, pad)
                times[name][0].append(first)
                times[name][1].append(whole)
        for name, (first, whole) in times.items():
            p, w = float(np.median(first)), float(np.median(whole))
            out[name][f"prefill_ms_batch{size}"] = round(1000 * p, 2)
            out[name][f"decode_tokens_per_s_batch{size}"] = round(size * (new_tokens - 1) / max(w - p, 1e-9), 2)
    return out
