"""Data loading: file formats, sentence pairs, unlabeled text, regression, seeded splits."""
import pandas as pd
import pytest

from distiltune.config.io import build_config
from distiltune.data.collate import DistillCollator, tokenize
from distiltune.data.load import load_task_data
from distiltune.errors import DistilTuneError
from distiltune.constants import IGNORE_INDEX

from conftest import make_rows, make_tokenizer


def cfg(**kw):
    return build_config({"report_to": "none", **kw})


@pytest.mark.parametrize("ext", ["csv", "jsonl", "json", "parquet"])
def test_file_formats_and_seeded_splits(tmp_path, ext):
    df = make_rows(200, 5)
    path = tmp_path / f"train.{ext}"
    {"csv": lambda: df.to_csv(path, index=False), "jsonl": lambda: df.to_json(path, orient="records", lines=True),
     "json": lambda: df.to_json(path, orient="records"), "parquet": lambda: df.to_parquet(path)}[ext]()
    a = load_task_data(cfg(train_file=str(path), text_column="sentence", test_size=0.2, validation_size=20, seed=3))
    b = load_task_data(cfg(train_file=str(path), text_column="sentence", test_size=0.2, validation_size=20, seed=3))
    assert (len(a.train), len(a.validation), len(a.test)) == (140, 20, 40)
    assert a.test["sentence"] == b.test["sentence"]  # same seed, same split
    assert a.label_names == ["neg", "pos"] and a.metric == "accuracy"
    train, test = set(a.train["sentence"]), set(a.test["sentence"])
    assert len(train & test) <= 2  # disjoint rows (identical generated texts aside)


def test_sentence_pairs_and_unlabeled_file(tmp_path):
    df = make_rows(60, 1)
    df["second"] = make_rows(60, 2)["sentence"]
    df.to_csv(tmp_path / "train.csv", index=False)
    pd.DataFrame({"sentence": ["w1 w2", "w3 good1"], "second": ["w4", "w5"]}).to_csv(tmp_path / "unl.csv", index=False)
    data = load_task_data(cfg(train_file=str(tmp_path / "train.csv"), text_column="sentence", text_pair_column="second",
                              unlabeled_file=str(tmp_path / "unl.csv"), test_size=10, validation_size=10))
    assert data.text_columns == ("sentence", "second")
    assert list(data.unlabeled["labels"]) == [IGNORE_INDEX, IGNORE_INDEX]
    tok = make_tokenizer(tmp_path / "tok")
    ds = tokenize(data.train, tok, data.text_columns, 32)
    # both segments encoded as a pair: [CLS] first [SEP] second [SEP], token types 0 then 1, on every row
    for row, first, second in zip(ds, data.train["sentence"], data.train["second"]):
        a, b = tok.convert_tokens_to_ids(first.split()), tok.convert_tokens_to_ids(second.split())
        assert row["input_ids"] == [tok.cls_token_id, *a, tok.sep_token_id, *b, tok.sep_token_id]
        assert row["token_type_ids"] == [0] * (len(a) + 2) + [1] * (len(b) + 1)
    batch = DistillCollator(tok)([ds[i] for i in range(4)])
    assert batch["input_ids"].shape[0] == 4 and batch["labels"].tolist() == ds[:4]["labels"]


def test_num_labeled_moves_the_rest_to_unlabeled(task_files):
    data = load_task_data(cfg(train_file=task_files["train"], validation_file=task_files["validation"],
                              test_file=task_files["test"], text_column="sentence", num_labeled=50, max_unlabeled=100))
    assert len(data.train) == 50 and len(data.unlabeled) == 100
    assert set(data.unlabeled["labels"]) == {IGNORE_INDEX}
    # labelled and unlabeled rows are different rows of the training file (its 600 rows, 40% sampled)
    assert sum(s in set(data.train["sentence"]) for s in data.unlabeled["sentence"]) <= 5


def test_regression_labels(tmp_path):
    df = pd.DataFrame({"text": [f"w{i % 30} w{(i * 7) % 30}" for i in range(50)], "score": [i / 10 for i in range(50)]})
    df.to_csv(tmp_path / "r.csv", index=False)
    data = load_task_data(cfg(train_file=str(tmp_path / "r.csv"), label_column="score", test_size=10, validation_size=5))
    assert data.task_type == "regression" and data.label_names is None and data.metric == "pearson"
    with pytest.raises(DistilTuneError, match="metric 'accuracy' needs class labels"):
        load_task_data(cfg(train_file=str(tmp_path / "r.csv"), label_column="score", metric="accuracy"))


def test_empty_unlabeled_file_is_refused(tmp_path, task_files):
    (tmp_path / "unl.jsonl").write_text("")
    with pytest.raises(DistilTuneError, match="unlabeled_file .* is empty"):
        load_task_data(cfg(train_file=task_files["train"], text_column="sentence",
                           unlabeled_file=str(tmp_path / "unl.jsonl")))


@pytest.mark.parametrize("side", ["right", "left"])
@pytest.mark.parametrize("multiple", [None, 8])
@pytest.mark.parametrize("keys", [("input_ids", "attention_mask", "token_type_ids"), ("input_ids", "attention_mask"),
                                  ("input_ids",), ("input_ids", "attention_mask", "special_tokens_mask")])
def test_pad_rows_equals_tokenizer_pad(tmp_path, side, multiple, keys):
    """The fast path pads exactly as the tokenizer does; rows it does not cover go to the tokenizer."""
    import torch

    from distiltune.data.collate import pad_rows

    tok = make_tokenizer(tmp_path / "tok")
    tok.padding_side = side
    enc = tok(list(make_rows(9, seed=3)["sentence"]) + ["w1"], return_special_tokens_mask=True)
    rows = [{k: enc[k][i] for k in keys} for i in range(len(enc["input_ids"]))]
    want = dict(tok.pad(rows, return_tensors="pt", pad_to_multiple_of=multiple))
    got = pad_rows(tok, rows, multiple)
    assert got.keys() == want.keys()
    for k in want:
        assert got[k].dtype == torch.long and torch.equal(got[k], want[k]), k
