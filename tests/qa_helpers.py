"""Shared by the QA tests: two small tokenizers over one vocabulary of words, tiny QA models, a
learnable synthetic task (who / where questions about filler contexts) and the CLI arguments of a run."""
import os
import random

import pytest
import torch
from transformers import BertConfig, BertForQuestionAnswering, BertTokenizerFast

from conftest import FIXED, SPECIAL, write_jsonl

PER = [f"per{i}" for i in range(8)]
LOC = [f"loc{i}" for i in range(8)]
FILL = [f"w{i}" for i in range(20)]
QUESTION = ["who", "where", "is", "the"]
SUFFIX = ["jr", "city"]
WORDS = PER + LOC + FILL + QUESTION + SUFFIX


def word_tokenizer(path) -> BertTokenizerFast:
    """One token per word."""
    os.makedirs(path, exist_ok=True)
    tok = BertTokenizerFast(vocab={w: i for i, w in enumerate(SPECIAL + WORDS)}, do_lower_case=True)
    tok.save_pretrained(path)
    return tok


def piece_tokenizer(path) -> BertTokenizerFast:
    """Another vocabulary: numbered words split into a stem and a digit ("per3" -> per ##3)."""
    os.makedirs(path, exist_ok=True)
    pieces = ["per", "loc", "w", "j", "##r", "ci", "##ty", *QUESTION] + [f"##{i}" for i in range(20)]
    tok = BertTokenizerFast(vocab={w: i for i, w in enumerate(SPECIAL + pieces)}, do_lower_case=True)
    assert tok.tokenize("who per3 w12 jr city") == ["who", "per", "##3", "w", "##12", "j", "##r", "ci", "##ty"]
    tok.save_pretrained(path)
    return tok


def tiny_reader(path, tok, hidden, layers, seed):
    torch.manual_seed(seed)
    cfg = BertConfig(vocab_size=len(tok), hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=2,
                     intermediate_size=hidden * 2, max_position_embeddings=128)
    BertForQuestionAnswering(cfg).save_pretrained(path)
    return str(path)


def make_questions(n: int, seed: int, words: tuple[int, int] = (6, 20)) -> list[dict]:
    """A context of filler words holding a person and a place (each one word, or two with a suffix);
    'who' asks for the person, 'where' for the place."""
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        ctx = rng.choices(FILL, k=rng.randint(*words))
        ents = {}
        for kind, pool, suffix in (("PER", PER, "jr"), ("LOC", LOC, "city")):
            ent = [rng.choice(pool)] + ([suffix] if rng.random() < 0.4 else [])
            at = rng.randint(0, len(ctx))
            while any(at > a and at < a + len(e) for a, e in ents.values()):
                at = rng.randint(0, len(ctx))
            for k, (a, e) in list(ents.items()):
                if a >= at:
                    ents[k] = (a + len(ent), e)
            ctx[at:at] = ent
            ents[kind] = (at, ent)
        kind = rng.choice(["PER", "LOC"])
        at, ent = ents[kind]
        start = len(" ".join(ctx[:at])) + (1 if at else 0)
        text = " ".join(ent)
        context = " ".join(ctx)
        assert context[start:start + len(text)] == text
        rows.append({"id": f"q{seed}-{i}", "question": ("who is" if kind == "PER" else "where is") + " the",
                     "context": context, "answers": {"text": [text], "answer_start": [start]}})
    return rows


@pytest.fixture(scope="module")
def qa(tmp_path_factory):
    d = tmp_path_factory.mktemp("qa")
    files = {split: write_jsonl(d / f"{split}.jsonl", make_questions(n, seed))
             for split, n, seed in (("train", 600, 1), ("validation", 50, 2), ("test", 200, 3))}
    teacher = tiny_reader(d / "teacher", word_tokenizer(d / "teacher"), 64, 2, seed=1)
    student = tiny_reader(d / "student", piece_tokenizer(d / "student"), 32, 1, seed=2)
    return {"files": files, "teacher": teacher, "student": student, "dir": d}


def args(qa, out, *extra):
    f = qa["files"]
    return ["--task_type", "question_answering", "--train_file", f["train"], "--validation_file", f["validation"],
            "--test_file", f["test"], "--teacher", qa["teacher"], "--student", qa["student"], "--output_dir", str(out),
            "--max_length", "24", "--doc_stride", "8", "--latency_samples", "3", "--seed", "0",
            "--mixed_precision", "no", "--report_to", "none", *FIXED, *extra]


def windows_of(rows, tok, length, stride):
    from datasets import Dataset

    from distiltune.data.qa_data import _rows
    from distiltune.data.windows import encode_windows

    class Cfg:
        question_column, context_column, answers_column = "question", "context", "answers"

    ds = _rows(Dataset.from_list(rows), Cfg, "test", answered=True)
    return encode_windows(ds, tok, "question", "context", length, stride)


def errors(capsys) -> list[str]:
    return [line for line in capsys.readouterr().err.splitlines() if line.startswith("distiltune: error:")]
