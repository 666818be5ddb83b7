"""Tiny in-process models and a small learnable text task: every test runs offline in seconds."""
from __future__ import annotations

import os
import random

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import pandas as pd
import pytest
import torch
from transformers import BertConfig, BertForSequenceClassification, BertTokenizerFast

POS = [f"good{i}" for i in range(10)]
NEG = [f"bad{i}" for i in range(10)]
FILLER = [f"w{i}" for i in range(30)]
SPECIAL = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]


def make_rows(n: int, seed: int) -> pd.DataFrame:
    """Each text holds one sentiment word among filler; its polarity is the label."""
    rng = random.Random(seed)
    rows = []
    for _ in range(n):
        label = rng.randrange(2)
        words = rng.choices(FILLER, k=rng.randint(4, 10))
        words.insert(rng.randrange(len(words) + 1), rng.choice(POS if label else NEG))
        rows.append({"sentence": " ".join(words), "label": ["neg", "pos"][label]})
    return pd.DataFrame(rows)


def make_tokenizer(path, shuffle_seed: int | None = None) -> BertTokenizerFast:
    """WordPiece tokenizer over the task words; ``shuffle_seed`` permutes ids (a 'different tokenizer')."""
    words = POS + NEG + FILLER
    if shuffle_seed is not None:
        random.Random(shuffle_seed).shuffle(words)
    os.makedirs(path, exist_ok=True)
    tok = BertTokenizerFast(vocab={w: i for i, w in enumerate(SPECIAL + words)}, do_lower_case=True)
    assert tok.unk_token_id not in tok("w1 good3 bad0")["input_ids"]
    tok.save_pretrained(path)
    return tok


def tiny_bert(path, hidden=32, layers=2, heads=2, seed=0, tokenizer_seed=None, labels=("neg", "pos"), save=True):
    tok = make_tokenizer(path, tokenizer_seed)
    torch.manual_seed(seed)
    cfg = BertConfig(vocab_size=len(tok), hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=heads,
                     intermediate_size=hidden * 2, max_position_embeddings=64,
                     num_labels=len(labels), id2label=dict(enumerate(labels)), label2id={l: i for i, l in enumerate(labels)})
    model = BertForSequenceClassification(cfg)
    if save:
        model.save_pretrained(path)
    return model, tok


@pytest.fixture(scope="session")
def task_files(tmp_path_factory):
    d = tmp_path_factory.mktemp("task")
    paths = {}
    for split, n, seed in (("train", 600, 1), ("validation", 60, 2), ("test", 300, 3)):
        p = d / f"{split}.csv"
        make_rows(n, seed).to_csv(p, index=False)
        paths[split] = str(p)
    return paths


@pytest.fixture(scope="session")
def base_models(tmp_path_factory):
    """Untrained tiny teacher (64 wide, 4 layers) and student (32 wide, 2 layers, permuted vocabulary)."""
    d = tmp_path_factory.mktemp("models")
    tiny_bert(d / "teacher_base", hidden=64, layers=4, heads=4, seed=1)
    tiny_bert(d / "student_base", hidden=32, layers=2, heads=2, seed=2, tokenizer_seed=7)
    return {"teacher": str(d / "teacher_base"), "student": str(d / "student_base")}


@pytest.fixture(scope="session")
def aligned_student(tmp_path_factory):
    """Untrained student sharing the teacher's tokenizer (token-level terms line up): 32 wide,
    2 layers, 4 heads — half the teacher's width, so feature terms need projections."""
    d = tmp_path_factory.mktemp("aligned")
    tiny_bert(d / "student", hidden=32, layers=2, heads=4, seed=3)
    return str(d / "student")


@pytest.fixture(scope="session")
def trained_teacher(tmp_path_factory, task_files, base_models):
    """The tiny teacher fine-tuned on all 600 labelled training rows (via the CLI's finetune command)."""
    from distiltune.cli import main

    out = tmp_path_factory.mktemp("teacher_run")
    code = main(["finetune", "--train_file", task_files["train"], "--validation_file", task_files["validation"],
                 "--test_file", task_files["test"], "--text_column", "sentence", "--student", base_models["teacher"],
                 "--num_train_epochs", "6", "--learning_rate", "2e-3", "--per_device_train_batch_size", "16",
                 "--output_dir", str(out), "--report_to", "none", "--latency_samples", "3", "--seed", "0",
                 "--mixed_precision", "no"])
    assert code == 0
    return str(out / "student")
