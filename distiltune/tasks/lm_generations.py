"""A causal LM's test prompts answered by greedy generation: answer accuracy where the data has a
checker (``tasks/answers.py``), and a few generations of every model side by side for the report.

The same test rows go to every model, each reading its prompt as it renders it (its own chat
template); generations are greedy (deterministic, as benchmarks score them) with the KV cache, and
end at the model's end-of-sequence token or ``generation_max_new_tokens``.
"""
from __future__ import annotations

from ..data.lm_rows import render
from ..models.lm import greedy_generate
from .answers import detect, is_correct

TEXT_PROMPT_TOKENS = 16  # plain text rows: the model continues a text's first tokens
EXAMPLES = 3  # generations shown side by side in the report


def eos_ids(model, tokenizer) -> list[int]:
    """Every token that ends a turn: the tokenizer's and the generation config's (chat models often
    list an end-of-turn token beside end-of-sequence)."""
    found = [tokenizer.eos_token_id]
    gen = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
    found += gen if isinstance(gen, list) else [gen]
    return sorted({int(i) for i in found if i is not None})


def gold_text(row: dict, form: str, columns: dict[str, str]) -> str:
    if form == "messages":
        return str(row[columns["messages"]][-1].get("content", ""))
    return str(row[columns["response"]])


def prompts_and_golds(rows, form: str, columns: dict[str, str], tokenizer) -> tuple[list[list[int]], list[str], list[str]]:
    """Per row: the prompt ids as this model reads them, the prompt as text, and the gold response."""
    ids, texts, golds = [], [], []
    for i, row in enumerate(rows):
        prompt, response = render(row, form, tokenizer, columns, i)
        if form == "text":  # language modelling: continue the text's first tokens
            prompt, response = response[:TEXT_PROMPT_TOKENS], response[TEXT_PROMPT_TOKENS:]
            gold = tokenizer.decode(response, skip_special_tokens=True)
        else:
            gold = gold_text(row, form, columns)
        ids.append(prompt)
        texts.append(row[columns["prompt"]] if form == "prompt_response" else tokenizer.decode(prompt, skip_special_tokens=True))
        golds.append(gold)
    return ids, texts, golds


def answer_generations(models: dict, rows, form: str, columns: dict[str, str], checker: str, samples: int,
                       max_new_tokens: int | None, bf16: bool = False, progress: bool = True) -> dict | None:
    """``models``: name -> (model, tokenizer). Returns the checker used, each model's answer accuracy
    (when there is a checker) and the first few generations side by side; None when nothing is asked."""
    if samples <= 0 or not models or len(rows) == 0:
        return None
    rows = rows.select(range(min(samples, len(rows))))
    name = None if checker == "none" or form == "text" else (checker if checker != "auto" else None)
    first_tok = next(iter(models.values()))[1]
    _, prompt_texts, golds = prompts_and_golds(rows, form, columns, first_tok)
    if checker == "auto" and form != "text":
        name = detect(golds)
    if name is None:  # no answer to check: a few generations side by side are all there is to show
        rows, golds, prompt_texts = rows.select(range(min(EXAMPLES, len(rows)))), golds[:EXAMPLES], prompt_texts[:EXAMPLES]
    if max_new_tokens is None:  # the longest gold response plus a quarter: room to finish, not to ramble
        longest = max(len(first_tok(g, add_special_tokens=False)["input_ids"]) for g in golds)
        max_new_tokens = max(8, int(longest * 1.25) + 1)
    out = {"checker": name, "max_new_tokens": max_new_tokens, "rows": len(rows), "models": {}, "examples": []}
    texts, rendered = {}, {}
    for model_name, (model, tok) in models.items():
        if id(tok) not in rendered:  # models that share a tokenizer object read the same ids: render once
            rendered[id(tok)] = prompts_and_golds(rows, form, columns, tok)[0]
        ids = rendered[id(tok)]
        made = greedy_generate(model, ids, tok.pad_token_id, eos_ids(model, tok), max_new_tokens, bf16=bf16,
                               desc=f"generating ({model_name})", progress=progress)
        texts[model_name] = [tok.decode(g, skip_special_tokens=True) for g in made]
        if name is not None:
            right = sum(is_correct(name, t, g) for t, g in zip(texts[model_name], golds))
            out["models"][model_name] = {"answer_accuracy": right / len(golds), "answers_checked": len(golds)}
    for i in range(min(EXAMPLES, len(rows))):
        out["examples"].append({"prompt": prompt_texts[i], "gold": golds[i], **{m: texts[m][i] for m in texts}})
    return out


__all__ = ["answer_generations", "eos_ids"]
