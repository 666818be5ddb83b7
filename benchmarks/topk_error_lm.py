"""``topk_error.py --lm``: top-k teacher cache error on a real language model's response tokens.

For each GSM8K row, the teacher's and the student's logits over the 49,152-token vocabulary at the
response positions; per k and temperature, the forward-KL KD term (T²-scaled, the mean over response
tokens, as training computes it) from the top-k form against the dense teacher, its gradient with
respect to the student logits, and the bytes a token of the cache's columns take in Arrow.
"""
from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import torch

from distiltune.constants import TAIL_TEMPERATURES
from distiltune.data.lm_rows import encode_lm, lm_form
from distiltune.losses.vocab import forward_kl, log_probs, top_k
from distiltune.models.hf import build_student, resolve_path
from distiltune.models.lm import token_topk

KS = (8, 32, 128)
TS = (1.0, 2.0)


def rows_of_gsm8k(n: int, tok):
    from datasets import load_dataset

    from distiltune.assets import gsm8k_file

    ds = load_dataset("json", data_files=str(gsm8k_file()), split="train").select(range(n))
    cols = {"prompt": "question", "response": "answer", "messages": "messages", "text": "text"}
    return encode_lm(ds, tok, lm_form(ds.column_names, **cols), cols, 384)


def kd(student: torch.Tensor, teacher, t: float) -> torch.Tensor:
    log_t, log_s = log_probs(student, teacher, t)
    return forward_kl(log_t, log_s).mean() * t * t


def cache_bytes_per_token(teacher_logits: list[torch.Tensor], k: int) -> float:
    """The cache's three per-token columns for these rows as Arrow stores them (lists of lists)."""
    vals, ids, tails, tokens = [], [], [], 0
    for z in teacher_logits:
        v, i, tail = token_topk(z, k)
        vals.append(v.numpy().tolist())
        ids.append(i.numpy().astype(np.int32).tolist())
        tails.append(tail.numpy().tolist())
        tokens += len(z)
    table = pa.table({"teacher_topk_values": pa.array(vals, pa.list_(pa.list_(pa.float32()))),
                      "teacher_topk_indices": pa.array(ids, pa.list_(pa.list_(pa.int32()))),
                      "teacher_tail_lse": pa.array(tails, pa.list_(pa.list_(pa.float32())))})
    return table.nbytes / tokens


@torch.inference_mode()
def response_logits(model, rows) -> list[torch.Tensor]:
    out = []
    for r in rows:
        ids = torch.tensor([r["input_ids"]])
        mask = torch.tensor(r["response_mask"]).bool()
        out.append(model(input_ids=ids).logits[0][mask].float())
    return out


def main(n_rows: int, student_path: str | None) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch.manual_seed(0)
    path = resolve_path("demo:smollm2-135m-instruct")
    tok = AutoTokenizer.from_pretrained(path)
    teacher = AutoModelForCausalLM.from_pretrained(path).eval()
    student = (AutoModelForCausalLM.from_pretrained(student_path) if student_path else
               build_student(teacher, list(range(0, teacher.config.num_hidden_layers, 2)))).eval()
    rows = rows_of_gsm8k(n_rows, tok)
    t_logits, s_logits = response_logits(teacher, rows), response_logits(student, rows)
    t_all, s_all = torch.cat(t_logits), torch.cat(s_logits)
    vocab = t_all.shape[-1]
    print(f"{len(t_all)} response tokens of {n_rows} GSM8K rows, vocabulary {vocab}, student: "
          f"{student_path or 'every other teacher layer, untrained'}")
    results = []
    for k in KS:
        size = cache_bytes_per_token(t_logits, k)
        for t in TS:
            errs, grads, dense_loss, sparse_loss = [], [], 0.0, 0.0
            g_dense_sq, g_diff_sq, cos_num = 0.0, 0.0, 0.0
            g_sparse_sq = 0.0
            for a in range(0, len(t_all), 512):  # a chunk of tokens at a time: 512 x 49k fp32 is 100 MB
                z_t, z_s = t_all[a:a + 512], s_all[a:a + 512]
                s1 = z_s.clone().requires_grad_(True)
                s2 = z_s.clone().requires_grad_(True)
                w = len(z_t) / len(t_all)  # the mean over all tokens, chunk by chunk
                full = kd(s1, z_t, t) * w
                approx = kd(s2, top_k(z_t, k, t), t) * w
                full.backward()
                approx.backward()
                dense_loss += full.item()
                sparse_loss += approx.item()
                g_dense_sq += float((s1.grad ** 2).sum())
                g_sparse_sq += float((s2.grad ** 2).sum())
                g_diff_sq += float(((s2.grad - s1.grad) ** 2).sum())
                cos_num += float((s1.grad * s2.grad).sum())
            mass = float(torch.softmax(t_all / t, -1).topk(k, -1).values.sum(-1).mean())
            results.append({"k": k, "T": t, "bytes_per_token": round(size, 1), "topk_mass": round(mass, 4),
                            "kd_dense": round(dense_loss, 5), "kd_topk": round(sparse_loss, 5),
                            "loss_rel_error": round(abs(sparse_loss - dense_loss) / dense_loss, 6),
                            "grad_rel_error": round((g_diff_sq ** 0.5) / (g_dense_sq ** 0.5), 6),
                            "grad_cosine": round(cos_num / (g_dense_sq * g_sparse_sq) ** 0.5, 6)})
    print(f"| k | T | bytes a token | teacher mass in top-k | KD dense | KD top-k | loss rel. error | "
          f"gradient rel. error | gradient cosine |\n|---|---|---|---|---|---|---|---|---|")
    for r in results:
        print(f"| {r['k']} | {r['T']:g} | {r['bytes_per_token']:.0f} | {r['topk_mass']:.4f} | {r['kd_dense']:.4f} | "
              f"{r['kd_topk']:.4f} | {r['loss_rel_error']:.3%} | {r['grad_rel_error']:.3%} | {r['grad_cosine']:.5f} |")
    print(f"(the tail is stored at {len(TAIL_TEMPERATURES)} temperatures)")
    print(json.dumps(results))
