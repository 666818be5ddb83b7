"""Augmentation for distillation: seeded copies, each method does what it says, the teacher labels them once."""
from __future__ import annotations

import random

import pytest
import torch
from datasets import Dataset

from distiltune.data import augment as A
from distiltune.errors import DistilTuneError


def test_each_method_edits_words_and_keeps_text_non_empty():
    text = "a quiet and moving film about two brothers"
    n = len(text.split())
    masked, _ = A.edit(text, "mask", 0.3, random.Random(1), "[MASK]")
    assert "[MASK]" in masked and len(masked.split()) == n
    deleted, _ = A.edit(text, "delete", 0.3, random.Random(1), "[MASK]")
    assert 0 < len(deleted.split()) < n and set(deleted.split()) <= set(text.split())
    swapped, _ = A.edit(text, "swap", 0.3, random.Random(1), "[MASK]")
    assert sorted(swapped.split()) == sorted(text.split()) and swapped != text
    masked_mlm, pos = A.edit(text, "mlm", 0.3, random.Random(1), "<mask>")
    assert pos and all(masked_mlm.split()[i] == "<mask>" for i in pos)
    assert A.edit("one", "delete", 1.0, random.Random(0), "[MASK]")[0] == "one"  # never empty
    # at least one word changes even when the per-word chance picks none
    assert A.edit(text, "mask", 1e-9, random.Random(0), "[MASK]")[0].count("[MASK]") == 1


def test_expansion_is_seeded_sized_and_unlabelled():
    ds = Dataset.from_dict({"text": [f"w{i} good film number {i}" for i in range(20)], "labels": [i % 2 for i in range(20)]})
    a = A.expand(ds, ("text",), ["mask", "delete", "swap"], 3, 0.2, seed=5, mask_token="[MASK]", fill_label=-100)
    b = A.expand(ds, ("text",), ["mask", "delete", "swap"], 3, 0.2, seed=5, mask_token="[MASK]", fill_label=-100)
    c = A.expand(ds, ("text",), ["mask", "delete", "swap"], 3, 0.2, seed=6, mask_token="[MASK]", fill_label=-100)
    assert len(a) == 60 and list(a["text"]) == list(b["text"]) and list(a["text"]) != list(c["text"])
    assert set(a["labels"]) == {-100} and a.features == ds.features
    assert sum(t not in list(ds["text"]) for t in a["text"]) >= 55  # copies differ from their source


def test_mlm_fills_masks_with_whole_words_from_the_masked_lm(tmp_path):
    from transformers import BertConfig, BertForMaskedLM

    from conftest import make_tokenizer

    tok = make_tokenizer(tmp_path / "mlm")
    torch.manual_seed(0)
    BertForMaskedLM(BertConfig(vocab_size=len(tok), hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                               intermediate_size=64, max_position_embeddings=64)).save_pretrained(tmp_path / "mlm")
    filler = A.MLMFiller(str(tmp_path / "mlm"))
    ds = Dataset.from_dict({"sentence": ["w1 w2 good3 w4 w5 w6", "bad1 w7 w8"], "labels": [1, 0]})
    out = A.expand(ds, ("sentence",), ["mlm"], 2, 0.5, seed=0, mask_token="[MASK]", filler=filler, fill_label=-100)
    vocab = set(tok.get_vocab())
    for src, new in zip(list(ds["sentence"]) * 2, out["sentence"]):
        assert "[MASK]" not in new and len(new.split()) == len(src.split())
        assert all(w in vocab for w in new.split())
    assert list(out["sentence"]) != list(ds["sentence"]) * 2


def test_mlm_refuses_a_model_without_a_masked_lm_head(tmp_path):
    from conftest import tiny_bert

    tiny_bert(tmp_path / "clf")
    with pytest.raises(DistilTuneError, match="needs a masked-LM head"):
        A.MLMFiller(str(tmp_path / "clf"))


def test_augmented_rows_are_distilled_and_their_teacher_logits_cached(tmp_path, task_files, trained_teacher, base_models,
                                                                      capsys):
    from distiltune.pipeline.distil_rows import distil_rows
    from test_teacher_cache import _pipeline

    s = _pipeline(tmp_path, task_files, trained_teacher, base_models["student"], rows=40,
                  augment=["mask", "delete", "swap"], augment_factor=2)
    ds, augmented = distil_rows(s.ctx, s.teacher.model, s.student.tokenizer, s.teacher.tokenizer, s.fp)
    assert len(ds) == 120 and augmented == 80
    assert list(ds["labels"][40:]) == [-100] * 80 and "teacher_logits" in ds.column_names
    assert "teacher labelled 120 rows once" in capsys.readouterr().out
    distil_rows(s.ctx, s.teacher.model, s.student.tokenizer, s.teacher.tokenizer, s.fp)  # same seed, same copies: the cache is reused
    assert "teacher labelled" not in capsys.readouterr().out


@pytest.mark.parametrize("values, message", [
    ({"augment": ["mask"], "augment_factor": 0}, "augment_factor=0 must be >= 1"),
    ({"augment": ["mask"], "augment_factor": -2}, "augment_factor=-2 must be >= 1"),
    ({"augment_factor": 2}, "augment_factor is set but augment lists no method"),
    ({"augment": ["mask"], "augment_prob": 0.0}, r"augment_prob=0.0 must be in \(0, 1\]"),
])
def test_bad_augmentation_settings(values, message):
    from distiltune.config.schema import DistillConfig

    with pytest.raises(ValueError, match=message):
        DistillConfig(output_dir="x", **values)


def test_unlabeled_text_file_one_text_per_line(tmp_path, task_files):
    from distiltune.config.io import build_config
    from distiltune.data.load import load_task_data

    path = tmp_path / "more.txt"
    path.write_text("w1 good2 w3\n\n  w4 bad5  \nw6 w7\n")
    cfg = build_config(dict(train_file=task_files["train"], validation_file=task_files["validation"],
                            test_file=task_files["test"], text_column="sentence", unlabeled_file=str(path),
                            output_dir=str(tmp_path / "o")), "test")
    data = load_task_data(cfg)
    assert list(data.unlabeled["sentence"]) == ["w1 good2 w3", "w4 bad5", "w6 w7"] and set(data.unlabeled["labels"]) == {-100}
