"""``distiltune`` command line: run | demo | finetune | distill | evaluate | export | predict | losses."""
from __future__ import annotations

import argparse
import os
import sys

from .errors import DistilTuneError

DEMO_CONFIG = os.path.join(os.path.dirname(__file__), "configs", "demo.yaml")
COMMANDS = {
    "run": ("Run the pipeline from a config: (fine-tune teacher) -> distil -> (fine-tune student) -> baseline -> report.", {}),
    "demo": ("The offline demo: all-mpnet-base-v2 -> all-MiniLM-L6-v2 on Rotten Tomatoes (--quick: small slice).", {}),
    "finetune": ("Fine-tune the student on hard labels only (transfer learning; freeze_* options apply).",
                 {"strategy": "finetune"}),
    "distill": ("Distil a fine-tuned teacher into the student (one stage, no baseline).",
                {"strategy": "distill", "finetune_teacher": "no", "baseline": False}),
}


def _quiet_libraries():
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    import datasets
    import transformers

    transformers.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()  # per-file weight-loading bars; training bars are the Trainer's
    datasets.logging.set_verbosity_error()


def _train_command(cmd: str, argv: list[str]) -> int:
    from .config.io import parse_config
    from .export.onnx import ExportCheckFailed
    from .pipeline.run import run_pipeline
    from .report.build import summary_table

    if cmd == "demo" and "--config" not in argv:
        argv = ["--config", DEMO_CONFIG] + argv
    forced = COMMANDS[cmd][1]
    cfg, flags = parse_config(argv, cmd, forced=forced)
    from accelerate import PartialState

    if not PartialState().is_main_process:  # torchrun / accelerate launch: progress lines from rank 0 only
        sys.stdout = open(os.devnull, "w")
    try:
        report = run_pipeline(cfg, overwrite=flags.overwrite, resume=flags.resume)
    except ExportCheckFailed as e:  # the run itself finished; its report is written
        print(f"distiltune: export check failed: {e}", file=sys.stderr)
        return 1
    if report is None:  # a non-main rank of a distributed run
        return 0
    print(summary_table(report))
    print(f"[distiltune] report: {os.path.join(cfg.output_dir, 'report.md')}")
    return 0


def _evaluate(argv: list[str]) -> int:
    from .config.io import parse_config
    from .pipeline.run import evaluate_models

    pre = argparse.ArgumentParser(prog="distiltune evaluate", add_help=False)
    pre.add_argument("--model", action="append", default=[], help="Model folder to evaluate (repeatable).")
    known, rest = pre.parse_known_args(argv)
    if "-h" in rest or "--help" in rest:
        print("usage: distiltune evaluate --config x.yaml --model DIR [--model DIR ...] [--teacher DIR] [--output-dir DIR]")
        return 0
    cfg, flags = parse_config(rest, "evaluate", forced={"baseline": False})
    if not known.model and not cfg.teacher:
        raise DistilTuneError("nothing to evaluate", "pass --model <model folder> (and/or --teacher <folder>)")
    report = evaluate_models(cfg, known.model, overwrite=flags.overwrite, resume=flags.resume)
    from .report.build import summary_table

    print(summary_table(report))
    print(f"[distiltune] report: {os.path.join(cfg.output_dir, 'evaluation', 'report.md')}")
    return 0


class _Args(argparse.ArgumentParser):
    """argparse, but a bad flag is one DistilTuneError line (exit 2), not usage plus an error."""

    def error(self, message):
        raise DistilTuneError(message, f"see `{self.prog} --help`")


def _compare(argv: list[str]) -> int:
    from .commands.compare import STRATEGIES, compare
    from .config.io import parse_config

    pre = _Args(prog="distiltune compare", add_help=False, allow_abbrev=False)  # --seed is a config flag
    pre.add_argument("--seeds", type=int, help="Seeds per strategy: seed, seed+1, ... (default 3; 1 with --quick).")
    pre.add_argument("--strategies", nargs="+", default=list(STRATEGIES))
    known, rest = pre.parse_known_args(argv)
    if "-h" in rest or "--help" in rest:
        print("usage: distiltune compare --config x.yaml [--seeds N] [--strategies finetune distill distill_finetune] "
              "[--quick] [--output-dir DIR] [any config flag]\nRuns each strategy on the same student, data and epoch "
              "budget over N seeds (the teacher is fine-tuned once) and writes compare.json, report.md, plots/.")
        return 0
    cfg, flags = parse_config(rest, "compare")
    n = known.seeds if known.seeds is not None else (1 if "--quick" in rest else 3)
    if n < 1:
        raise DistilTuneError(f"--seeds {n} must be >= 1", "use --seeds 3 (or 1 for a quick look)")
    result = compare(cfg, [cfg.seed + i for i in range(n)], known.strategies, cfg.output_dir,
                     overwrite=flags.overwrite, resume=flags.resume)
    with open(os.path.join(cfg.output_dir, "report.md")) as f:
        print(f.read())
    print(f"[distiltune] best: {result['best']}; compare.json and report.md in {cfg.output_dir}")
    return 0


def _advise(argv: list[str]) -> int:
    import json

    from .commands.advise import advice_text, advise

    p = _Args(prog="distiltune advise", description="Measure the teacher and smaller student shapes here; recommend a "
              "shape and a strategy (finetune, distill, distill_finetune) for your budget.")
    p.add_argument("--teacher", required=True, help="Teacher folder, hub name or demo:all-mpnet-base-v2.")
    p.add_argument("--latency-ms", type=float, help="Latency budget at batch 1 on this machine (p50, ms).")
    p.add_argument("--size-mb", type=float, help="Size budget on disk (MB; int8 export counts ~1 byte per parameter).")
    p.add_argument("--labelled", type=int, help="Labelled training rows you have.")
    p.add_argument("--unlabeled", type=int, help="Unlabeled task text rows you have.")
    p.add_argument("--train-hours", type=float, help="Training-time budget on this machine (hours).")
    p.add_argument("--seq-len", type=int, default=32, help="Typical input length in tokens (default 32).")
    p.add_argument("--json", action="store_true", help="Print the result as JSON.")
    a = p.parse_args(argv)
    r = advise(a.teacher, a.latency_ms, a.size_mb, a.labelled, a.unlabeled, a.train_hours, a.seq_len)
    print(json.dumps(r, indent=2) if a.json else advice_text(r))
    return 0


def _export(argv: list[str]) -> int:
    from .export.onnx import ExportCheckFailed
    from .commands.export import export_model
    from .report.build import summary_table

    p = _Args(prog="distiltune export", description="Export a trained model folder to ONNX (and int8), then re-check "
              "it on the task's test split: metric, agreement with the PyTorch model, latency.")
    p.add_argument("--model", required=True, help="Model folder written by distiltune (e.g. runs/demo/student).")
    p.add_argument("--format", default="onnx", help="Export format: onnx.")
    p.add_argument("--quantize", default="none", help="int8 (adds model.int8.onnx), or none.")
    p.add_argument("--output-dir", help="Export folder (default: <model>_onnx).")
    p.add_argument("--overwrite", action="store_true", help="Replace a previous export in --output-dir.")
    p.add_argument("--config", help="Config naming the task data for the re-check (default: the model folder's "
                                     "distiltune_config.yaml).")
    p.add_argument("--min-agreement", type=float,
                   help="Fail (exit 1, files kept) when the fp32 file agrees with PyTorch on a smaller share of test "
                        "predictions (default 0.999).")
    p.add_argument("--min-agreement-int8", type=float, help="The same floor for the int8 file (default 0.97).")
    p.add_argument("--opset", type=int, help="ONNX opset (default: the exporter's).")
    p.add_argument("--teacher", help="A trained teacher folder to evaluate and time beside the exports (speed-up, size ratio).")
    a = p.parse_args(argv)
    out = a.output_dir or a.model.rstrip("/") + "_onnx"
    try:
        report = export_model(a.model, out, quantize=a.quantize, fmt=a.format, overwrite=a.overwrite, config=a.config,
                              min_agreement=a.min_agreement, min_agreement_int8=a.min_agreement_int8, opset=a.opset,
                              teacher=a.teacher)
    except ExportCheckFailed as e:
        print(f"distiltune: export check failed: {e}", file=sys.stderr)
        return 1
    print(summary_table(report))
    print(f"[distiltune] exported to {out} (report.md there)")
    return 0


def _predict(argv: list[str]) -> int:
    from .export.predict import META_FILE, main as predict_main

    pre = _Args(prog="distiltune predict", add_help=False)
    pre.add_argument("--model", required="-h" not in argv and "--help" not in argv)
    known, rest = pre.parse_known_args(argv)
    if known.model and not os.path.isfile(os.path.join(known.model, META_FILE)):
        raise DistilTuneError(f"{known.model} is not an exported model (no {META_FILE})",
                              f"export it first: distiltune export --model {known.model} --quantize int8")
    try:
        return predict_main(rest, folder=known.model, parser=_Args)
    except DistilTuneError:
        raise
    except Exception as e:  # onnxruntime / tokenizers / numpy errors on the user's input or a damaged export folder
        raise DistilTuneError(f"{type(e).__name__}: {str(e).splitlines()[0][:200] if str(e) else ''}",
                              "see `distiltune predict --help`; re-export the model if its folder was changed") from None


def _losses() -> int:
    from .losses import LOSSES
    from .losses.presets import PRESETS

    print("loss terms (losses: [name, name:weight, {name: ..., weight: ..., <options>}]):")
    for name in LOSSES.names():
        print(f"  {name:<14} {LOSSES.get(name).description}")
    print("presets (preset: <name>):")
    for name, p in PRESETS.items():
        print(f"  {name:<14} {p['about']}")
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    usage = "usage: distiltune {run,demo,finetune,distill,evaluate,compare,advise,export,predict,losses} [--config x.yaml] [options]"
    if not argv or argv[0] in ("-h", "--help"):
        print(usage)
        for c, (h, _) in COMMANDS.items():
            print(f"  {c:<9} {h}")
        print("  evaluate  Evaluate model folders on the config's test split (metric, size, latency).")
        print("  compare   Fine-tune only vs distil vs distil-then-fine-tune on one student and budget, over seeds.")
        print("  advise    Recommend a student shape and strategy for a latency/size/data/time budget (measured here).")
        print("  export    Export a trained model to ONNX (--quantize int8) and re-check it (metric, agreement, latency).")
        print("  predict   Predict with an exported model: distiltune predict --model DIR \"some text\".")
        print("  losses    List the registered loss terms and presets.")
        return 0
    cmd, rest = argv[0], argv[1:]
    try:
        if cmd == "losses":
            return _losses()
        if cmd == "predict":  # onnxruntime only: no transformers import needed
            return _predict(rest)
        _quiet_libraries()
        if cmd == "evaluate":
            return _evaluate(rest)
        if cmd == "export":
            return _export(rest)
        if cmd == "compare":
            return _compare(rest)
        if cmd == "advise":
            return _advise(rest)
        if cmd not in COMMANDS:
            import difflib

            near = difflib.get_close_matches(cmd, list(COMMANDS) + ["evaluate", "compare", "advise", "export", "predict", "losses"], n=1)
            raise DistilTuneError(f"unknown command '{cmd}'", f"did you mean '{near[0]}'?" if near else usage)
        return _train_command(cmd, rest)
    except DistilTuneError as e:
        print(f"distiltune: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("distiltune: interrupted; finished stages and checkpoints are kept (use --resume)", file=sys.stderr)
        return 130
    except Exception as e:  # a runtime failure, not bad input: exit 1, the traceback goes to a file
        print(f"distiltune: runtime failure: {_runtime_line(e)}", file=sys.stderr)
        return 1


def _runtime_line(e: Exception) -> str:
    import traceback

    first = (str(e).strip().splitlines() or [""])[0][:300]
    out = getattr(sys.modules.get("distiltune.config.io"), "last_output_dir", None)
    folder = os.path.join(out, "logs") if out and os.path.isdir(out) else None
    try:
        import tempfile
        import time

        folder = folder or tempfile.gettempdir()
        os.makedirs(folder, exist_ok=True)
        log = os.path.join(folder, f"crash-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}.log")
        with open(log, "w") as f:
            traceback.print_exception(e, file=f)
        where = f"full traceback in {log}"
    except OSError:
        where = "the traceback could not be written"
    if _is_oom(e):
        fix = ("lower per_device_train_batch_size (raise gradient_accumulation_steps to keep the batch) or max_length; "
               "finished stages and checkpoints are kept: rerun with --resume")
    else:
        fix = "finished stages and checkpoints are kept: fix the cause and rerun with --resume; report a bug if it persists"
    return f"{type(e).__name__}: {first} ({where}) -> fix: {fix}"


def _is_oom(e: Exception) -> bool:
    if isinstance(e, MemoryError):
        return True
    torch = sys.modules.get("torch")
    return bool(torch) and isinstance(e, getattr(torch, "OutOfMemoryError", ()))


if __name__ == "__main__":
    sys.exit(main())
