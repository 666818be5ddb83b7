"""Loading and splitting causal-LM data (task_type: causal_lm): prompts and responses, chats or text.

Sources are those of the other tasks (hub datasets, local CSV/JSON/JSONL/parquet files, factories).
The form comes from the columns (``data.lm_rows.lm_form``). A row with a gold response (or any text
row) is labelled; rows past ``num_labeled`` and ``unlabeled_file`` rows are unlabeled: the student
learns them from the teacher's token distributions alone. Every check runs before a model is loaded.
"""
from __future__ import annotations

from datasets import Dataset, concatenate_datasets

from ..constants import IGNORE_INDEX
from ..errors import DistilTuneError
from .load import TaskData, _seeded_splits, _take, split_labelled
from .lm_rows import lm_form
from .sources import _load_sources


def lm_columns(cfg) -> dict[str, str]:
    return {"prompt": cfg.prompt_column, "response": cfg.response_column, "messages": cfg.messages_column,
            "text": cfg.text_column}


def form_columns(form: str, cols: dict[str, str]) -> list[str]:
    return {"prompt_response": [cols["prompt"], cols["response"]], "messages": [cols["messages"]],
            "text": [cols["text"]]}[form]


def _usable(ds: Dataset, form: str, cols: dict[str, str], split: str) -> Dataset:
    """The rows with something to read (a prompt, a chat, a text); a wrong type is named."""
    key = form_columns(form, cols)[0]
    first = ds[0][key]
    want = list if form == "messages" else str
    if not isinstance(first, want):
        raise DistilTuneError(f"column '{key}' of the {split} data holds {type(first).__name__}, not "
                              f"{'a list of messages' if form == 'messages' else 'text'}",
                              "give each row a chat as a list of {\"role\", \"content\"} (JSON lines)" if form == "messages"
                              else f"give text in '{key}'")
    if form == "messages":
        bad = sum(not all(isinstance(m, dict) and "role" in m and "content" in m for m in (row or [])) for row in ds[key])
        if bad:
            raise DistilTuneError(f"{bad} rows of the {split} data have messages without a role and a content",
                                  "give each message as {\"role\": ..., \"content\": ...}")
        return ds.filter(lambda r: bool(r[key]))
    return ds.filter(lambda r: isinstance(r[key], str) and bool(r[key].strip()))


def _labelled(ds: Dataset, form: str, cols: dict[str, str]) -> list[int]:
    """0 for a row with a gold response (every text row), -100 for a prompt to answer."""
    if form == "text":
        return [0] * len(ds)
    if form == "prompt_response":
        return [0 if isinstance(r, str) and r.strip() else IGNORE_INDEX for r in ds[cols["response"]]]
    return [0 if chat and chat[-1].get("role") == "assistant" else IGNORE_INDEX for chat in ds[cols["messages"]]]


def load_lm_data(cfg) -> TaskData:
    """Read, check and split causal-LM data; raises DistilTuneError on bad input."""
    dd, unlabeled = _load_sources(cfg)
    cols = lm_columns(cfg)
    form = lm_form(dd["train"].column_names, **cols)
    keep = form_columns(form, cols)
    _check_sources(dd, form, cols, keep)
    seed = cfg.data_seed if getattr(cfg, "data_seed", None) is not None else cfg.seed
    enc = {}
    for split, ds in zip(("train", "validation", "test"), _seeded_splits(dd, cfg, seed)):
        ds = ds.select_columns(keep)
        if len(ds) == 0 and split == "validation":
            enc[split] = ds.add_column("labels", [])
            continue
        ds = _usable(ds, form, cols, split)
        enc[split] = ds.add_column("labels", _labelled(ds, form, cols))
    for split in ("validation", "test"):  # scored on gold responses: a prompt alone scores nothing
        n = sum(v == IGNORE_INDEX for v in enc[split]["labels"])
        if n:
            raise DistilTuneError(f"{n} rows of the {split} data have no response to score",
                                  f"give every {split} row its gold response, or drop those rows")
    gold = [i for i, v in enumerate(enc["train"]["labels"]) if v != IGNORE_INDEX]
    prompts = [i for i, v in enumerate(enc["train"]["labels"]) if v == IGNORE_INDEX]
    train, rest = split_labelled(enc["train"].select(gold), cfg, seed, "responses")
    if not len(train):
        raise DistilTuneError("the training data has no row with a response", "give responses (or text) to learn")
    unl = _unlabeled_rows(cfg, enc["train"].select(prompts) if prompts else None, rest, unlabeled, form, cols, keep,
                          train.features, seed)
    metric = "token_accuracy" if cfg.metric == "auto" else cfg.metric
    if metric != "token_accuracy":
        raise DistilTuneError(f"metric '{metric}' is not a causal-LM metric",
                              "use token_accuracy (top-1 next-token accuracy on the gold responses; perplexity is "
                              "reported beside it)")
    return TaskData(train=train, unlabeled=unl, validation=_take(enc["validation"], cfg.max_validation_samples, seed),
                    test=_take(enc["test"], cfg.max_test_samples, seed), label_names=None, task_type="causal_lm",
                    metric=metric, text_columns=tuple(keep))


def _check_sources(dd, form: str, cols: dict[str, str], keep: list[str]) -> None:
    """Every split non-empty with the form's columns, and some gold response to learn."""
    for split, ds in dd.items():
        if len(ds) == 0:
            raise DistilTuneError(f"the {split} split is empty", f"give a {split} file with at least one row")
        missing = [c for c in keep if c not in ds.column_names]
        if missing and split in ("validation", "test") and missing == [cols["response"]]:
            raise DistilTuneError(f"the {split} data has no '{cols['response']}' column, but {split} rows are scored on "
                                  "their gold responses", f"give the {split} data its responses (or leave the {split} "
                                  "split to a seeded split of the training data)")
        if missing:
            raise DistilTuneError(f"the {split} data lacks column(s) {missing} that the training data has "
                                  f"(columns: {', '.join(ds.column_names)})", "give every split the same columns")
    if form == "prompt_response" and not any(isinstance(r, str) and r.strip() for r in dd["train"][cols["response"]]):
        raise DistilTuneError(f"column '{cols['response']}' is empty in every row of the training data, so there is no "
                              "response to learn", "give the gold responses in that column (or name another with "
                              "response_column)")


def _unlabeled_rows(cfg, prompts, rest, unlabeled, form: str, cols: dict[str, str], keep: list[str], features, seed):
    """Rows the student learns from the teacher alone: labelled rows past num_labeled (``rest``, their
    responses no longer gold), training prompts without responses and unlabeled_file prompts."""
    extra = [] if rest is None else [rest.map(lambda r: {"labels": IGNORE_INDEX})]
    if prompts is not None:
        extra.append(prompts)
    if unlabeled is not None:
        missing = [c for c in keep[:1] if c not in unlabeled.column_names]
        if missing:
            raise DistilTuneError(f"unlabeled_file {cfg.unlabeled_file} lacks column {missing[0]}",
                                  f"give it the training data's '{missing[0]}' column")
        more = _fill(_usable(unlabeled.select_columns([c for c in keep if c in unlabeled.column_names]), form, cols,
                             "unlabeled"), keep)
        extra.append(more.add_column("labels", [IGNORE_INDEX] * len(more)))
    if not extra:
        return None
    return _take(concatenate_datasets([e.cast(features) for e in extra]), cfg.max_unlabeled, seed)


def _fill(ds: Dataset, keep: list[str]) -> Dataset:
    """Unlabeled prompts without a response column: an empty response each."""
    for c in keep:
        if c not in ds.column_names:
            ds = ds.add_column(c, [""] * len(ds))
    return ds.select_columns(keep)


__all__ = ["load_lm_data", "lm_columns"]
