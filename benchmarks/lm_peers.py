"""Token-level KD of a causal LM, the same job through distiltune, TRL's GKDTrainer and a plain
PyTorch loop, each in its own process, side by side in one run.

Job: SmolLM2-135M-Instruct (the offline demo teacher, as it ships) teaches a student made of every
other one of its layers (15 of 30, one init saved once and loaded by every contender) to answer
GSM8K problems, rendered as chats with SmolLM2's template; forward KL at T = 1 over the response
tokens, no hard-label term (GKD with lmbda = 0, off-policy, beta = 0); the same rows once, batch 4,
AdamW at 1e-4, bf16 autocast where the CPU has it. distiltune reads its teacher from the top-32 cache
(built once; its time is reported apart); TRL and the plain loop run the teacher every step.

Reported per contender: response tokens trained per second, the cache's build time, peak RSS of the
process, and the student's NLL on held-out GSM8K solutions after training (the same evaluation code
in every process).

    benchmarks/setup_peers.sh                      # once: benchmarks/.venv-trl with TRL (never a project dependency)
    benchmarks/.venv-trl/bin/python benchmarks/lm_peers.py [--rows 64] [--test 32]
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping

HERE = os.path.dirname(os.path.abspath(__file__))
BATCH, LR, MAX_LENGTH = 4, 1e-4, 256


def gsm8k_chats(start: int, n: int) -> list[dict]:
    from distiltune.assets import gsm8k_file

    with open(gsm8k_file()) as f:
        rows = [json.loads(line) for line in f][start:start + n]
    return [{"messages": [{"role": "user", "content": r["question"]}, {"role": "assistant", "content": r["answer"]}]}
            for r in rows]


def encode(tok, chats: list[dict]) -> list[dict]:
    """Prompt with its generation prompt, then the answer: labels on the answer tokens only."""
    out = []
    for c in chats:
        prompt = tok.apply_chat_template(c["messages"][:1], add_generation_prompt=True, tokenize=True)
        full = tok.apply_chat_template(c["messages"], tokenize=True)
        prompt = list(prompt["input_ids"] if isinstance(prompt, Mapping) else prompt)
        full = list(full["input_ids"] if isinstance(full, Mapping) else full)[:MAX_LENGTH]
        out.append({"input_ids": full, "labels": [-100] * len(prompt) + full[len(prompt):]})
    return out


def test_nll(model, tok, chats: list[dict]) -> float:
    """Mean NLL a gold answer token (nats), fp32."""
    import torch

    model.eval()
    total, tokens = 0.0, 0
    with torch.inference_mode():
        for row in encode(tok, chats):
            ids = torch.tensor([row["input_ids"]])
            labels = torch.tensor([row["labels"]])
            logits = model(input_ids=ids).logits[0, :-1].float()
            gold = labels[0, 1:]
            keep = gold != -100
            total += float(torch.nn.functional.cross_entropy(logits[keep], gold[keep], reduction="sum"))
            tokens += int(keep.sum())
    return total / tokens


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def response_tokens(tok, chats) -> int:
    return sum(sum(t != -100 for t in r["labels"][1:]) for r in encode(tok, chats))


# ---- contenders (each runs in its own process) ----
def run_distiltune(teacher, student, train, test, work):
    from distiltune.config.io import parse_config
    from distiltune.pipeline.run import run_pipeline

    path, held = os.path.join(work, "train.jsonl"), os.path.join(work, "test.jsonl")
    for file, rows in ((path, train), (held, test[:2])):  # distiltune's own evaluation: 2 rows (NLL below is common)
        with open(file, "w") as f:
            f.writelines(json.dumps(c) + "\n" for c in rows)
    cfg, _ = parse_config(["--train_file", path, "--test_file", held, "--task_type", "causal_lm", "--teacher", teacher, "--student", student,
                           "--strategy", "distill", "--finetune_teacher", "no", "--num_labeled", str(len(train)),
                           "--validation_size", "0", "--distill_stop", "fixed",
                           "--num_train_epochs", "1", "--logit_loss", "kd", "--distill_weight", "1.0", "--temperature", "1",
                           "--per_device_train_batch_size", str(BATCH), "--learning_rate", str(LR), "--max_length",
                           str(MAX_LENGTH), "--teacher_cache_topk", "32", "--baseline", "false", "--generation_samples", "0",
                           "--latency_samples", "1", "--throughput_batch_size", "1", "--report_to", "none",
                           "--disable_tqdm", "true", "--output_dir", os.path.join(work, "run"), "--seed", "0"], "run")
    report = run_pipeline(cfg, overwrite=True)
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(os.path.join(work, "run", "student"))
    return {"train_s": report["timings_s"]["distill"], "cache_s": report["timings_s"].get("teacher_logits"),
            "model": model, "tok": AutoTokenizer.from_pretrained(student)}


def run_trl(teacher, student, train, test, work):
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl.experimental.gkd import GKDConfig, GKDTrainer

    tok = AutoTokenizer.from_pretrained(student)
    args = GKDConfig(output_dir=os.path.join(work, "trl"), lmbda=0.0, beta=0.0, temperature=1.0, max_length=MAX_LENGTH,
                     per_device_train_batch_size=BATCH, num_train_epochs=1, learning_rate=LR, lr_scheduler_type="linear",
                     bf16=True, use_cpu=True, gradient_checkpointing=False, report_to="none", save_strategy="no", logging_steps=5,
                     seed=0, disable_tqdm=True)
    trainer = GKDTrainer(model=AutoModelForCausalLM.from_pretrained(student),
                         teacher_model=AutoModelForCausalLM.from_pretrained(teacher), args=args,
                         train_dataset=Dataset.from_list(train), processing_class=tok)
    out = trainer.train()
    return {"train_s": out.metrics["train_runtime"], "cache_s": None, "model": trainer.model, "tok": tok}


def run_plain(teacher, student, train, test, work):
    import torch
    import torch.nn.functional as F
    from transformers import AutoModelForCausalLM, AutoTokenizer, get_linear_schedule_with_warmup

    torch.manual_seed(0)
    tok = AutoTokenizer.from_pretrained(student)
    s = AutoModelForCausalLM.from_pretrained(student).train()
    t = AutoModelForCausalLM.from_pretrained(teacher).eval()
    rows = encode(tok, train)
    opt = torch.optim.AdamW(s.parameters(), lr=LR)
    steps = (len(rows) + BATCH - 1) // BATCH
    sched = get_linear_schedule_with_warmup(opt, 0, steps)
    order = torch.randperm(len(rows)).tolist()
    pad = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
    t0 = time.perf_counter()
    for a in range(0, len(rows), BATCH):
        batch = [rows[i] for i in order[a:a + BATCH]]
        n = max(len(r["input_ids"]) for r in batch)
        ids = torch.tensor([r["input_ids"] + [pad] * (n - len(r["input_ids"])) for r in batch])
        mask = torch.tensor([[1] * len(r["input_ids"]) + [0] * (n - len(r["input_ids"])) for r in batch])
        labels = torch.tensor([r["labels"] + [-100] * (n - len(r["labels"])) for r in batch])
        with torch.autocast("cpu", dtype=torch.bfloat16):
            with torch.no_grad():
                tl = t(input_ids=ids, attention_mask=mask).logits[:, :-1]
            sl = s(input_ids=ids, attention_mask=mask).logits[:, :-1]
        keep = labels[:, 1:] != -100
        log_t = F.log_softmax(tl[keep].float(), -1)  # the blog-post way: the whole fp32 vocabulary at once
        log_s = F.log_softmax(sl[keep].float(), -1)
        loss = (log_t.exp() * (log_t - log_s)).sum(-1).mean()
        loss.backward()
        opt.step()
        sched.step()
        opt.zero_grad()
    return {"train_s": time.perf_counter() - t0, "cache_s": None, "model": s, "tok": tok}


CONTENDERS = {"distiltune": run_distiltune, "trl_gkd": run_trl, "plain_loop": run_plain}


def one(name: str, teacher: str, student: str, rows: int, n_test: int) -> None:
    train, test = gsm8k_chats(0, rows), gsm8k_chats(1000, n_test)
    with tempfile.TemporaryDirectory() as work:
        got = CONTENDERS[name](teacher, student, train, test, work)
        tokens = response_tokens(got["tok"], train)
        print("RESULT " + json.dumps({"contender": name, "train_s": round(got["train_s"], 1),
                                      "cache_s": got["cache_s"], "response_tokens": tokens,
                                      "tokens_per_s": round(tokens / got["train_s"], 1),
                                      "peak_rss_mb": round(peak_rss_mb()), "test_nll": round(test_nll(
                                          got["model"].float().cpu(), got["tok"], test), 4)}))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=64)
    ap.add_argument("--test", type=int, default=32)
    ap.add_argument("--only", choices=list(CONTENDERS))
    ap.add_argument("--teacher")
    ap.add_argument("--student")
    args = ap.parse_args()
    if args.only:
        return one(args.only, args.teacher, args.student, args.rows, args.test)
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from distiltune.models.hf import build_student, resolve_path

    teacher = resolve_path("demo:smollm2-135m-instruct")
    work = tempfile.mkdtemp(prefix="lm_peers_")
    student = os.path.join(work, "student_init")
    t = AutoModelForCausalLM.from_pretrained(teacher)
    build_student(t, list(range(0, t.config.num_hidden_layers, 2))).save_pretrained(student)
    AutoTokenizer.from_pretrained(teacher).save_pretrained(student)
    results = []
    for name in CONTENDERS:
        proc = subprocess.run([sys.executable, __file__, "--only", name, "--teacher", teacher, "--student", student,
                               "--rows", str(args.rows), "--test", str(args.test)], capture_output=True, text=True,
                              env=dict(os.environ, TOKENIZERS_PARALLELISM="false"))
        line = next((ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")), None)
        if line is None:
            print(f"{name} failed:\n{proc.stderr[-3000:]}")
            continue
        results.append(json.loads(line[7:]))
        print(line)
    print(f"\n{args.rows} GSM8K chats once, batch {BATCH}, SmolLM2-135M-Instruct -> 15 of its layers, forward KL T=1; "
          f"test NLL on {args.test} held-out solutions")
    print("| contender | response tokens/s | train s | cache build s | peak RSS MB | test NLL |\n|---|---|---|---|---|---|")
    for r in results:
        print(f"| {r['contender']} | {r['tokens_per_s']:.1f} | {r['train_s']:.1f} | {r['cache_s'] or '-'} | "
              f"{r['peak_rss_mb']} | {r['test_nll']:.4f} |")
    print(json.dumps(results))


if __name__ == "__main__":
    main()
