"""How much does caching only the top-k teacher logits change the KD loss and its gradient?

The cache keeps the k largest logits of each row plus one tail logit that holds the remaining
probability mass at T = 1 (distiltune/teacher_cache.py). This measures, for a large label space,
the relative error of the KD loss T^2 * KL(p_T || p_S) and of its gradient w.r.t. the student
logits against the full logits, for several k and temperatures.

Teacher logits are Zipf-like, as a language model's over a vocabulary are (a few likely tokens, a
long flat tail), with noise; the student's are the teacher's plus noise (a student mid-training).

    python benchmarks/topk_error.py [--classes 30522] [--rows 256]

``--lm``: the same question on real weights, per response token of a language model: SmolLM2-135M-
Instruct (the offline demo teacher) on GSM8K solutions against a student (``--student``: a model
folder; default the teacher's every other layer, untrained), k in {8, 32, 128}, the KD term as
training computes it (losses/vocab.py: k + 1 buckets, the tail exact) against the dense teacher, and
the bytes a token the cache stores (an Arrow table of the cache's own columns).

    python benchmarks/topk_error.py --lm [--rows 16] [--student runs/demo_lm/student]
"""
from __future__ import annotations

import argparse
import json

import numpy as np
import torch

from distiltune.losses.logits import kd_loss
from distiltune.data.teacher_cache import compress, dense


def logits(rows: int, n: int, seed: int, zipf: float) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    ranks = torch.stack([torch.randperm(n, generator=g) for _ in range(rows)]).float() + 1
    teacher = -zipf * torch.log(ranks) + torch.randn(rows, n, generator=g)  # p ~ rank^-zipf at T = 1, noisy
    student = teacher + 2.0 * torch.randn(rows, n, generator=g)
    return teacher, student


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--classes", type=int, default=30522)
    ap.add_argument("--rows", type=int, default=256)
    ap.add_argument("--zipf", type=float, default=1.1, help="exponent of the teacher's rank-probability law at T = 1")
    ap.add_argument("--lm", action="store_true", help="real weights: SmolLM2-135M-Instruct on GSM8K solutions")
    ap.add_argument("--student", default=None, help="--lm: a student model folder (default: every other teacher layer)")
    args = ap.parse_args()
    if args.lm:
        from topk_error_lm import main as lm_main

        return lm_main(args.rows if args.rows != 256 else 16, args.student)
    teacher, student = logits(args.rows, args.classes, 0, args.zipf)
    rows = []
    for k in (10, 50, 200, 1000):
        cols = compress(teacher.numpy(), k)
        parts = [torch.tensor(np.asarray(cols[c])) for c in ("teacher_topk_values", "teacher_topk_indices", "teacher_tail_lse")]
        for T in (1.0, 2.0, 3.5, 4.0):
            approx = dense(*parts, args.classes, T)
            mass = torch.softmax(teacher / T, -1).topk(k, -1).values.sum(-1).mean().item()
            s_full = student.clone().requires_grad_(True)
            s_approx = student.clone().requires_grad_(True)
            full_loss = kd_loss(s_full, teacher, T)  # includes T^2
            approx_loss = kd_loss(s_approx, approx, T)
            full_loss.backward()
            approx_loss.backward()
            loss_err = abs(approx_loss.item() - full_loss.item()) / full_loss.item()
            grad_err = ((s_approx.grad - s_full.grad).norm() / s_full.grad.norm()).item()
            rows.append({"k": k, "T": T, "topk_mass": round(mass, 4), "loss_rel_error": round(loss_err, 5),
                         "grad_rel_error": round(grad_err, 5)})
    print(f"{args.classes} classes, {args.rows} rows, Zipf {args.zipf:g}; cache size vs full: top-k stores 2k+10 numbers per row, full {args.classes}")
    print("| k | T | teacher mass in top-k | KD loss rel. error | gradient rel. error |\n|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['k']} | {r['T']:g} | {r['topk_mass']:.3f} | {r['loss_rel_error']:.2%} | {r['grad_rel_error']:.2%} |")
    print(json.dumps(rows))


if __name__ == "__main__":
    main()
