"""Sequence-level KD for causal LMs (Kim & Rush, 2016; DeepSeek's R1-Distill models): the teacher's
own answers to the training prompts that have no gold response become the responses the student
learns. The teacher reads each prompt as it renders it (its chat template, its tokenizer); its answer
goes into the row as text, so a student with another tokenizer reads it with its own.
"""
from __future__ import annotations

import torch

from ..constants import IGNORE_INDEX
from ..data.lm_rows import render
from ..data.teacher_answers import answer_file, teacher_answers
from ..models.lm import greedy_generate
from .lm_generations import eos_ids


def default_answer_length(rows, form: str, columns: dict[str, str], tokenizer) -> int:
    """The longest gold response of the labelled rows in the teacher's tokens, plus a quarter."""
    longest = 0
    for i, row in enumerate(rows):
        if row["labels"] != IGNORE_INDEX:
            longest = max(longest, len(render(row, form, tokenizer, columns, i)[1]))
    return max(16, int(longest * 1.25) + 1)


def with_teacher_answers(cfg, teacher, tokenizer, rows, form: str, columns: dict[str, str], root: str, teacher_fp: str):
    """``rows`` with every row that has no gold response answered by the teacher (cached under ``root``)
    and marked labelled; rows with gold responses are unchanged."""
    todo = [i for i, v in enumerate(rows["labels"]) if v == IGNORE_INDEX]
    if not todo:
        return rows
    length = cfg.sequence_kd_max_new_tokens or default_answer_length(rows, form, columns, tokenizer)
    path = answer_file(root, teacher_fp, length, cfg.sequence_kd_temperature, cfg.seed)
    prompts = [render(rows[i], form, tokenizer, columns, i)[0] for i in todo]
    teacher.to(cfg.device).eval()
    stop = eos_ids(teacher, tokenizer)

    def generate(batch: list[list[int]]) -> list[str]:
        if cfg.sequence_kd_temperature > 0:
            torch.manual_seed(cfg.seed)
        made = greedy_generate(teacher, batch, tokenizer.pad_token_id, stop, length, bf16=cfg.bf16, progress=False,
                               temperature=cfg.sequence_kd_temperature, batch_size=8 if cfg.device.type == "cpu" else 32)
        return [tokenizer.decode(ids, skip_special_tokens=True) for ids in made]

    answers = dict(zip(todo, teacher_answers(path, prompts, generate)))

    def fill(row, i):
        if i not in answers:
            return row
        if form == "messages":  # the teacher's answer replaces a gold one kept past num_labeled (not learnt)
            chat = list(row[columns["messages"]])
            if chat and chat[-1].get("role") == "assistant":
                chat = chat[:-1]
            return {columns["messages"]: chat + [{"role": "assistant", "content": answers[i]}], "labels": 0}
        return {columns["response"]: answers[i], "labels": 0}

    return rows.map(fill, with_indices=True, desc="teacher answers")


__all__ = ["with_teacher_answers"]
