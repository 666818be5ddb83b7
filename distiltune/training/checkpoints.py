"""Checkpoints a kill cannot corrupt.

The Trainer writes ``checkpoint-N`` file by file, so a process killed mid-save (pre-emption, OOM
killer) leaves a folder that looks like a checkpoint but loads half. After the Trainer's files are
written we add a manifest (file -> size), itself written to a temp file and renamed into place:
a checkpoint counts only when its manifest is there and every listed file has its recorded size.
Resume picks the newest such checkpoint and removes the rest (half-written ones, and older ones
cut short while being rotated away).
"""
from __future__ import annotations

import json
import os
import re
import shutil

MANIFEST = "distiltune_complete.json"
_CKPT = re.compile(r"^checkpoint-(\d+)$")


def seal(folder: str) -> None:
    """Mark ``folder`` complete: called once every file of the checkpoint is on disk."""
    files = {}
    for root, _, names in os.walk(folder):
        for name in names:
            path = os.path.join(root, name)
            rel = os.path.relpath(path, folder)
            if rel != MANIFEST and not rel.endswith(".tmp"):
                files[rel] = os.path.getsize(path)
    tmp = os.path.join(folder, MANIFEST + ".tmp")
    with open(tmp, "w") as f:
        json.dump({"files": files}, f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, os.path.join(folder, MANIFEST))


def is_complete(folder: str) -> bool:
    try:
        with open(os.path.join(folder, MANIFEST)) as f:
            files = json.load(f)["files"]
    except (OSError, ValueError, KeyError, TypeError):
        return False
    return bool(files) and all(os.path.isfile(p := os.path.join(folder, rel)) and os.path.getsize(p) == size
                               for rel, size in files.items())


def _checkpoints(folder: str) -> list[tuple[int, str]]:
    if not folder or not os.path.isdir(folder):
        return []
    found = [(int(m.group(1)), os.path.join(folder, n)) for n in os.listdir(folder) if (m := _CKPT.match(n))]
    return sorted(p for p in found if os.path.isdir(p[1]))


def last_complete(folder: str) -> str | None:
    """The newest complete checkpoint in ``folder`` (None when there is none)."""
    return next((path for _, path in reversed(_checkpoints(folder)) if is_complete(path)), None)


def discard_incomplete(folder: str) -> list[str]:
    """Remove checkpoint folders without a valid manifest, so neither resume nor the Trainer's
    rotation (which keeps the newest N by time) ever prefers one over a complete checkpoint."""
    removed = []
    for _, path in _checkpoints(folder):
        if not is_complete(path):
            shutil.rmtree(path, ignore_errors=True)
            removed.append(os.path.basename(path))
    return removed
