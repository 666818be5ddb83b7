"""``topk_error.py --lm``: the teacher cache's error on a real language model's response tokens.

For each GSM8K row, the teacher's and the student's logits over the 49,152-token vocabulary at the
response positions. Per k, number of tail draws and temperature, the cache's form exactly as training
reads it (``models.lm.teacher_token_forms``' half-precision columns, collated and placed by
``data.cache_forms``) against the dense teacher: the forward-KL KD term (T²-scaled, the mean over
response tokens, as training computes it), its gradient with respect to the student's logits, and its
gradient with respect to the student's output-layer weights (the logits' gradient summed over tokens
through the last hidden states: what an optimiser step sees); and the bytes a token of the cache's
columns take in Arrow. Draws are seeded per row as the cache seeds them; ``--draw-seeds`` repeats them
with other seeds to show their spread.
"""
from __future__ import annotations

import json
import zlib

import numpy as np
import pyarrow as pa
import torch

from distiltune.data import cache_forms as CF
from distiltune.data.lm_rows import encode_lm, lm_form
from distiltune.losses.logits import kd_per_sample
from distiltune.models.hf import build_student, resolve_path
from distiltune.models.lm import token_topk

CASES = [(8, 0), (8, 10), (32, 0), (32, 10), (32, 20), (128, 0), (128, 10)]  # (k, tail draws)
TS = (1.0, 2.0)


def rows_of_gsm8k(n: int, tok):
    from datasets import load_dataset

    from distiltune.assets import gsm8k_file

    ds = load_dataset("json", data_files=str(gsm8k_file()), split="train").select(range(n))
    cols = {"prompt": "question", "response": "answer", "messages": "messages", "text": "text"}
    return encode_lm(ds, tok, lm_form(ds.column_names, **cols), cols, 384)


def stored_forms(teacher_logits: list[torch.Tensor], seeds: list[int], k: int, draws: int) -> list[dict]:
    """Each row's cache columns as the cache stores them (half-precision values, int32 ids)."""
    out = []
    for z, seed in zip(teacher_logits, seeds):
        form = token_topk(z, k, draws, seed)
        out.append({c: x.numpy().astype(np.int32 if x.dtype in (torch.int64, torch.int32) else np.float16)
                    for c, x in form.items()})
    return out


def arrow_bytes_per_token(forms: list[dict]) -> float:
    table = pa.table({c: pa.array([f[c].tolist() for f in forms],
                                  pa.list_(pa.list_(pa.int32() if f0.dtype == np.int32 else pa.float16())))
                      for c, f0 in forms[0].items()})
    return table.nbytes / sum(len(f["teacher_topk_values"]) for f in forms)


@torch.inference_mode()
def response_logits(model, rows) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """Per row, the logits and the last hidden states (the output layer's input) at the response tokens."""
    logits, hidden = [], []
    for r in rows:
        out = model(input_ids=torch.tensor([r["input_ids"]]), output_hidden_states=True)
        mask = torch.tensor(r["response_mask"]).bool()
        logits.append(out.logits[0][mask].float())
        hidden.append(out.hidden_states[-1][0][mask].float())
    return logits, hidden


def gradients(student: torch.Tensor, hidden: torch.Tensor, teacher, t: float, share: float):
    """(loss, d loss / d logits, d loss / d output weights) of one row's KD, weighted by its share of the tokens."""
    s = student.clone().requires_grad_(True)
    loss = kd_per_sample(s[None], teacher, t)[0].mean() * share
    loss.backward()
    return loss.item(), s.grad, s.grad.T @ hidden


def main(n_rows: int, student_path: str | None, draw_seeds: int = 3) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch.manual_seed(0)
    path = resolve_path("demo:smollm2-135m-instruct")
    tok = AutoTokenizer.from_pretrained(path)
    teacher = AutoModelForCausalLM.from_pretrained(path).eval()
    student = (AutoModelForCausalLM.from_pretrained(student_path) if student_path else
               build_student(teacher, list(range(0, teacher.config.num_hidden_layers, 2)))).eval()
    rows = rows_of_gsm8k(n_rows, tok)
    t_logits, _ = response_logits(teacher, rows)
    s_logits, s_hidden = response_logits(student, rows)
    tokens, vocab = sum(len(z) for z in t_logits), t_logits[0].shape[-1]
    print(f"{tokens} response tokens of {n_rows} GSM8K rows, vocabulary {vocab}, student: "
          f"{student_path or 'every other teacher layer, untrained'}")
    dense = {}
    for t in TS:
        parts = [gradients(z_s, h, z_t[None], t, len(z_s) / tokens) for z_s, h, z_t in zip(s_logits, s_hidden, t_logits)]
        dense[t] = (sum(p[0] for p in parts), [p[1] for p in parts], sum(p[2] for p in parts))
    results = []
    for k, draws in CASES:
        for t in TS:
            if draws and t != 1.0:
                continue  # training reads the draws at T = 1 only (losses.vocab.TopK.sampled)
            d_loss, d_grads, d_head = dense[t]
            errs = []
            for rep in range(draw_seeds if draws else 1):
                seeds = [zlib.crc32(np.asarray(r["input_ids"], dtype=np.int64).tobytes()) + rep for r in rows]
                forms = stored_forms(t_logits, seeds, k, draws)
                loss, g_sq, diff_sq, head = 0.0, 0.0, 0.0, 0.0
                for z_s, h, form, g_d in zip(s_logits, s_hidden, forms, d_grads):
                    sparse = CF.sparse_teacher(CF.collate([form]), torch.ones(1, len(z_s), dtype=torch.bool), vocab, t)
                    part = gradients(z_s, h, sparse, t, len(z_s) / tokens)
                    loss, head = loss + part[0], head + part[2]
                    g_sq, diff_sq = g_sq + float((g_d ** 2).sum()), diff_sq + float(((part[1] - g_d) ** 2).sum())
                errs.append((abs(loss - d_loss) / d_loss, (diff_sq / g_sq) ** 0.5,
                             float((head - d_head).norm() / d_head.norm()), loss))
            e = np.asarray(errs)
            mass = sum(float(torch.softmax(z / t, -1).topk(k, -1).values.sum()) for z in t_logits) / tokens
            results.append({"k": k, "draws": draws, "T": t, "bytes_per_token": round(arrow_bytes_per_token(forms), 1),
                            "topk_mass": round(mass, 4), "kd_dense": round(d_loss, 5), "kd_cache": round(float(e[:, 3].mean()), 5),
                            "loss_rel_error": round(float(e[:, 0].mean()), 6), "loss_rel_error_max": round(float(e[:, 0].max()), 6),
                            "logit_grad_rel_error": round(float(e[:, 1].mean()), 6),
                            "head_grad_rel_error": round(float(e[:, 2].mean()), 6), "draw_seeds": len(errs)})
    print("| k | tail draws | T | bytes a token | teacher mass in top-k | KD dense | KD cache | loss rel. error (max) | "
          "logit-gradient rel. error | output-weight gradient rel. error |\n|---|---|---|---|---|---|---|---|---|---|")
    for r in results:
        print(f"| {r['k']} | {r['draws']} | {r['T']:g} | {r['bytes_per_token']:.0f} | {r['topk_mass']:.4f} | "
              f"{r['kd_dense']:.4f} | {r['kd_cache']:.4f} | {r['loss_rel_error']:.3%} ({r['loss_rel_error_max']:.3%}) | "
              f"{r['logit_grad_rel_error']:.3%} | {r['head_grad_rel_error']:.3%} |")
    print(f"(draws: mean over {draw_seeds} seeds of the draws; the tail's log-sum-exp is stored at "
          f"{len(CF.TAIL_TEMPERATURES)} temperatures)")
    print(json.dumps(results))
