"""Sequence-level KD's teacher answers: every training prompt without a gold response, answered once
by the teacher's generation and kept in the run folder.

The answers are appended to a JSON-lines file a batch at a time (flushed), one line per prompt, keyed
by the prompt's ids as the teacher reads them; a build killed part-way resumes with the prompts that
have no line yet (a line cut off by the kill is dropped), and a finished file is reused by every later
stage and ``--resume``. The file's name holds what shapes the answers (the teacher, the longest
answer, the sampling temperature and seed), so changing any of them answers again.
"""
from __future__ import annotations

import hashlib
import json
import os
import time

from ..errors import DistilTuneError


def prompt_key(ids: list[int]) -> str:
    return hashlib.sha256(json.dumps(ids).encode()).hexdigest()[:20]


def read_answers(path: str) -> dict[str, str]:
    """The answers already written (a last line cut off by a kill is dropped, not trusted)."""
    found: dict[str, str] = {}
    if not os.path.isfile(path):
        return found
    with open(path, encoding="utf-8") as f:
        for line in f:
            try:
                row = json.loads(line)
            except json.JSONDecodeError:
                continue
            if isinstance(row, dict) and "key" in row and "answer" in row:
                found[row["key"]] = row["answer"]
    return found


def answer_file(root: str, teacher_fp: str, max_new_tokens: int, temperature: float, seed: int) -> str:
    shape = json.dumps({"teacher": teacher_fp, "max_new_tokens": max_new_tokens, "temperature": temperature,
                        "seed": seed if temperature > 0 else None}, sort_keys=True)
    return os.path.join(root, f"answers-{hashlib.sha256(shape.encode()).hexdigest()[:16]}.jsonl")


def teacher_answers(path: str, prompts: list[list[int]], generate, batch_size: int = 32, log=print) -> list[str]:
    """The teacher's answer to each prompt (token ids as it reads them), in order. ``generate`` maps a
    list of prompts to their answers as text; only prompts without a stored answer reach it."""
    keys = [prompt_key(p) for p in prompts]
    done = read_answers(path)
    first = {}
    for i, k in enumerate(keys):  # a prompt asked twice is answered once
        if k not in done:
            first.setdefault(k, i)
    todo = list(first.values())
    if todo:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        had = len(set(keys)) - len(todo)
        log(f"[distiltune] the teacher answers {len(todo)} distinct prompts by generation (sequence-level KD)"
            + (f"; {had} answered before a stop are kept" if had else ""))
        _drop_partial_line(path)
        t0 = last = time.perf_counter()
        with open(path, "a", encoding="utf-8") as f:
            for a in range(0, len(todo), batch_size):
                idx = todo[a:a + batch_size]
                texts = generate([prompts[i] for i in idx])
                for i, text in zip(idx, texts):
                    done[keys[i]] = text
                    f.write(json.dumps({"key": keys[i], "answer": text}) + "\n")
                f.flush()
                os.fsync(f.fileno())
                now = time.perf_counter()
                if now - last > 10 or a + batch_size >= len(todo):  # a progress line every 10 s, and the last
                    last = now
                    log(f"[distiltune] teacher answers: {min(a + batch_size, len(todo))}/{len(todo)} prompts, "
                        f"{min(a + batch_size, len(todo)) / max(now - t0, 1e-9):.2f} prompts/s")
    missing = [k for k in keys if k not in done]
    if missing:  # not expected: every prompt was just answered
        raise DistilTuneError(f"{len(missing)} teacher answers are missing from {path}", "delete the file and run again")
    return [done[k] for k in keys]


def _drop_partial_line(path: str) -> None:
    """A kill mid-write can leave a last line without its newline: cut it so appending starts clean."""
    if not os.path.isfile(path):
        return
    with open(path, "rb+") as f:
        data = f.read()
        if data and not data.endswith(b"\n"):
            f.truncate(data.rfind(b"\n") + 1)


__all__ = ["answer_file", "read_answers", "teacher_answers"]
