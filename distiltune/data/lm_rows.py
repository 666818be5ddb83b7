"""Causal-LM rows and each model's own tokens of them (the data half of the causal-LM task, issue 20).

A row is one of three forms, told apart by its columns:

- ``prompt_response``: a prompt and the response to learn (``prompt`` / ``response`` columns);
- ``messages``: a chat (a list of ``{"role", "content"}``) whose last message, the assistant's, is the
  response; each model renders it with its own chat template;
- ``text``: plain text, every token of which is predicted (language modelling).

Encoding follows what a model sees when it generates: the prompt's tokens, then the response's
tokens and the end-of-sequence token. A prompt and its response are tokenised apart, so the ids
trained on are the ids of the prompt at generation time followed by the model's own tokens (one
tokenisation of the joined text could merge tokens across the boundary, which generation never
does). A chat's response is what its full rendering adds to the rendering of the prompt with the
generation prompt; a template for which that is not a prefix is refused, naming the row.

``labels`` are shifted already, as transformers' causal LMs shift them inside ``forward``:
``labels[i]`` is the token that logits ``i`` must predict (the token at ``i + 1``) on response
positions, -100 elsewhere (prompt, the last position, padding). ``response_mask`` marks the same
positions on every row, unlabeled ones too (whose ``labels`` are all -100): the positions the
token-level KD terms read.
"""
from __future__ import annotations

from collections.abc import Mapping

import numpy as np
from datasets import Dataset

from ..constants import IGNORE_INDEX
from ..errors import DistilTuneError

FORMS = ("prompt_response", "messages", "text")


def lm_form(columns, prompt: str = "prompt", response: str = "response", messages: str = "messages",
            text: str = "text") -> str:
    """Which form rows with these columns are; one line naming the columns to give when none fits."""
    columns = list(columns)
    if messages in columns:
        return "messages"
    if prompt in columns and response in columns:
        return "prompt_response"
    if text in columns:
        return "text"
    raise DistilTuneError(f"the causal-LM data has none of the columns it reads (columns: {', '.join(columns)})",
                          f"give '{prompt}' and '{response}' columns, a '{messages}' column (a chat), or a '{text}' "
                          "column (plain text); or set prompt_column / response_column / messages_column / text_column")


def _ids(out) -> list[int]:
    """Token ids from ``apply_chat_template(tokenize=True)``, a list or (transformers 5) a mapping."""
    ids = out["input_ids"] if isinstance(out, Mapping) else out
    return [int(i) for i in ids]


def render(row: dict, form: str, tokenizer, columns: dict[str, str], index: int = 0) -> tuple[list[int], list[int]]:
    """(prompt ids, response ids) of one row for this tokenizer; the response ends with its
    end-of-sequence token (the model learns to stop), an empty response for a prompt-only row."""
    eos = [tokenizer.eos_token_id] if tokenizer.eos_token_id is not None else []
    if form == "text":
        ids = tokenizer(row[columns["text"]], add_special_tokens=True)["input_ids"]
        return [], list(ids) + eos
    if form == "prompt_response":
        prompt = list(tokenizer(row[columns["prompt"]], add_special_tokens=True)["input_ids"])
        answer = row.get(columns["response"])
        if answer is None or answer == "":
            return prompt, []
        return prompt, list(tokenizer(answer, add_special_tokens=False)["input_ids"]) + eos
    chat = row[columns["messages"]]
    if not getattr(tokenizer, "chat_template", None):
        raise DistilTuneError(f"the tokenizer of {getattr(tokenizer, 'name_or_path', 'a model')} has no chat template, "
                              "so it cannot render the 'messages' rows",
                              "give prompt/response columns instead, or a model whose tokenizer has a chat template")
    if not chat or chat[-1].get("role") != "assistant":
        prompt = _ids(tokenizer.apply_chat_template(chat, add_generation_prompt=True, tokenize=True))
        return prompt, []  # a chat to answer (unlabeled): the teacher's answers can teach (sequence-level KD)
    prompt = _ids(tokenizer.apply_chat_template(chat[:-1], add_generation_prompt=True, tokenize=True))
    full = _ids(tokenizer.apply_chat_template(chat, tokenize=True))
    if full[:len(prompt)] != prompt:
        at = first_difference(prompt, full)
        raise DistilTuneError(f"row {index}: the chat template of {getattr(tokenizer, 'name_or_path', 'the model')} renders "
                              f"the prompt differently alone and before its answer (first difference at token {at})",
                              "fix the template (the prompt with add_generation_prompt must be a prefix of the whole "
                              "chat), or give prompt/response columns")
    response = full[len(prompt):]
    if eos and (not response or response[-1] != eos[0]):  # templates that close a turn with another token keep it
        response = response + eos
    return prompt, response


def first_difference(a: list[int], b: list[int]) -> int | None:
    """The first position where two id sequences differ (or where the shorter ends), None if equal."""
    for i, (x, y) in enumerate(zip(a, b)):
        if x != y:
            return i
    return None if len(a) == len(b) else min(len(a), len(b))


def example(prompt: list[int], response: list[int], max_length: int, labelled: bool) -> dict:
    """One row's model inputs: the prompt, then as much of the response as fits in ``max_length``."""
    ids = (prompt + response)[:max_length]
    n = len(ids)
    start = len(prompt)  # the first response token; logits at start - 1 predict it
    targets = np.full(n, IGNORE_INDEX, dtype=np.int64)
    mask = np.zeros(n, dtype=np.int8)
    first = max(start - 1, 0)
    if n > 1 and first < n - 1:
        mask[first:n - 1] = 1
        if labelled:
            targets[first:n - 1] = ids[first + 1:n]
    return {"input_ids": ids, "attention_mask": [1] * n, "labels": targets.tolist(), "response_mask": mask.tolist(),
            "length": n}


def encode_lm(rows: Dataset, tokenizer, form: str, columns: dict[str, str], max_length: int, prefix: str = "") -> Dataset:
    """Each row's inputs for this tokenizer (columns prefixed by ``prefix`` for a teacher with its own
    tokenizer). A row is labelled when its ``labels`` column is not -100 (its response is gold)."""
    out: dict[str, list] = {}
    labelled = rows["labels"] if "labels" in rows.column_names else [0] * len(rows)
    for i, row in enumerate(rows):
        p, r = render(row, form, tokenizer, columns, i)
        ex = example(p, r, max_length, labelled[i] != IGNORE_INDEX)
        for k, v in ex.items():
            out.setdefault(f"{prefix}{k}", []).append(v)
    keep = {c: rows[c] for c in rows.column_names if c not in out}  # the text, and the student's inputs
    return Dataset.from_dict({**keep, **out})


def long_prompts(rows: Dataset, tokenizer, form: str, columns: dict[str, str], max_length: int) -> tuple[int, int]:
    """(rows whose prompt leaves no room for one response token within ``max_length``, the longest
    prompt in tokens): the check before training, so that no row silently teaches nothing."""
    if form == "text":
        return 0, 0
    lengths = [len(render(row, form, tokenizer, columns, i)[0]) for i, row in enumerate(rows)]
    return sum(n >= max_length for n in lengths), max(lengths, default=0)


def check_prompt_lengths(splits: dict[str, Dataset], tokenizer, role: str, form: str, columns: dict[str, str],
                         max_length: int) -> None:
    """One line, before anything is written, when prompts would leave no room for their response."""
    for split, rows in splits.items():
        if rows is None or len(rows) == 0:
            continue
        n, longest = long_prompts(rows, tokenizer, form, columns, max_length)
        if n:
            raise DistilTuneError(f"{n} of {len(rows)} {split} rows have prompts of max_length={max_length} tokens or more "
                                  f"for the {role}'s tokenizer (the longest: {longest}), so their responses would be cut away",
                                  f"raise max_length above {longest} (plus the response's length), or drop or shorten "
                                  "those prompts")


def check_same_rendering(rows: Dataset, student_tok, teacher_tok, form: str, columns: dict[str, str],
                         limit: int = 64) -> None:
    """Two models that share a tokenizer must read each row as the same ids for token-level terms to
    compare position i with position i; chat templates can differ (a system prompt, a date). One
    line naming the first row and position that differ."""
    for i in range(min(limit, len(rows))):
        s = sum(render(rows[i], form, student_tok, columns, i), [])
        t = sum(render(rows[i], form, teacher_tok, columns, i), [])
        at = first_difference(s, t)
        if at is not None:
            raise DistilTuneError(f"teacher and student share a tokenizer but render row {i} to different token ids "
                                  f"(first difference at token {at}: {t[at] if at < len(t) else 'end'} for the teacher, "
                                  f"{s[at] if at < len(s) else 'end'} for the student), so token-level terms would "
                                  "compare different positions",
                                  "give both models the same chat template (tokenizer.chat_template), or prompt/response "
                                  "columns (no template)")
