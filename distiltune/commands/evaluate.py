"""``distiltune evaluate``: model folders on the config's test split (metric, size, latency)."""
from __future__ import annotations

import argparse
import os

from ..errors import DistilTuneError


def main(argv: list[str]) -> int:
    from ..config.io import parse_config
    from ..pipeline.run import evaluate_models

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
    from ..report.build import summary_table

    print(summary_table(report))
    print(f"[distiltune] report: {os.path.join(cfg.output_dir, 'evaluation', 'report.md')}")
    return 0
