"""Peak memory of token-level KD + CE over a vocabulary: distiltune's chunked terms against the naive
fp32 computation, side by side, each in a fresh process (peak RSS on CPU, peak allocated on a GPU).

On CPU each process runs with ``MALLOC_MMAP_THRESHOLD_=65536``: every large block is then mapped and
unmapped by itself, so peak RSS follows the live tensors (glibc's default keeps freed 32 MB blocks in
its heap, and the RSS of a loop over chunks then grows with fragmentation, not with what is alive).

The batch is bf16 student and teacher logits of (batch x length x vocabulary), as a causal LM's forward
pass returns them; the loss is forward KL at T = 2 plus the next-token cross-entropy, then backward. The topk32 row reads a
synthetic top-32 teacher (as the cache hands it a step: no dense teacher exists), so its loss differs.

    python benchmarks/lm_loss_memory.py                       # 8 x 256 x 49,152 (SmolLM2's vocabulary)
    python benchmarks/lm_loss_memory.py --vocab 151936 --batch 4 --length 512 --device cuda   # Qwen2.5's
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time


def run_one(mode: str, batch: int, length: int, vocab: int, device: str) -> dict:
    import torch
    import torch.nn.functional as F

    from distiltune.losses import build_term
    from distiltune.losses import vocab as V
    from distiltune.models.features import Outputs
    from distiltune.models.task_loss import hard_label_loss

    dev = torch.device(device)
    g = torch.Generator(device="cpu").manual_seed(0)
    s = torch.empty(batch, length, vocab, dtype=torch.bfloat16).normal_(0, 2, generator=g).to(dev).requires_grad_(True)
    if mode == "topk32":  # what the cache hands a step (no dense teacher exists): top-32 logits, ids and tail
        vals = torch.empty(batch, length, 32).normal_(6, 1, generator=g).sort(-1, descending=True).values
        ids = torch.randint(0, vocab, (batch, length, 32), generator=g)
        sparse = V.TopK(ids.to(dev), vals.to(dev), torch.full((batch, length), 9.0, device=dev), vocab, 2.0)
    else:
        t = torch.empty(batch, length, vocab, dtype=torch.bfloat16).normal_(0, 2, generator=g).to(dev)
    labels = torch.randint(0, vocab, (batch, length), generator=g).to(dev)
    mask = torch.ones(batch, length, dtype=torch.bool, device=dev)
    mask[:, : length // 4] = False  # the prompt
    labels[~mask] = -100
    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
    else:
        base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    t0 = time.perf_counter()
    if mode == "naive":  # what a hand-written loop does: the whole batch in fp32
        log_s = F.log_softmax(s.float() / 2, -1)
        log_t = F.log_softmax(t.float() / 2, -1)
        kd = ((log_t.exp() * (log_t - log_s)).sum(-1) * 4)[mask].mean()
        ce = F.cross_entropy(s.float().reshape(-1, vocab), labels.reshape(-1), ignore_index=-100)
        value = kd + ce
    else:
        teacher = t if mode == "chunked" else sparse
        kd = build_term("kd")(Outputs(logits=s), Outputs(logits=teacher), {"temperature": 2.0, "position_mask": mask})
        value = kd + hard_label_loss(s, labels)
    value.backward()
    if dev.type == "cuda":
        torch.cuda.synchronize()
        peak = torch.cuda.max_memory_allocated() - base
    else:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - base
    return {"mode": mode, "peak_mb": peak / 2 ** 20, "seconds": time.perf_counter() - t0, "loss": float(value)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--length", type=int, default=256)
    p.add_argument("--vocab", type=int, default=49152)
    p.add_argument("--device", default="cpu")
    p.add_argument("--one", help=argparse.SUPPRESS)
    a = p.parse_args()
    if a.one:
        print(json.dumps(run_one(a.one, a.batch, a.length, a.vocab, a.device)))
        return
    logits_mb = a.batch * a.length * a.vocab * 2 / 2 ** 20
    print(f"batch {a.batch} x length {a.length} x vocabulary {a.vocab:,} ({a.device}); one bf16 logits tensor "
          f"{logits_mb:,.0f} MB, the inputs (student, teacher) and the student's gradient {3 * logits_mb:,.0f} MB")
    rows = {}
    for mode in ("naive", "chunked", "topk32"):
        env = dict(os.environ, MALLOC_MMAP_THRESHOLD_="65536")
        done = subprocess.run([sys.executable, __file__, "--one", mode, "--batch", str(a.batch), "--length", str(a.length),
                               "--vocab", str(a.vocab), "--device", a.device], capture_output=True, text=True, env=env)
        if done.returncode != 0:
            print(f"{mode}: failed ({done.stderr.strip().splitlines()[-1] if done.stderr.strip() else done.returncode})")
            continue
        rows[mode] = json.loads(done.stdout.strip().splitlines()[-1])
    for mode, r in rows.items():
        ratio = f", {rows['naive']['peak_mb'] / r['peak_mb']:.1f}x less than naive" if "naive" in rows and mode != "naive" else ""
        print(f"{mode:>8}: peak {r['peak_mb']:8,.0f} MB above the inputs' allocation{ratio}; {r['seconds']:.2f} s; "
              f"loss {r['loss']:.4f}")
    if "naive" in rows and "chunked" in rows:
        print(f"chunked and naive losses differ by {abs(rows['naive']['loss'] - rows['chunked']['loss']):.2e}")


if __name__ == "__main__":
    main()
