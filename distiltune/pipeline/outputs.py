"""Output-directory state and stage bookkeeping: finished stages with unchanged inputs are reused."""
from __future__ import annotations

import hashlib
import json
import os
import shutil

from ..errors import DistilTuneError

# Entries a run writes; --overwrite removes only these, never unrelated user files.
RUN_ENTRIES = ("teacher", "student", "baseline_student", "student_onnx", "checkpoints", "tensorboard", ".stages", "cache", "evaluation",
               "logs", "plots", "config.yaml", "report.json", "report.md", "report.html")


def check_output_dir(path: str, overwrite: bool, resume: bool) -> None:
    """Raise if ``path`` cannot take this run; changes nothing."""
    if overwrite and resume:
        raise DistilTuneError("--overwrite and --resume were both given", "pass only one of them")
    if os.path.isfile(path):
        raise DistilTuneError(f"output_dir {path} is a file", "choose a directory path for output_dir")
    if os.path.isdir(path) and os.listdir(path) and not (overwrite or resume):
        raise DistilTuneError(f"output_dir {path} already holds files (a previous run?)",
                              "pass --resume to continue it, --overwrite to replace it, or choose another --output-dir")
    if resume and not holds_run(path):
        raise DistilTuneError(f"--resume was given but output_dir {path} holds no run to continue",
                              "drop --resume to start a new run there, or point --output-dir at the run to continue")
    parent = os.path.dirname(os.path.abspath(path))
    while not os.path.exists(parent):
        parent = os.path.dirname(parent)
    if not os.access(parent if not os.path.isdir(path) else path, os.W_OK):
        raise DistilTuneError(f"output_dir {path} is not writable", "choose a folder you can write to")


def holds_run(path: str) -> bool:
    """Whether ``path`` holds a run: its resolved config, written once the run's checks have passed."""
    return os.path.isfile(os.path.join(path, "config.yaml"))


def prepare_output_dir(path: str, overwrite: bool, resume: bool) -> None:
    check_output_dir(path, overwrite, resume)
    if overwrite:
        clear_previous(path)
    os.makedirs(path, exist_ok=True)


def clear_previous(path: str) -> None:
    """Remove what a previous run wrote in ``path`` (only that, never unrelated user files)."""
    for entry in RUN_ENTRIES if os.path.isdir(path) else ():
        p = os.path.join(path, entry)
        if os.path.isdir(p):
            shutil.rmtree(p)
        elif os.path.exists(p):
            os.remove(p)


def fingerprint(*parts) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:16]


class StageBook:
    """Records ``<output_dir>/.stages/<name>.json`` once a stage's artifact is fully written."""

    def __init__(self, output_dir: str, reuse: bool, write: bool = True):
        self.dir = os.path.join(output_dir, ".stages")
        self.reuse, self.write = reuse, write  # write: False on non-main ranks of a distributed run
        os.makedirs(self.dir, exist_ok=True)

    def done(self, name: str, fp: str, artifact: str) -> bool:
        """True when ``name`` finished earlier with the same fingerprint and its artifact still exists."""
        marker = os.path.join(self.dir, f"{name}.json")
        if not (self.reuse and os.path.isfile(marker) and os.path.exists(artifact)):
            return False
        with open(marker) as f:
            return json.load(f).get("fingerprint") == fp

    def mark(self, name: str, fp: str, **info) -> None:
        if not self.write:
            return
        marker = os.path.join(self.dir, f"{name}.json")
        tmp = marker + ".tmp"
        with open(tmp, "w") as f:
            json.dump({"fingerprint": fp, **info}, f, indent=1)
        os.replace(tmp, marker)

    def info(self, name: str) -> dict:
        marker = os.path.join(self.dir, f"{name}.json")
        if not os.path.isfile(marker):
            return {}
        with open(marker) as f:
            return json.load(f)
