import pytest
import torch
from transformers import (BertConfig, BertForSequenceClassification, DistilBertConfig, DistilBertForSequenceClassification, MPNetConfig,
                          MPNetForSequenceClassification, RobertaConfig, RobertaForSequenceClassification)

from distiltune.errors import DistilTuneError
from distiltune.models.hf import build_student, count_params, freeze, load_classifier

from conftest import tiny_bert

SMALL = dict(hidden_size=32, num_attention_heads=2, intermediate_size=64, vocab_size=60, num_labels=3)


@pytest.mark.parametrize("make, prefix", [
    (lambda: BertForSequenceClassification(BertConfig(num_hidden_layers=6, max_position_embeddings=40, **SMALL)),
     "bert.encoder.layer"),
    (lambda: RobertaForSequenceClassification(RobertaConfig(num_hidden_layers=6, max_position_embeddings=40, **SMALL)),
     "roberta.encoder.layer"),
    (lambda: MPNetForSequenceClassification(MPNetConfig(num_hidden_layers=6, **SMALL)), "mpnet.encoder.layer"),
    (lambda: DistilBertForSequenceClassification(DistilBertConfig(n_layers=6, dim=32, n_heads=2, hidden_dim=64,
                                                                  vocab_size=60, num_labels=3)),
     "distilbert.transformer.layer"),
])
def test_student_copies_chosen_layers(make, prefix):
    torch.manual_seed(0)
    teacher = make()
    student = build_student(teacher, [0, 2, 5])
    t, s = teacher.state_dict(), student.state_dict()
    for j, i in enumerate([0, 2, 5]):
        for key in (k for k in s if k.startswith(f"{prefix}.{j}.")):
            assert torch.equal(s[key], t[key.replace(f"{prefix}.{j}.", f"{prefix}.{i}.", 1)])
    for key in (k for k in s if not k.startswith(prefix)):
        assert torch.equal(s[key], t[key])  # embeddings, pooler, head
    assert count_params(student) < count_params(teacher)
    default = build_student(teacher)
    assert default.config.distiltune_teacher_layers == [0, 2, 4]


def test_student_layer_errors(tmp_path):
    teacher, _ = tiny_bert(tmp_path, layers=4, save=False)
    with pytest.raises(DistilTuneError, match=r"student_layers \[4, 9\] are out of range.*between 0 and 3"):
        build_student(teacher, [0, 4, 9])
    with pytest.raises(DistilTuneError, match="repeats a layer"):
        build_student(teacher, [1, 1])


def test_freeze_embeddings_and_first_layers(tmp_path):
    model, _ = tiny_bert(tmp_path, layers=4, save=False)
    n = freeze(model, embeddings=True, first_layers=2)
    frozen = {k for k, p in model.named_parameters() if not p.requires_grad}
    assert n == sum(p.numel() for p in model.parameters() if not p.requires_grad)
    assert any(k.startswith("bert.embeddings") for k in frozen)
    assert any(k.startswith("bert.encoder.layer.1.") for k in frozen)
    assert not any(k.startswith("bert.encoder.layer.2.") or k.startswith("classifier") for k in frozen)
    with pytest.raises(DistilTuneError, match="freeze_layers=9"):
        freeze(model, embeddings=False, first_layers=9)


def test_head_detection_and_label_checks(tmp_path):
    model, tok = tiny_bert(tmp_path / "m")
    _, trained = load_classifier(str(tmp_path / "m"), ["neg", "pos"], "teacher")
    assert trained  # saved with its classifier
    with pytest.raises(DistilTuneError, match="predicts 2 labels but the data has 3"):
        load_classifier(str(tmp_path / "m"), ["a", "b", "c"], "teacher")
    with pytest.raises(DistilTuneError, match=r"labels \['neg', 'pos'\] differ from the data's labels \['pos', 'neg'\]"):
        load_classifier(str(tmp_path / "m"), ["pos", "neg"], "teacher")
    model.bert.save_pretrained(tmp_path / "encoder_only")  # a base model: head must be trained first
    _, trained = load_classifier(str(tmp_path / "encoder_only"), ["neg", "pos"], "teacher")
    assert not trained
