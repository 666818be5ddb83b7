"""Token classification (NER): word alignment for two tokenizers, CoNLL files, word-level KD across
tokenizers against a direct computation, refused data, and a run in which the distilled tiny student
beats its baseline."""
import json
import os
import random

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from transformers import BertConfig, BertForTokenClassification, BertTokenizerFast

from conftest import FIXED, SPECIAL, write_jsonl
from distiltune.cli import main

TAGS = ["O", "B-LOC", "I-LOC", "B-PER", "I-PER"]  # the order distiltune gives tags it reads as names
PER = [f"per{i}" for i in range(8)]
LOC = [f"loc{i}" for i in range(8)]
FILL = [f"w{i}" for i in range(20)]
SUFFIX = ["jr", "city"]  # second words of two-word entities: "per3 jr" (B-PER I-PER), "loc1 city" (B-LOC I-LOC)
WORDS = PER + LOC + FILL + SUFFIX


def word_tokenizer(path) -> BertTokenizerFast:
    """One sub-token per word."""
    os.makedirs(path, exist_ok=True)
    tok = BertTokenizerFast(vocab={w: i for i, w in enumerate(SPECIAL + WORDS)}, do_lower_case=True)
    tok.save_pretrained(path)
    return tok


def piece_tokenizer(path) -> BertTokenizerFast:
    """Another vocabulary: every numbered word splits into a stem and a digit ("per3" -> per ##3)."""
    os.makedirs(path, exist_ok=True)
    pieces = ["per", "loc", "w", "j", "##r", "ci", "##ty"] + [f"##{i}" for i in range(20)]
    tok = BertTokenizerFast(vocab={w: i for i, w in enumerate(SPECIAL + pieces)}, do_lower_case=True)
    assert tok.tokenize("per3 w12 jr city") == ["per", "##3", "w", "##12", "j", "##r", "ci", "##ty"]
    tok.save_pretrained(path)
    return tok


def tiny_tagger(path, tok, hidden, layers, seed):
    torch.manual_seed(seed)
    cfg = BertConfig(vocab_size=len(tok), hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=2,
                     intermediate_size=hidden * 2, max_position_embeddings=64, num_labels=len(TAGS),
                     id2label=dict(enumerate(TAGS)), label2id={t: i for i, t in enumerate(TAGS)})
    BertForTokenClassification(cfg).save_pretrained(path)
    return str(path)


def make_sentences(n: int, seed: int) -> list[dict]:
    """Filler words with one or two entities; an entity is one word or a word and its suffix."""
    rng = random.Random(seed)
    rows = []
    for _ in range(n):
        words = rng.choices(FILL, k=rng.randint(3, 8))
        tags = ["O"] * len(words)
        for _ in range(rng.randint(1, 2)):
            kind = rng.choice(["PER", "LOC"])
            ent = [rng.choice(PER if kind == "PER" else LOC)]
            if rng.random() < 0.4:
                ent.append("jr" if kind == "PER" else "city")
            at = rng.choice([i for i in range(len(words) + 1) if i == len(words) or not tags[i].startswith("I-")])
            words[at:at] = ent
            tags[at:at] = [f"B-{kind}"] + [f"I-{kind}"] * (len(ent) - 1)
        rows.append({"tokens": words, "ner_tags": tags})
    return rows


@pytest.fixture(scope="module")
def ner(tmp_path_factory):
    d = tmp_path_factory.mktemp("ner")
    files = {split: write_jsonl(d / f"{split}.jsonl", make_sentences(n, seed))
             for split, n, seed in (("train", 500, 1), ("validation", 50, 2), ("test", 200, 3))}
    teacher = tiny_tagger(d / "teacher", word_tokenizer(d / "teacher"), 64, 2, seed=1)
    student = tiny_tagger(d / "student", piece_tokenizer(d / "student"), 32, 1, seed=2)
    return {"files": files, "teacher": teacher, "student": student, "dir": d}


def args(ner, out, *extra):
    f = ner["files"]
    return ["--task_type", "token_classification", "--train_file", f["train"], "--validation_file", f["validation"],
            "--test_file", f["test"], "--teacher", ner["teacher"], "--student", ner["student"], "--output_dir", str(out),
            "--latency_samples", "3", "--seed", "0", "--mixed_precision", "no", "--report_to", "none", *FIXED, *extra]


# ---- unit ----

def test_first_sub_token_of_each_word_for_both_tokenizers(tmp_path):
    from datasets import Dataset

    from distiltune.data.words import encode_words

    ds = Dataset.from_dict({"tokens": [["per3", "jr", "w12", "loc1", "city"]], "labels": [[1, 2, 0, 3, 4]]})
    whole = encode_words(ds, word_tokenizer(tmp_path / "a"), "tokens", 32)
    assert whole["word_index"][0] == [1, 2, 3, 4, 5]  # [CLS] then one sub-token a word
    pieces = encode_words(ds, piece_tokenizer(tmp_path / "b"), "tokens", 32)
    # [CLS] per ##3 j ##r w ##12 loc ##1 ci ##ty [SEP]: each word's first piece
    assert pieces["word_index"][0] == [1, 3, 5, 7, 9]
    assert pieces["labels"][0] == [1, 2, 0, 3, 4]
    cut = encode_words(ds, piece_tokenizer(tmp_path / "c"), "tokens", 6)  # [CLS] + 4 pieces + [SEP]: two words fit
    assert cut["word_index"][0] == [1, 3] and cut["labels"][0] == [1, 2]


def test_byte_level_bpe_tokenizers_read_each_word_with_its_leading_space(tmp_path):
    import string

    from transformers import RobertaTokenizerFast

    from distiltune.tasks.token_classification import words_tokenizer

    chars = ["<s>", "<pad>", "</s>", "<unk>", "<mask>", "\u0120"] + list(string.ascii_lowercase + string.digits)
    (tmp_path / "vocab.json").write_text(json.dumps({c: i for i, c in enumerate(chars)}))
    (tmp_path / "merges.txt").write_text("#version: 0.2\n")
    RobertaTokenizerFast(str(tmp_path / "vocab.json"), str(tmp_path / "merges.txt")).save_pretrained(tmp_path / "tok")
    tok = words_tokenizer(RobertaTokenizerFast.from_pretrained(tmp_path / "tok"), str(tmp_path / "tok"))
    ids = tok(["per3", "jr"], is_split_into_words=True)["input_ids"]
    assert tok.convert_ids_to_tokens(ids) == ["<s>", "\u0120", "p", "e", "r", "3", "\u0120", "j", "r", "</s>"]


def test_conll_file_is_read_as_words_and_tags(tmp_path):
    from distiltune.data.words import read_conll

    p = tmp_path / "x.txt"
    p.write_text("-DOCSTART- -X- -X- O\n\nEU NNP B-NP B-ORG\nrejects VBZ B-VP O\n\nPeter NNP B-NP B-PER\n"
                 "Blackburn NNP I-NP I-PER\n")
    ds = read_conll(str(p))
    assert ds["tokens"] == [["EU", "rejects"], ["Peter", "Blackburn"]]
    assert ds["ner_tags"] == [["B-ORG", "O"], ["B-PER", "I-PER"]]
    words_only = tmp_path / "u.txt"
    words_only.write_text("Peter\nBlackburn\n\nEU\n")
    assert read_conll(str(words_only))["tokens"] == [["Peter", "Blackburn"], ["EU"]]


def test_unlabeled_text_of_sentences_is_split_into_words_and_conll_stays_conll(tmp_path):
    from distiltune.data.word_data import _read_words

    text = tmp_path / "more.txt"
    text.write_text("Peter Blackburn flew to Brussels.\nEU rejects German call to boycott British lamb .\n\n")
    rows = _read_words(str(text), "unlabeled_file")
    assert rows["tokens"] == [["Peter", "Blackburn", "flew", "to", "Brussels", "."],
                              ["EU", "rejects", "German", "call", "to", "boycott", "British", "lamb", "."]]
    conll = tmp_path / "words.txt"  # one word a line, a blank line between sentences: CoNLL, words only
    conll.write_text("Peter\nBlackburn\n\nEU\nrejects\n")
    assert _read_words(str(conll), "unlabeled_file")["tokens"] == [["Peter", "Blackburn"], ["EU", "rejects"]]


def test_word_level_kd_across_tokenizers_equals_direct_computation(ner):
    """The kd term on a batch of the collator, teacher live with its own tokenizer, against KD
    computed by hand: each model read at its own first sub-token of each word, averaged over words."""
    from datasets import Dataset

    from distiltune.data.words import WordCollator, encode_words
    from distiltune.losses import build_term
    from distiltune.training.forward import forward_all

    t_tok, s_tok = BertTokenizerFast.from_pretrained(ner["teacher"]), BertTokenizerFast.from_pretrained(ner["student"])
    teacher = BertForTokenClassification.from_pretrained(ner["teacher"]).eval()
    student = BertForTokenClassification.from_pretrained(ner["student"]).eval()
    rows = make_sentences(4, seed=9)
    ds = Dataset.from_dict({"tokens": [r["tokens"] for r in rows], "labels": [[0] * len(r["tokens"]) for r in rows]})
    ds = encode_words(encode_words(ds, s_tok, "tokens", 64), t_tok, "tokens", 64, prefix="teacher_", cut_labels=False)
    batch = WordCollator(s_tok, t_tok)([ds[i] for i in range(len(ds))])
    term = build_term("kd")
    s_out, t_out, info = forward_all(student, teacher, dict(batch), [term], temperature=2.0)
    got = term(s_out, t_out, info | {"temperature": 2.0})

    per_word = []
    for i in range(len(ds)):
        s_ids = torch.tensor([ds[i]["input_ids"]])
        t_ids = torch.tensor([ds[i]["teacher_input_ids"]])
        s_logits = student(input_ids=s_ids).logits[0, ds[i]["word_index"]]
        t_logits = teacher(input_ids=t_ids).logits[0, ds[i]["teacher_word_index"]]
        p_t = F.softmax(t_logits / 2.0, -1)
        per_word.append((p_t * (p_t.log() - F.log_softmax(s_logits / 2.0, -1))).sum(-1) * 4.0)
    want = torch.cat(per_word).mean()
    assert s_out.logits.shape[1] == max(len(r["tokens"]) for r in rows)
    assert got.item() == pytest.approx(want.item(), rel=1e-5)


def test_entity_metrics_score_entities_not_words():
    from distiltune.tasks.metrics import entity_metrics

    names = ["O", "B-PER", "I-PER"]
    labels = np.array([[1, 2, 0, -100]])
    half = np.eye(3)[[[1, 0, 0, 0]]]  # the entity's first word right, its second word wrong
    m = entity_metrics(half, labels, names)
    assert m["token_accuracy"] == pytest.approx(2 / 3) and m["entity_f1"] == 0.0
    full = np.eye(3)[[[1, 2, 0, 1]]]  # the padded position is not scored
    assert entity_metrics(full, labels, names)["entity_f1"] == 1.0


@pytest.mark.parametrize("case", ["bad_tag", "bad_iob", "not_a_list", "length"])
def test_bad_word_data_is_one_line_and_writes_nothing(ner, tmp_path, capsys, case):
    d = tmp_path / "data"
    d.mkdir()
    test = make_sentences(20, seed=5)
    if case == "bad_tag":
        test[3]["ner_tags"][0] = "B-ORG"
    elif case == "bad_iob":
        test[4]["tokens"], test[4]["ner_tags"] = ["w1", "per1"], ["O", "I-PER"]
    elif case == "not_a_list":
        test = [{"tokens": " ".join(r["tokens"]), "ner_tags": r["ner_tags"]} for r in test]
    else:
        test[2]["ner_tags"] = test[2]["ner_tags"][:-1]
    ner = dict(ner, files=dict(ner["files"], test=write_jsonl(d / "test.jsonl", test)))
    out = tmp_path / "out"
    assert main(["run", *args(ner, out)]) == 2
    err = [line for line in capsys.readouterr().err.splitlines() if line.startswith("distiltune: error:")]
    want = {"bad_tag": "not in the training tag set", "bad_iob": "1 rows of the test data have an invalid IOB2",
            "not_a_list": "not a list of words", "length": "different number of words and tags"}[case]
    assert len(err) == 1 and want in err[0], err
    assert not out.exists()


def test_word_data_without_token_classification_and_missing_columns_name_their_fix(ner, tmp_path, capsys):
    out = tmp_path / "out"
    no_task = [a for a in args(ner, out) if a not in ("--task_type", "token_classification")]
    assert main(["run", *no_task]) == 2
    err = [line for line in capsys.readouterr().err.splitlines() if line.startswith("distiltune: error:")]
    assert len(err) == 1 and "holds words and tags per row" in err[0] and "task_type: token_classification" in err[0], err
    assert main(["run", *args(ner, out, "--tags_column", "tags")]) == 2
    err = [line for line in capsys.readouterr().err.splitlines() if line.startswith("distiltune: error:")]
    assert len(err) == 1 and "column 'tags' is missing" in err[0] and "set tokens_column / tags_column" in err[0], err
    assert not out.exists()


def test_a_text_classifier_given_to_token_classification_is_refused(ner, tmp_path, capsys):
    from conftest import tiny_bert

    classifier = tmp_path / "cls"
    tiny_bert(classifier)
    out = tmp_path / "out"
    assert main(["run", *args(dict(ner, teacher=str(classifier)), out)]) == 2
    err = capsys.readouterr().err
    assert "is a text classifier (BertForSequenceClassification), but this task needs a token classifier" in err
    assert not out.exists()


def test_an_online_teacher_is_refused_for_tagging(ner, tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["run", *args(ner, out, "--online_teacher_lr", "1e-4")]) == 2
    err = capsys.readouterr().err
    assert "task_type token_classification: online_teacher_lr" in err and "remove online_teacher_lr" in err
    assert not out.exists()


# ---- e2e ----

@pytest.fixture(scope="module")
def ner_run(ner, tmp_path_factory):
    """The teacher fine-tuned on 500 tagged sentences; the student and its baseline have 30 of them,
    the student also the other 470 through the teacher (its own tokenizer), word by word."""
    taught = tmp_path_factory.mktemp("ner_teacher")
    code = main(["finetune", *args(dict(ner, student=ner["teacher"]), taught, "--num_train_epochs", "4",
                                   "--learning_rate", "3e-3", "--per_device_train_batch_size", "16")])
    assert code == 0
    out = tmp_path_factory.mktemp("ner_run")
    code = main(["run", *args(dict(ner, teacher=str(taught / "student")), out, "--num_labeled", "30", "--num_train_epochs", "4",
                              "--learning_rate", "3e-3", "--per_device_train_batch_size", "16", "--final_finetune_epochs", "1",
                              "--export", json.dumps({"format": "onnx", "quantize": "int8", "min_agreement_int8": 0.5}))])
    assert code == 0
    return out


def test_distilled_tagger_beats_its_baseline_across_tokenizers(ner_run):
    report = json.loads((ner_run / "report.json").read_text())
    m = report["models"]
    assert report["metric"] == "entity_f1"
    assert m["teacher"]["metric"] >= 0.9, m["teacher"]
    assert m["student"]["metric"] >= m["baseline_student"]["metric"] + 0.05, {k: v["metric"] for k, v in m.items()}
    assert {"f1_PER", "f1_LOC", "token_accuracy"} <= set(m["student"]["metrics"])
    assert (ner_run / "plots" / "confusion_matrix.png").is_file()
    assert report["plots"]["f1_per_type"] == os.path.join("plots", "f1_per_type.png")
    assert (ner_run / "plots" / "f1_per_type.png").is_file()


def test_saved_tagger_loads_in_a_transformers_pipeline(ner_run):
    from transformers import pipeline

    tagger = pipeline("token-classification", model=str(ner_run / "student"), aggregation_strategy="first")
    found = tagger("w1 per3 jr w2")
    assert "PER" in [e["entity_group"] for e in found], found


def test_exported_tagger_agrees_and_predict_prints_entities_with_spans(ner_run, capsys):
    report = json.loads((ner_run / "report.json").read_text())
    onnx = report["models"]["student_onnx"]
    assert onnx["agreement"] == 1.0 and onnx["metric"] == pytest.approx(report["models"]["student"]["metric"])
    assert "student_int8" in report["models"]
    assert main(["predict", "--model", str(ner_run / "student_onnx"), "--json", "w1 per3 jr w2 loc5 ."]) == 0
    found = json.loads(capsys.readouterr().out.strip().splitlines()[-1])["entities"]
    assert [(e["type"], e["text"], e["start"], e["end"]) for e in found] == [("PER", "per3 jr", 3, 10), ("LOC", "loc5", 14, 18)]


def test_resume_with_the_live_teacher_redoes_the_student_and_reuses_the_baseline(ner, ner_run):
    """Last in this file (it changes the run folder): --resume with a new temperature and no teacher
    cache, so the teacher runs every step on its own sub-tokens and is read per word in the step."""
    student_before = (ner_run / "student" / "model.safetensors").stat().st_mtime_ns
    baseline_before = (ner_run / "baseline_student" / "model.safetensors").stat().st_mtime_ns
    import yaml

    teacher = yaml.safe_load((ner_run / "config.yaml").read_text())["teacher"]
    code = main(["run", *args(dict(ner, teacher=teacher), ner_run, "--num_labeled", "30", "--num_train_epochs", "4",
                              "--learning_rate", "3e-3", "--per_device_train_batch_size", "16", "--final_finetune_epochs", "1",
                              "--temperature", "2", "--teacher_cache", "false"), "--resume"])
    assert code == 0
    assert (ner_run / "student" / "model.safetensors").stat().st_mtime_ns != student_before
    assert (ner_run / "baseline_student" / "model.safetensors").stat().st_mtime_ns == baseline_before
    m = json.loads((ner_run / "report.json").read_text())["models"]
    assert m["student"]["metric"] >= m["baseline_student"]["metric"] + 0.05
