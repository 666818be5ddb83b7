"""``distiltune advise``: given a teacher and a deployment budget, measure the teacher here, measure
randomly initialised students of smaller shapes (latency does not depend on training), and
recommend a shape and a strategy — fine-tune only, distil, or distil then fine-tune — with reasons."""
from __future__ import annotations

import copy

import torch

from ..errors import DistilTuneError
from .args import Args
from ..models.features import ENCODERS

# Labels below which a final hard-label stage has too little to learn from (rule of thumb).
ENOUGH_LABELS = 1000
TRAIN_COST = 3.0  # forward + backward ~ 3 forward passes (Kaplan et al. 2020)


def _keys(config) -> dict[str, str]:
    c = config
    return {"layers": ENCODERS[c.model_type][1], "hidden": "hidden_size" if hasattr(c, "hidden_size") else "dim",
            "heads": "num_attention_heads" if hasattr(c, "num_attention_heads") else "n_heads",
            "ffn": "intermediate_size" if hasattr(c, "intermediate_size") else "hidden_dim"}


def shapes(layers: int, hidden: int) -> list[tuple[int, int]]:
    """Candidate (layers, width) pairs: the teacher's depth cut to 2/3, 1/2, 1/3, 1/4, 2, 1 and its
    width cut to 3/4, 1/2, 1/3, 1/4 (multiples of 32, at least 64)."""
    ls = sorted({n for n in (layers, round(2 * layers / 3), layers // 2, layers // 3, layers // 4, 2, 1) if 1 <= n <= layers},
                reverse=True)
    ws = sorted({w for w in (hidden, *(max(64, int(hidden * f) // 32 * 32) for f in (0.75, 0.5, 1 / 3, 0.25))) if w <= hidden},
                reverse=True)
    return [(n, w) for n in ls for w in ws]


def student_config(config, layers: int, hidden: int):
    k = _keys(config)
    c = copy.deepcopy(config)
    heads = max(1, hidden // 64)
    while hidden % heads:
        heads -= 1
    setattr(c, k["layers"], layers)
    setattr(c, k["hidden"], hidden)
    setattr(c, k["heads"], heads)
    setattr(c, k["ffn"], 4 * hidden)
    if hasattr(c, "embedding_size"):
        c.embedding_size = hidden
    return c


class _RandomRows:
    """Padder-like batches of random token ids of one length (latency depends on shape, not on values)."""

    keys = ("input_ids", "attention_mask")

    def __init__(self, vocab: int, seq_len: int, seed: int = 0):
        self.vocab, self.seq_len = vocab, seq_len
        self.gen = torch.Generator().manual_seed(seed)

    def batch(self, rows):
        ids = torch.randint(5, self.vocab, (len(rows), self.seq_len), generator=self.gen)
        return {"input_ids": ids, "attention_mask": torch.ones_like(ids)}


def _check_budgets(latency_ms, size_mb, labelled, unlabeled, train_hours, seq_len) -> None:
    for name, v in (("--latency-ms", latency_ms), ("--size-mb", size_mb), ("--train-hours", train_hours)):
        if v is not None and not v > 0:
            raise DistilTuneError(f"{name} {v} must be > 0", f"give a positive budget, or leave {name} out")
    for name, v in (("--labelled", labelled), ("--unlabeled", unlabeled)):
        if v is not None and v < 0:
            raise DistilTuneError(f"{name} {v} must be >= 0", "give a row count")
    if not 2 <= seq_len <= 512:
        raise DistilTuneError(f"--seq-len {seq_len} is out of range", "use the typical token length of your texts, 2 to 512")


def _teacher_config(teacher: str):
    from transformers import AutoConfig

    from ..models.hf import resolve_path

    try:
        config = AutoConfig.from_pretrained(resolve_path(teacher))
    except (OSError, ValueError) as e:
        raise DistilTuneError(f"could not load the teacher '{teacher}': {str(e).splitlines()[0][:160]}",
                              "point --teacher to a model folder or a hub name") from None
    if config.model_type not in ENCODERS:
        raise DistilTuneError(f"advise shrinks transformer encoders; '{teacher}' is a '{config.model_type}' model",
                              f"supported: {', '.join(sorted(ENCODERS))} (for other networks, measure your own student "
                              "factories with distiltune evaluate)")
    return config


def _row(name, n, w, p, s) -> dict:
    return {"shape": name, "layers": n, "hidden": w, "params": p, "size_mb_fp32": round(p * 4 / 1e6, 1),
            "size_mb_int8_est": round(p / 1e6, 2), "latency_ms_p50": round(s["latency_ms_p50"], 2),
            "latency_ms_p95": round(s["latency_ms_p95"], 2), "throughput_sps": round(s["throughput_sps"], 1)}


def _measure(config, seq_len: int, size_mb, samples: int) -> tuple[dict, list[dict]]:
    """The teacher's shape and the smaller candidate shapes (randomly initialised: same shape, same
    speed), timed side by side at batch 1 and 32; candidates too large even after int8 are skipped."""
    from datasets import Dataset
    from transformers import AutoModelForSequenceClassification

    from ..models.hf import count_params
    from ..models.inference import measure_speeds

    k = _keys(config)
    layers, hidden = int(getattr(config, k["layers"])), int(getattr(config, k["hidden"]))
    torch.manual_seed(0)
    t_model = AutoModelForSequenceClassification.from_config(config).eval()
    candidates = {}
    for n, w in shapes(layers, hidden):
        if (n, w) == (layers, hidden):
            continue
        m = AutoModelForSequenceClassification.from_config(student_config(config, n, w)).eval()
        p = count_params(m)
        if size_mb is not None and p * 4 / 1e6 > size_mb and p / 1e6 > size_mb:  # not even int8 (~1 byte/param) fits
            continue
        candidates[f"{n}x{w}"] = (m, n, w, p)
    rows = _RandomRows(config.vocab_size, seq_len)
    ds = Dataset.from_dict({"i": list(range(samples))})
    entries = {"teacher": (t_model, rows, ds)} | {name: (m, rows, ds) for name, (m, *_) in candidates.items()}
    speeds = measure_speeds(entries, latency_samples=samples, batch_size=32, throughput_batches=2)
    t_row = _row("teacher", layers, hidden, count_params(t_model), speeds["teacher"]) | {"shape": f"{layers}x{hidden}"}
    found = sorted((_row(name, n, w, p, speeds[name]) for name, (_, n, w, p) in candidates.items()),
                   key=lambda r: -r["params"])
    return t_row, found


def _fits(r: dict, latency_ms, size_mb) -> bool:
    return (latency_ms is None or r["latency_ms_p50"] <= latency_ms) and (
        size_mb is None or r["size_mb_fp32"] <= size_mb or r["size_mb_int8_est"] <= size_mb)


def _teacher_fits(t_row: dict, latency_ms, size_mb) -> str:
    return (f"the teacher's own shape already meets the budget ({t_row['latency_ms_p50']:.1f} ms at batch 1"
            + (f" <= {latency_ms:g} ms" if latency_ms else "") + f", {t_row['size_mb_fp32']:.0f} MB fp32"
            + (f" <= {size_mb:g} MB" if size_mb and t_row["size_mb_fp32"] <= size_mb else
               f", ~{t_row['size_mb_int8_est']:.3g} MB after int8 export <= {size_mb:g} MB" if size_mb else "")
            + "): fine-tune it on the task; distillation would trade accuracy for speed you do not need")


def _pick_student(t_row, rows_out, latency_ms, size_mb, seq_len) -> tuple[dict, list[str]]:
    """The largest measured shape within the budget, and why a smaller model is needed at all."""
    ok = [r for r in rows_out if _fits(r, latency_ms, size_mb)]
    if not ok:
        fastest = min(rows_out + [t_row], key=lambda r: r["latency_ms_p50"])
        smallest = min(rows_out + [t_row], key=lambda r: r["params"])
        raise DistilTuneError(
            f"no student shape meets the budget: the fastest measured here is {fastest['shape']} "
            f"({fastest['latency_ms_p50']:.2f} ms at batch 1, {seq_len} tokens, {torch.get_num_threads()} threads) and the "
            f"smallest {smallest['shape']} ({smallest['size_mb_fp32']} MB fp32, ~{smallest['size_mb_int8_est']} MB int8)",
            "raise the budget, shorten the inputs (--seq-len), or start from a smaller teacher")
    pick = ok[0]  # most parameters that fits: the most capacity to keep the teacher's accuracy
    why = []
    if latency_ms is not None and t_row["latency_ms_p50"] > latency_ms:
        why.append(f"the teacher takes {t_row['latency_ms_p50']:.1f} ms at batch 1, over the {latency_ms:g} ms budget")
    if size_mb is not None and t_row["size_mb_fp32"] > size_mb:
        why.append(f"it is {t_row['size_mb_fp32']:.3g} MB in fp32, over the {size_mb:g} MB budget")
    reasons = ["deployment is constrained: " + " and ".join(why) + "; so the model you ship must be smaller",
               f"the largest measured shape that fits is {pick['layers']} layers x {pick['hidden']} wide "
               f"({pick['params'] / 1e6:.1f}M params, {pick['latency_ms_p50']:.1f} ms at batch 1, "
               f"{t_row['latency_ms_p50'] / pick['latency_ms_p50']:.1f}x faster than the teacher, "
               f"{pick['size_mb_fp32']:.3g} MB fp32 / ~{pick['size_mb_int8_est']:.3g} MB int8); "
               "more capacity keeps more of the teacher's accuracy"
               + ("" if pick["size_mb_fp32"] <= (size_mb or float("inf")) else "; it meets the size budget only "
                  "after int8 export (distiltune export --quantize int8)")]
    return pick, reasons


def _strategy(labelled, unlabeled) -> tuple[str, str]:
    if labelled is not None and labelled >= ENOUGH_LABELS:
        return "distill_finetune", (f"{labelled} labelled rows are enough for a final hard-label stage: distil (the "
                                    "teacher's soft labels, annealed temperature), then fine-tune the student on the labels")
    return "distill", ((f"with {labelled} labelled rows" if labelled is not None else "without a label count")
                       + " the teacher's soft labels carry most of the signal: distil"
                       + (f", and let the teacher label the {unlabeled} unlabeled rows too" if unlabeled else
                          "; unlabeled text of the task would help (the teacher labels it)"))


def _training_hours(result: dict, labelled: int, unlabeled) -> float:
    """Rough training cost: forward+backward ~ 3 forwards, throughput measured here at batch 32."""
    rows_seen = labelled + (unlabeled or 0)
    t_sps, s_sps = result["teacher"]["throughput_sps"], (result["student"] or result["teacher"])["throughput_sps"]
    secs = labelled * 2 * TRAIN_COST / t_sps  # teacher fine-tune, 2 epochs
    if result["strategy"] != "finetune":
        secs += rows_seen / t_sps + rows_seen * 3 * TRAIN_COST / s_sps  # teacher labels once; student 3 epochs
    return secs / 3600


def advise(teacher: str, latency_ms: float | None = None, size_mb: float | None = None, labelled: int | None = None,
           unlabeled: int | None = None, train_hours: float | None = None, seq_len: int = 32, samples: int = 30) -> dict:
    _check_budgets(latency_ms, size_mb, labelled, unlabeled, train_hours, seq_len)
    config = _teacher_config(teacher)
    seq_len = min(seq_len, getattr(config, "max_position_embeddings", 512) - 2)
    t_row, rows_out = _measure(config, seq_len, size_mb, samples)
    budgets = {"latency_ms_p50": latency_ms, "size_mb": size_mb, "labelled": labelled, "unlabeled": unlabeled,
               "train_hours": train_hours, "seq_len": seq_len, "threads": torch.get_num_threads()}
    result = {"teacher": t_row, "budgets": budgets, "candidates": rows_out}
    if _fits(t_row, latency_ms, size_mb):
        result["strategy"], result["student"] = "finetune", None
        reasons = [_teacher_fits(t_row, latency_ms, size_mb)]
    else:
        result["student"], reasons = _pick_student(t_row, rows_out, latency_ms, size_mb, seq_len)
        result["strategy"], why = _strategy(labelled, unlabeled)
        reasons.append(why)
    if labelled is not None:
        hours = _training_hours(result, labelled, unlabeled)
        result["estimated_training_hours"] = float(f"{hours:.3g}")
        if train_hours is not None and hours > train_hours:
            reasons.append(f"estimated training time here is {hours:.2g} h, over the {train_hours:g} h budget: "
                           "use fewer unlabeled rows or epochs, a GPU, or a smaller student")
    result["reasons"] = reasons
    return result


def advice_text(r: dict) -> str:
    t, s = r["teacher"], r.get("student")
    lines = [f"teacher {t['shape']} (layers x width): {t['params'] / 1e6:.1f}M params, {t['size_mb_fp32']:.0f} MB fp32, "
             f"{t['latency_ms_p50']:.1f} ms at batch 1 ({r['budgets']['seq_len']} tokens, {r['budgets']['threads']} threads)",
             f"recommended strategy: {r['strategy']}"]
    if s:
        how = (f"student: from_teacher with {s['layers']} student_layers (the teacher's own layers)"
               if s["hidden"] == int(t["shape"].split("x")[1]) else
               "narrower than the teacher: start from a pretrained model of about that shape (student: <folder or hub name>)")
        lines.append(f"recommended student: {s['layers']} layers x {s['hidden']} wide; {how}")
    lines += [f"- {x}" for x in r["reasons"]]
    if r.get("estimated_training_hours") is not None:
        lines.append(f"- estimated training time on this machine: {r['estimated_training_hours']:g} h (rough: "
                     "forward+backward = 3 forwards, throughput measured at batch 32)")
    lines.append("measured shapes (random weights; speed and size do not depend on training):")
    for c in r["candidates"]:
        lines.append(f"  {c['shape']:>8}  {c['params'] / 1e6:7.1f}M  {c['size_mb_fp32']:7.1f} MB  {c['latency_ms_p50']:7.2f} ms")
    return "\n".join(lines)


def run_diagnostics(run_dir: str) -> list[dict]:
    """The report's diagnostics, computed again from a finished run's report.json and stage logs (so a
    run made before a check existed gets it too)."""
    import json
    import os

    from ..report.diagnostics import diagnose
    from ..report.plots import read_histories

    path = os.path.join(run_dir, "report.json")
    if not os.path.isfile(path):
        raise DistilTuneError(f"--run {run_dir}: no report.json there (not a finished run's output_dir)",
                              "give the output_dir of a run that finished, e.g. runs/demo")
    try:
        with open(path) as f:
            report = json.load(f)
    except (OSError, ValueError) as e:
        raise DistilTuneError(f"--run {run_dir}: report.json cannot be read ({e})", "rerun the run, or --resume it") from None
    return diagnose(report, read_histories(os.path.join(run_dir, "logs")))


def diagnostics_text(run_dir: str, found: list[dict]) -> str:
    if not found:
        return f"{run_dir}: no diagnostic fired"
    return "\n".join([f"{run_dir}: {len(found)} diagnostic(s)"] + [f"- {d['line']}" for d in found])


def cli(argv: list[str]) -> int:
    import json

    p = Args(prog="distiltune advise", description="Measure the teacher and smaller student shapes here; recommend a "
              "shape and a strategy (finetune, distill, distill_finetune) for your budget.")
    p.add_argument("--teacher", help="Teacher folder, hub name or demo:all-mpnet-base-v2.")
    p.add_argument("--run", help="A finished run's output_dir: print its diagnostics (what is off, and the fix) "
                                 "instead of measuring shapes.")
    p.add_argument("--latency-ms", type=float, help="Latency budget at batch 1 on this machine (p50, ms).")
    p.add_argument("--size-mb", type=float, help="Size budget on disk (MB; int8 export counts ~1 byte per parameter).")
    p.add_argument("--labelled", type=int, help="Labelled training rows you have.")
    p.add_argument("--unlabeled", type=int, help="Unlabeled task text rows you have.")
    p.add_argument("--train-hours", type=float, help="Training-time budget on this machine (hours).")
    p.add_argument("--seq-len", type=int, default=32, help="Typical input length in tokens (default 32).")
    p.add_argument("--json", action="store_true", help="Print the result as JSON.")
    a = p.parse_args(argv)
    if a.run is not None:
        shape_opts = {"--teacher": a.teacher, "--latency-ms": a.latency_ms, "--size-mb": a.size_mb,
                      "--labelled": a.labelled, "--unlabeled": a.unlabeled, "--train-hours": a.train_hours}
        given = [k for k, v in shape_opts.items() if v is not None]
        if given:  # they would be silently ignored: --run reads a finished run, it measures nothing
            raise DistilTuneError(f"advise --run reads a finished run's diagnostics; {', '.join(given)} "
                                  "only apply to measuring student shapes",
                                  "run them separately: distiltune advise --run DIR, and distiltune advise --teacher ...")
        found = run_diagnostics(a.run)
        print(json.dumps(found, indent=2) if a.json else diagnostics_text(a.run, found))
        return 0
    if a.teacher is None:
        raise DistilTuneError("advise needs --teacher (to measure student shapes) or --run (a finished run to diagnose)",
                              "e.g. distiltune advise --teacher demo:all-mpnet-base-v2 --latency-ms 10, or "
                              "distiltune advise --run runs/demo")
    r = advise(a.teacher, a.latency_ms, a.size_mb, a.labelled, a.unlabeled, a.train_hours, a.seq_len)
    print(json.dumps(r, indent=2) if a.json else advice_text(r))
    return 0
