"""``distiltune run | demo | finetune | distill``: the pipeline from a config."""
from __future__ import annotations

import os
import sys

DEMO_CONFIG = os.path.join(os.path.dirname(os.path.dirname(__file__)), "configs", "demo.yaml")
COMMANDS = {
    "run": ("Run the pipeline from a config: (fine-tune teacher) -> distil -> (fine-tune student) -> baseline -> report.", {}),
    "demo": ("The offline demo: all-mpnet-base-v2 -> all-MiniLM-L6-v2 on Rotten Tomatoes (--quick: small slice).", {}),
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
