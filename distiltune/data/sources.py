"""Where task data comes from: local files (CSV, JSON lines, Parquet, text), a hub dataset, a
dataset factory, or the bundled demo data."""
from __future__ import annotations

import os

from datasets import ClassLabel, Dataset, DatasetDict

from ..errors import DistilTuneError


READERS = {".csv": "csv", ".json": "json", ".jsonl": "json", ".parquet": "parquet"}


def _read_file(path: str, what: str, text_column: str | None = None) -> Dataset:
    ext = os.path.splitext(path)[1].lower()
    if not os.path.isfile(path):
        raise DistilTuneError(f"{what} not found: {path}", f"check the path given for {what}")
    if ext == ".txt" and text_column:  # unlabeled text: one text per line
        try:
            with open(path, encoding="utf-8") as f:
                lines = [line.strip() for line in f]
        except UnicodeDecodeError:
            raise DistilTuneError(f"{what} {path} is not text (not UTF-8)", "give a UTF-8 text file, one text per line") from None
        lines = [line for line in lines if line]
        if not lines:
            raise DistilTuneError(f"{what} {path} is empty (no lines with text)", f"give a {what} with at least one line")
        return Dataset.from_dict({text_column: lines})
    if ext not in READERS:
        raise DistilTuneError(f"{what} {path} has unsupported type '{ext}'",
                              "use .csv, .json, .jsonl or .parquet" + (" (or .txt, one text per line)" if text_column else ""))
    from datasets import load_dataset

    try:
        ds = load_dataset(READERS[ext], data_files=path, split="train")
    except Exception as e:  # malformed files come in many shapes; one line is enough
        if _has_no_rows(path, ext):
            raise DistilTuneError(f"{what} {path} is empty (no data rows)", f"give a {what} with at least one row") from None
        raise DistilTuneError(f"could not read {what} {path}: {str(e).splitlines()[0][:200]}",
                              "check that the file is valid " + READERS[ext].upper()) from None
    if len(ds) == 0:
        raise DistilTuneError(f"{what} {path} is empty (no data rows)", f"give a {what} with at least one row")
    return ds


def _has_no_rows(path: str, ext: str) -> bool:
    import pandas as pd

    try:
        if ext == ".csv":
            return len(pd.read_csv(path)) == 0
        if ext == ".parquet":
            return len(pd.read_parquet(path)) == 0
        with open(path) as f:  # JSON / JSON lines
            return not f.read().strip()
    except Exception:
        return os.path.getsize(path) == 0


def _load_sources(cfg, read=None) -> tuple[DatasetDict, Dataset | None]:
    """The splits and unlabeled rows ``cfg`` names; ``read(path, what)`` reads a local file (default:
    the table readers, and ``.txt`` as one unlabeled text per line)."""
    splits: dict[str, Dataset] = {}
    from ..models.factories import is_factory

    if cfg.dataset_name and is_factory(cfg.dataset_name):
        splits.update(_from_factory(cfg.dataset_name))
    elif cfg.dataset_name == "demo:conll2003":  # words and IOB2 tags (task_type: token_classification)
        from ..assets import conll2003_dir
        from .words import read_conll

        folder = conll2003_dir()
        splits.update({split: read_conll(str(folder / f"{split}.txt")) for split in ("train", "validation", "test")})
    elif cfg.dataset_name == "demo:squad":  # SQuAD v1.1 (task_type: question_answering); dev is the test split
        from ..assets import squad_dir
        from .squad import read_squad

        folder = squad_dir()
        splits.update(train=read_squad(str(folder / "train-v1.1.json")), test=read_squad(str(folder / "dev-v1.1.json")))
    elif cfg.dataset_name == "demo:gsm8k":  # question / answer word problems (task_type: causal_lm)
        from ..assets import gsm8k_file

        splits["train"] = _read_file(str(gsm8k_file()), "demo:gsm8k")
    elif cfg.dataset_name and cfg.dataset_name.startswith("demo:"):
        if cfg.dataset_name != "demo:rotten_tomatoes":
            raise DistilTuneError(f"unknown demo dataset '{cfg.dataset_name}'",
                                  "use demo:rotten_tomatoes, demo:conll2003, demo:squad or demo:gsm8k")
        from ..assets import load_rotten_tomatoes

        ds = Dataset.from_pandas(load_rotten_tomatoes(), preserve_index=False)
        splits["train"] = ds.cast_column("label", ClassLabel(names=["negative", "positive"]))
    elif cfg.dataset_name:
        from datasets import load_dataset

        try:
            dd = load_dataset(cfg.dataset_name, cfg.dataset_config_name)
        except Exception as e:
            raise DistilTuneError(f"could not load dataset '{cfg.dataset_name}': {str(e).splitlines()[0][:200]}",
                                  "check the name and your internet access, or use local files (train_file)") from None
        for k, v in dd.items():
            if k in ("train", "validation", "test") and not _labels_hidden(v, cfg.label_column, k):
                splits[k] = v  # hub test splits often hide labels (-1): a seeded split replaces them
    for split in ("train", "validation", "test"):
        path = getattr(cfg, f"{split}_file")
        if path:
            splits[split] = read(path, f"{split}_file") if read else _read_file(path, f"{split}_file")
    if "train" not in splits:
        raise DistilTuneError("no training data given", "set dataset_name or train_file")
    unlabeled = None
    if cfg.unlabeled_file:
        unlabeled = (read(cfg.unlabeled_file, "unlabeled_file") if read else _read_file(
            cfg.unlabeled_file, "unlabeled_file", None if getattr(cfg, "input_column", None) else cfg.text_column))
    return DatasetDict(splits), unlabeled


def _from_factory(spec: str) -> dict[str, Dataset]:
    """``dataset_name: file.py:function``: the function returns a DatasetDict (or a dict of
    Datasets) with a train split and optionally validation/test."""
    from ..models.factories import load_factory

    dd = load_factory(spec)()
    if not isinstance(dd, (dict, DatasetDict)) or "train" not in dd or not all(isinstance(v, Dataset) for v in dd.values()):
        raise DistilTuneError(f"dataset factory '{spec}' returned {type(dd).__name__}, not a DatasetDict with a train split",
                              "return datasets.DatasetDict({'train': ..., 'validation': ..., 'test': ...})")
    return {k: v for k, v in dd.items() if k in ("train", "validation", "test")}


def _labels_hidden(ds: Dataset, col: str, split: str) -> bool:
    if split == "train" or col not in ds.column_names:
        return False
    values = ds[col]
    missing = sum(v is None or v == -1 for v in values)
    if missing == len(values):
        print(f"[distiltune] the {split} split has no labels; a seeded split of train is used instead")
        return True
    if missing:
        raise DistilTuneError(f"the {split} split has {missing} rows without a label (-1 or empty)",
                              f"drop them or give a fully labelled {split}_file")
    return False
