"""``distiltune run | demo | finetune | distill``: the pipeline from a config."""
from __future__ import annotations

import os
import sys

DEMO_CONFIG = os.path.join(os.path.dirname(os.path.dirname(__file__)), "configs", "demo.yaml")
# distiltune demo --task NAME: the packaged config of each offline demo
DEMO_CONFIGS = {"classification": DEMO_CONFIG,
                "causal_lm": os.path.join(os.path.dirname(DEMO_CONFIG), "demo_lm.yaml")}
COMMANDS = {
    "run": ("Run the pipeline from a config: (fine-tune teacher) -> distil -> (fine-tune student) -> baseline -> report.", {}),
    "demo": ("The offline demo: all-mpnet-base-v2 -> all-MiniLM-L6-v2 on Rotten Tomatoes (--quick: small slice); "
             "--task causal_lm: SmolLM2-135M-Instruct -> 15 of its layers on GSM8K.", {}),
    "finetune": ("Fine-tune the student on hard labels only (transfer learning; freeze_* options apply).",
                 {"strategy": "finetune"}),
    "distill": ("Distil a fine-tuned teacher into the student (one stage, no baseline).",
                {"strategy": "distill", "finetune_teacher": "no", "baseline": False}),
}


def main(cmd: str, argv: list[str]) -> int:
    from ..config.io import parse_config
    from ..export.onnx import ExportCheckFailed
    from ..pipeline.run import run_pipeline
    from ..report.build import summary_table

    if cmd == "demo":
        argv = _demo_config(argv)
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


def _demo_config(argv: list[str]) -> list[str]:
    """``demo [--task NAME]``: the packaged config of that demo, unless the user gives their own."""
    from ..errors import DistilTuneError

    argv = list(argv)
    task = "classification"
    for flag in ("--task", "--task-name"):
        if flag in argv:
            i = argv.index(flag)
            if i + 1 >= len(argv):
                raise DistilTuneError(f"{flag} needs a value", f"give one of {', '.join(DEMO_CONFIGS)}")
            task = argv[i + 1]
            del argv[i:i + 2]
    if task not in DEMO_CONFIGS:
        raise DistilTuneError(f"there is no demo for task '{task}'", f"give --task one of {', '.join(DEMO_CONFIGS)}")
    return argv if "--config" in argv else ["--config", DEMO_CONFIGS[task]] + argv
