"""``distiltune`` command line: run | demo | finetune | distill | evaluate | export | predict | losses."""
from __future__ import annotations

import os
import sys

from .errors import DistilTuneError

from .commands.run import COMMANDS


def _quiet_libraries():
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    import datasets
    import transformers

    transformers.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()  # per-file weight-loading bars; training bars are the Trainer's
    datasets.logging.set_verbosity_error()


USAGE = "usage: distiltune {run,demo,finetune,distill,evaluate,compare,advise,export,predict,losses} [--config x.yaml] [options]"
# verb -> (module under distiltune.commands, its entry function, one line of help); the training verbs are COMMANDS
VERBS = {
    "evaluate": ("evaluate", "main", "Evaluate model folders on the config's test split (metric, size, latency)."),
    "compare": ("compare", "cli", "Fine-tune only vs distil vs distil-then-fine-tune on one student and budget, over seeds."),
    "advise": ("advise", "cli", "Recommend a student shape and strategy for a latency/size/data/time budget (measured here)."),
    "export": ("export", "cli", "Export a trained model to ONNX (--quantize int8) and re-check it (metric, agreement, latency)."),
    "predict": ("predict", "main", "Predict with an exported model: distiltune predict --model DIR \"some text\"."),
    "losses": ("losses", "main", "List the registered loss terms and presets."),
}
LIGHT = ("losses", "predict")  # need neither transformers' logging set-up nor PyTorch (predict: onnxruntime only)


def _help() -> int:
    print(USAGE)
    for c, (h, _) in COMMANDS.items():
        print(f"  {c:<9} {h}")
    for c, (*_, h) in VERBS.items():
        print(f"  {c:<9} {h}")
    return 0


def _dispatch(cmd: str, rest: list[str]) -> int:
    import importlib

    if cmd not in VERBS and cmd not in COMMANDS:
        import difflib

        near = difflib.get_close_matches(cmd, [*COMMANDS, *VERBS], n=1)
        raise DistilTuneError(f"unknown command '{cmd}'", f"did you mean '{near[0]}'?" if near else USAGE)
    if cmd not in LIGHT:
        _quiet_libraries()
    if cmd in COMMANDS:
        from .commands.run import main as run

        return run(cmd, rest)
    module, entry, _ = VERBS[cmd]
    fn = getattr(importlib.import_module(f"distiltune.commands.{module}"), entry)
    return fn() if cmd == "losses" else fn(rest)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        return _help()
    try:
        return _dispatch(argv[0], argv[1:])
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
