"""Training-speed benchmark: the same logits-distillation job run by distiltune, by a blog-style
plain PyTorch loop, by TextBrewer and by torchdistill, side by side on the same models, rows,
epochs, batch size and threads; plus distiltune fine-tuning the student alone.

    python benchmarks/run.py --quick               # under 5 minutes on a 2-core CPU
    python benchmarks/run.py                       # the CPU figures of RESULTS.md
    python benchmarks/run.py --device cuda         # on a GPU (random-weight BERT-base teacher)

Each contender runs in its own process (so its peak RSS is its own), after an untimed short warm-up
job (so no contender pays for reading the libraries from disk), and the timer covers the whole job
after the models are loaded: tokenising, any teacher pass (distiltune's cached teacher logits
included) and every epoch. The job: ``alpha * CE + (1 - alpha) * T^2 * KL`` with AdamW.

- ``plain``: the loop blog posts write: teacher forward under ``no_grad`` every step, every row
  padded to 128 tokens, fp32.
- ``textbrewer`` (``GeneralDistiller``) and ``torchdistill`` (``DistillationBox`` + ``KDLoss``): the
  same objective and the same fixed-padding loader, as their examples feed them. They are never
  project dependencies: ``benchmarks/setup_peers.sh`` puts them into ``benchmarks/.venv``, which the
  script then uses for every contender (one torch for all). Missing ones are reported as skipped.
- ``distill``: ``distiltune`` as users get it (teacher logits cached once, length-grouped dynamic
  padding, bf16 where the hardware has it); ``distill_live``: the same with ``teacher_cache: false``;
  ``finetune``: the student alone on the same rows (hard labels).

Ends with one JSON line: ``distill_vs_finetune`` (epoch time, from the second epoch),
``speedup_vs_plain_loop``, ``speedup_vs_textbrewer``, ``speedup_vs_torchdistill`` (samples/s of the
whole job) and ``peak_rss_mb`` per contender.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
CONTENDERS = ("finetune", "distill", "distill_live", "plain", "textbrewer", "torchdistill", "plain_student")
QUICK = dict(rows=96, epochs=2, contenders=("finetune", "distill", "plain", "textbrewer", "torchdistill"))


# --------------------------------------------------------------------------- shared by workers
def load_rows(spec):
    """The same seeded sample of the demo's Rotten Tomatoes snippets for every contender."""
    from distiltune.assets import load_rotten_tomatoes

    df = load_rotten_tomatoes().sample(frac=1.0, random_state=spec["seed"]).head(spec["rows"])
    return [str(t) for t in df["text"]], [int(v) for v in df["label"]]


def load_models(spec):
    import torch

    from distiltune.models import hf as M

    names = ["negative", "positive"]
    teacher, _ = M.load_classifier(spec["teacher"], names, "teacher")
    torch.manual_seed(spec["seed"])  # same student head everywhere
    student, _ = M.load_classifier(spec["student"], names, "student")
    return (teacher, M.load_tokenizer(spec["teacher"] if not spec.get("tokenizer") else spec["tokenizer"]),
            student, M.load_tokenizer(spec["student"] if not spec.get("tokenizer") else spec["tokenizer"]))


# --------------------------------------------------------------------------- contenders (the others: peers.py)
def run_distiltune(spec, teacher, t_tok, student, s_tok, texts, labels, mode, callbacks=()):
    from datasets import Dataset

    from distiltune.config.io import build_config
    from distiltune.data.load import TaskData
    from distiltune.models import hf as M
    from distiltune.pipeline.checks import plan
    from distiltune.pipeline.distil_rows import distil_rows
    from distiltune.pipeline.stages import Made, prepare_terms
    from distiltune.pipeline.train import train_stage
    from distiltune.training.trainer import finetune_objective

    out = os.path.join(spec["work"], f"distiltune_{mode}")
    cfg = build_config(dict(
        strategy="finetune" if mode == "finetune" else "distill", teacher=spec["teacher"], student=spec["student"],
        max_length=128, per_device_train_batch_size=spec["batch_size"], num_train_epochs=spec["epochs"],
        learning_rate=spec["lr"], temperature=spec["temperature"], distill_weight=1 - spec["alpha"],
        weight_decay=0.0, teacher_cache=mode != "distill_live", baseline=False, seed=spec["seed"],
        output_dir=out, report_to="none", save_strategy="no", disable_tqdm=True,
        use_cpu=spec["device"] == "cpu", **spec.get("distiltune_args", {})), "benchmark")
    rows = Dataset.from_dict({"text": texts, "labels": labels})
    data = TaskData(train=rows, unlabeled=None, validation=rows.select(range(8)), test=rows.select(range(8)),
                    label_names=["negative", "positive"], task_type="classification", metric="accuracy",
                    text_columns=("text",))
    ctx = plan(cfg, overwrite=True, data=data, callbacks=tuple(callbacks))
    if mode == "finetune":
        train_stage(ctx, "student", "bench", student, s_tok, ctx.task.encode(rows, s_tok), finetune_objective(),
                    spec["epochs"], spec["lr"])
        stage = "student"
    else:
        t = Made(teacher, t_tok, None, M.weights_fingerprint(M.resolve_path(spec["teacher"])))
        objectives, _ = prepare_terms(ctx, t, Made(student, s_tok, None))
        train_set, _ = distil_rows(ctx, teacher, s_tok, t_tok, t.fp, live=mode == "distill_live")
        train_stage(ctx, "distill", "bench", student, s_tok, train_set, objectives["main"], spec["epochs"], spec["lr"],
                    teacher=teacher, teacher_tokenizer=t_tok, temperature=cfg.temperature_sched)
        stage = "distill"
    return {"epoch_seconds": [round(s, 3) for s in ctx.records.epoch_seconds[stage]],
            "teacher_logits_seconds": round(ctx.records.timings.get("teacher_logits", 0.0), 3),
            "precision": "bf16" if cfg.bf16 else "fp16" if cfg.fp16 else "fp32"}


def worker(name: str, spec: dict) -> dict:
    import torch

    torch.set_num_threads(spec["threads"])
    torch.manual_seed(spec["seed"])
    texts, labels = load_rows(spec)
    teacher, t_tok, student, s_tok = load_models(spec)
    if spec["device"] == "cuda":
        torch.cuda.reset_peak_memory_stats()
    t0 = time.perf_counter()
    if name in ("finetune", "distill", "distill_live"):
        extra = run_distiltune(spec, teacher, t_tok, student, s_tok, texts, labels, name)
    else:
        import peers

        extra = getattr(peers, f"run_{name}")(spec, teacher, t_tok, student, s_tok, texts, labels)
    if spec["device"] == "cuda":
        torch.cuda.synchronize()
    seconds = time.perf_counter() - t0
    res = {"contender": name, "seconds": round(seconds, 3), "samples_per_s": round(len(texts) * spec["epochs"] / seconds, 2),
           "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1), **extra}
    if spec["device"] == "cuda":
        res["cuda_peak_mb"] = round(torch.cuda.max_memory_allocated() / 2**20, 1)
    return res


# --------------------------------------------------------------------------- orchestration
# (hidden, teacher layers, student layers, heads): "tiny" models cost almost nothing to run, so a job
# on them measures what each contender spends outside the model (data, Python, launches per step).
SIZES = {"random-bert": (768, 12, 6, 12), "tiny-bert": (64, 2, 1, 2)}


def random_bert(work: str, tokenizer: str, size: str = "random-bert") -> tuple[str, str]:
    """Random-weight BERT-base teacher (12x768) and 6x768 student on a real BERT vocabulary (the GPU
    reference job), or the tiny pair of the overhead check."""
    import torch
    from transformers import BertConfig, BertForSequenceClassification

    from distiltune.models import hf as M

    tok = M.load_tokenizer(tokenizer)
    hidden, t_layers, s_layers, heads = SIZES[size]
    paths = []
    for name, layers in (("teacher", t_layers), ("student", s_layers)):
        torch.manual_seed(0)
        cfg = BertConfig(vocab_size=len(tok), hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=heads,
                         intermediate_size=4 * hidden, num_labels=2, id2label={0: "negative", 1: "positive"},
                         label2id={"negative": 0, "positive": 1})
        path = os.path.join(work, f"random_bert_{name}")
        BertForSequenceClassification(cfg).save_pretrained(path)
        tok.save_pretrained(path)
        paths.append(path)
    return paths[0], paths[1]


def peer_python(args) -> str:
    if args.python:
        return args.python
    venv = os.path.join(HERE, ".venv", "bin", "python")
    return venv if os.path.exists(venv) else sys.executable


def versions(python: str) -> dict:
    code = ("import json, importlib.metadata as m\nout = {}\nfor p in ('torch', 'transformers', 'accelerate', "
            "'datasets', 'textbrewer', 'torchdistill', 'distiltune'):\n    try: out[p] = m.version(p)\n"
            "    except Exception: out[p] = None\nprint(json.dumps(out))")
    try:
        return json.loads(subprocess.run([python, "-c", code], capture_output=True, text=True, check=True).stdout)
    except Exception:
        return {}


def machine(device: str) -> str:
    desc = f"{platform.machine()}, {os.cpu_count()} CPU cores"
    try:
        model = next(l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name"))
        desc = f"{model}, {os.cpu_count()} cores"
    except (OSError, StopIteration):
        pass
    if device == "cuda":
        import torch

        desc += f"; GPU {torch.cuda.get_device_name(0)}"
    return desc


def ratio(a, b):
    return round(a / b, 3) if a and b else None


def summarise(results: dict) -> dict:
    ok = {k: v for k, v in results.items() if "seconds" in v}
    sps = {k: v["samples_per_s"] for k, v in ok.items()}
    later = lambda k: (sum(ok[k]["epoch_seconds"][1:]) / len(ok[k]["epoch_seconds"][1:])
                       if k in ok and len(ok[k].get("epoch_seconds", [])) > 1 else None)
    return {"distill_vs_finetune": ratio(later("distill"), later("finetune")),
            "distill_vs_finetune_whole_job": ratio(ok.get("distill", {}).get("seconds"), ok.get("finetune", {}).get("seconds")),
            "speedup_vs_plain_loop": ratio(sps.get("distill"), sps.get("plain")),
            "speedup_vs_textbrewer": ratio(sps.get("distill"), sps.get("textbrewer")),
            "speedup_vs_torchdistill": ratio(sps.get("distill"), sps.get("torchdistill")),
            "cache_speedup_vs_live_teacher": ratio(sps.get("distill"), sps.get("distill_live")),
            "distill_vs_bare_student_loop": ratio(sps.get("distill"), sps.get("plain_student")),
            "samples_per_s": sps,
            "peak_rss_mb": {k: v["peak_rss_mb"] for k, v in ok.items()},
            **({"cuda_peak_mb": {k: v["cuda_peak_mb"] for k, v in ok.items()}}
               if any("cuda_peak_mb" in v for v in ok.values()) else {}),
            "skipped": {k: v["skipped"] for k, v in results.items() if "skipped" in v}}


def table(results: dict, spec: dict) -> str:
    lines = ["| contender | seconds | samples/s | vs distiltune distill | epoch seconds | peak RSS MB" +
             (" | CUDA peak MB |" if spec["device"] == "cuda" else " |"),
             "|---|---|---|---|---|---|" + ("---|" if spec["device"] == "cuda" else "")]
    ref = results.get("distill", {}).get("samples_per_s")
    for name, r in results.items():
        if "skipped" in r:
            lines.append(f"| {name} | skipped: {r['skipped']} |")
            continue
        x = "-" if not ref or name == "distill" else vs_distill(ref / r["samples_per_s"])
        epochs = ", ".join(f"{s:.1f}" for s in r.get("epoch_seconds", [])) or "-"
        row = f"| {name} | {r['seconds']:.1f} | {r['samples_per_s']:.1f} | {x} | {epochs} | {r['peak_rss_mb']:.0f}"
        lines.append(row + (f" | {r.get('cuda_peak_mb', 0):.0f} |" if spec["device"] == "cuda" else " |"))
    return "\n".join(lines)


def vs_distill(slower: float) -> str:
    """How a contender compares with distiltune's distil run, from how many times slower it is."""
    return f"{slower:.2f}x slower" if slower >= 1 else f"{1 / slower:.2f}x faster"


def distiltune_args(ap: argparse.ArgumentParser, text: str) -> dict:
    """``--distiltune-args`` as a dict; anything else is one usage line and exit 2 (``ap.error``)."""
    try:
        extra = json.loads(text)
    except json.JSONDecodeError as e:
        ap.error(f"--distiltune-args is not JSON ({e.msg}); give an object, e.g. '{{\"torch_compile\": true}}'")
    if not isinstance(extra, dict):
        ap.error("--distiltune-args must be a JSON object, e.g. '{\"torch_compile\": true}'")
    from distiltune.config.io import check_keys
    from distiltune.errors import DistilTuneError

    try:  # here, not in each contender's process after the warm-up job
        check_keys(extra, "--distiltune-args")
    except DistilTuneError as e:
        ap.error(str(e))
    return extra


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="fewer rows and no distill_live: under 5 minutes on 2 CPU cores")
    ap.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    ap.add_argument("--models", choices=["demo", "random-bert", "tiny-bert"], default=None,
                    help="demo: the demo's MPNet teacher and MiniLM student (default on CPU); random-bert: random-weight "
                         "BERT-base teacher and 6x768 student (default on GPU, the reference job); tiny-bert: 2x64 "
                         "teacher, 1x64 student, so the job measures each contender's cost outside the model")
    ap.add_argument("--rows", type=int, default=None, help="training rows (default 1024 on CPU, 8192 on GPU)")
    ap.add_argument("--epochs", type=int, default=None, help="epochs (default 2 on CPU, 3 on GPU)")
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--tokenizer", default=None, help="tokenizer folder for --models random-bert (default: the demo "
                                                      "student's BERT-uncased vocabulary)")
    ap.add_argument("--threads", type=int, default=None, help="torch threads for every contender (default: all cores)")
    ap.add_argument("--contenders", nargs="+", choices=CONTENDERS, default=None)
    ap.add_argument("--distiltune-args", default="{}", help="JSON of extra distiltune config keys for its contenders, "
                                                           "e.g. '{\"torch_compile\": true}'")
    ap.add_argument("--python", default=None, help="interpreter for the contenders (default benchmarks/.venv if present)")
    ap.add_argument("--markdown", default=None, help="also write the results as a markdown section to this file")
    ap.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--spec", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    sys.path.insert(0, HERE)
    from tv_shim import ensure_torchvision_ops

    # transformers and torchdistill import torchvision; the orchestrator too builds models (random-bert)
    ensure_torchvision_ops()
    extra = distiltune_args(ap, args.distiltune_args)
    if args.worker:
        import warnings

        warnings.filterwarnings("ignore")
        spec = json.load(open(args.spec))
        print("RESULT " + json.dumps(worker(args.worker, spec)), flush=True)
        return 0

    gpu = args.device == "cuda"
    models = args.models or ("random-bert" if gpu else "demo")
    work = tempfile.mkdtemp(prefix="distiltune-bench-")
    spec = dict(device=args.device, rows=args.rows or (QUICK["rows"] if args.quick else 8192 if gpu else 1024),
                epochs=args.epochs or (QUICK["epochs"] if args.quick else 3 if gpu else 2), batch_size=args.batch_size,
                lr=5e-5, temperature=4.0, alpha=0.5, seed=42, threads=args.threads or os.cpu_count(), work=work,
                teacher="demo:all-mpnet-base-v2", student="demo:all-MiniLM-L6-v2", models=models,
                distiltune_args=extra)
    if models != "demo":
        from distiltune.models.hf import resolve_path

        spec["teacher"], spec["student"] = random_bert(work, args.tokenizer or resolve_path("demo:all-MiniLM-L6-v2"), models)
    contenders = args.contenders or (QUICK["contenders"] if args.quick else CONTENDERS)
    python = peer_python(args)
    spec_path = os.path.join(work, "spec.json")
    json.dump(spec, open(spec_path, "w"))
    print(f"[bench] {len(contenders)} contenders, {spec['rows']} rows x {spec['epochs']} epochs, batch {spec['batch_size']}, "
          f"{spec['threads']} threads, {args.device}, models {models}; python {python}", flush=True)
    # A throwaway short job first: the first process to touch torch, CUDA's libraries and transformers
    # reads them from disk, and that cost must not land on whichever contender happens to run first.
    warm = {**spec, "rows": min(spec["rows"], 64), "epochs": 1, "work": os.path.join(work, "warmup")}
    json.dump(warm, open(os.path.join(work, "warmup.json"), "w"))
    t0 = time.perf_counter()
    subprocess.run([python, os.path.abspath(__file__), "--worker", "distill", "--spec", os.path.join(work, "warmup.json")],
                   capture_output=True, env={**os.environ, "TOKENIZERS_PARALLELISM": "false"})
    print(f"[bench] warm-up job: {time.perf_counter() - t0:.0f} s (not timed)", flush=True)
    results = {}
    for name in contenders:
        mod = {"textbrewer": "textbrewer", "torchdistill": "torchdistill"}.get(name)
        if mod and subprocess.run([python, "-c", f"import importlib.util as u, sys; sys.exit(u.find_spec('{mod}') is None)"]).returncode:
            results[name] = {"skipped": f"{mod} is not installed for {python} (run benchmarks/setup_peers.sh)"}
            print(f"[bench] {name}: skipped ({mod} not installed)", flush=True)
            continue
        t0 = time.perf_counter()
        proc = subprocess.run([python, os.path.abspath(__file__), "--worker", name, "--spec", spec_path],
                              capture_output=True, text=True, env={**os.environ, "TOKENIZERS_PARALLELISM": "false"})
        line = next((l for l in reversed(proc.stdout.splitlines()) if l.startswith("RESULT ")), None)
        if proc.returncode or line is None:
            tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
            results[name] = {"skipped": "failed: " + " / ".join(tail)[-300:]}
            print(f"[bench] {name}: FAILED\n{proc.stderr[-3000:]}", flush=True)
            continue
        results[name] = json.loads(line[len("RESULT "):])
        print(f"[bench] {name}: {results[name]['samples_per_s']:.1f} samples/s ({time.perf_counter() - t0:.0f} s with loading)",
              flush=True)
    summary = summarise(results)
    vers = versions(python)
    head = (f"machine: {machine(args.device)}; threads {spec['threads']}; versions: "
            + ", ".join(f"{k} {v}" for k, v in vers.items() if v)
            + f"\njob: {models} models, {spec['rows']} rows x {spec['epochs']} epochs, batch {spec['batch_size']}, "
              f"T {spec['temperature']}, alpha {spec['alpha']}\ncommand: python benchmarks/run.py "
            + " ".join(a for a in (argv if argv is not None else sys.argv[1:])))
    text = head + "\n\n" + table(results, spec)
    print("\n" + text + "\n")
    if args.markdown:
        with open(args.markdown, "a") as f:
            f.write(f"\n### {time.strftime('%Y-%m-%d')}: {args.device}\n\n```\n{head}\n```\n\n{table(results, spec)}\n\n"
                    f"```json\n{json.dumps(summary)}\n```\n")
    shutil.rmtree(work, ignore_errors=True)
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
