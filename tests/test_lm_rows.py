"""Causal-LM rows: each form's tokens as a model sees them when it generates, labels on response tokens
only and shifted as transformers shifts them (checked against the model's own loss), and the checks
that run before training (prompts too long, chat templates that render a row differently)."""
from __future__ import annotations

import pytest
import torch
from datasets import Dataset

from distiltune.data.lm_rows import (check_prompt_lengths, check_same_rendering, encode_lm, example, first_difference,
                                     lm_form, render)
from distiltune.errors import DistilTuneError
from distiltune.models.task_loss import hard_label_loss
from lm_helpers import bpe_tokenizer, tiny_llama

COLS = {"prompt": "prompt", "response": "response", "messages": "messages", "text": "text"}


@pytest.fixture(scope="module")
def tok():
    return bpe_tokenizer()


def pairs():
    return Dataset.from_dict({"prompt": ["what is 2 plus 3?", "what is 4 plus 4?"],
                              "response": [" it is 5.", " it is 8."], "labels": [0, 0]})


def test_prompt_and_response_are_the_generation_time_ids_with_shifted_labels(tok):
    enc = encode_lm(pairs(), tok, "prompt_response", COLS, max_length=64)
    row = enc[0]
    prompt = tok("what is 2 plus 3?")["input_ids"]
    ids, labels, mask = row["input_ids"], row["labels"], row["response_mask"]
    assert ids[:len(prompt)] == prompt and ids[-1] == tok.eos_token_id  # the prompt as generation reads it
    assert tok.decode(ids[len(prompt):-1]) == " it is 5."
    for i, (lab, m) in enumerate(zip(labels, mask)):
        if i < len(prompt) - 1 or i == len(ids) - 1:
            assert lab == -100 and m == 0, i  # the prompt predicts nothing; the last position has no next token
        else:
            assert lab == ids[i + 1] and m == 1, i  # logits i predict token i + 1


def test_labels_give_the_loss_transformers_computes_from_its_own_shift(tok):
    enc = encode_lm(pairs(), tok, "prompt_response", COLS, max_length=64)
    model = tiny_llama(len(tok))
    for row in enc:
        ids = torch.tensor([row["input_ids"]])
        n_prompt = row["response_mask"].index(1) + 1
        hf_labels = ids.clone()  # transformers' convention: labels = ids, -100 on the prompt, shifted in forward
        hf_labels[0, :n_prompt] = -100
        ref = model(input_ids=ids, labels=hf_labels).loss
        ours = hard_label_loss(model(input_ids=ids).logits, torch.tensor([row["labels"]]))
        assert ours.item() == pytest.approx(ref.item(), rel=1e-5)


def test_a_chat_renders_with_the_model_template_and_learns_only_the_answer(tok):
    chat = [{"role": "user", "content": "what is 1 plus 1?"}, {"role": "assistant", "content": "it is 2."}]
    rows = Dataset.from_dict({"messages": [chat], "labels": [0]})
    p, r = render(rows[0], "messages", tok, COLS)
    generation = tok.apply_chat_template(chat[:1], add_generation_prompt=True, tokenize=True)["input_ids"]
    assert p == generation  # what the model reads before it answers
    assert tok.decode(r) == "it is 2.<|end|>"
    enc = encode_lm(rows, tok, "messages", COLS, max_length=64)[0]
    learnt = [lab for lab in enc["labels"] if lab != -100]
    assert learnt == r


def test_a_template_whose_prompt_is_not_a_prefix_is_refused_naming_the_row():
    odd = bpe_tokenizer(template="{% for m in messages %}{{ m['content'] }}{% endfor %}"
                                 "{% if add_generation_prompt %}<|assistant|>{% endif %}")
    chat = [{"role": "user", "content": "what is 1 plus 1?"}, {"role": "assistant", "content": "it is 2."}]
    rows = Dataset.from_dict({"messages": [chat, chat]})
    with pytest.raises(DistilTuneError, match="row 0: the chat template") as err:
        encode_lm(rows, odd, "messages", COLS, max_length=64)
    assert "\n" not in str(err.value) and "first difference at token" in str(err.value)
    plain = bpe_tokenizer(template=None)
    with pytest.raises(DistilTuneError, match="has no chat template"):
        encode_lm(rows, plain, "messages", COLS, max_length=64)


def test_text_rows_predict_every_token_and_unlabeled_rows_keep_their_kd_positions(tok):
    rows = Dataset.from_dict({"text": ["the cat sat on the mat.", "once upon a time"], "labels": [0, -100]})
    enc = encode_lm(rows, tok, "text", COLS, max_length=64)
    for row, labelled in zip(enc, (True, False)):
        n = row["length"]
        assert row["response_mask"] == [1] * (n - 1) + [0]
        assert row["labels"] == (row["input_ids"][1:] + [-100] if labelled else [-100] * n)


def test_a_long_response_is_cut_to_max_length_and_long_prompts_are_refused_before_training(tok):
    row = example(list(range(10)), list(range(10, 30)), max_length=16, labelled=True)
    assert row["length"] == 16 and row["labels"][-1] == -100 and row["labels"][-2] == 15
    rows = Dataset.from_dict({"prompt": ["what is 2 plus 3? " * 8, "what is 1 plus 1?"], "response": [" 5.", " 2."]})
    with pytest.raises(DistilTuneError) as err:
        check_prompt_lengths({"train": rows}, tok, "student", "prompt_response", COLS, max_length=20)
    msg = str(err.value)
    assert msg.startswith("1 of 2 train rows have prompts of max_length=20 tokens or more for the student's tokenizer")
    assert "raise max_length above" in msg and "\n" not in msg
    check_prompt_lengths({"train": rows}, tok, "student", "prompt_response", COLS, max_length=200)  # fits: no error


def test_two_templates_of_one_tokenizer_that_render_a_row_differently_are_named():
    a, b = bpe_tokenizer(), bpe_tokenizer(template="<|system|>be brief<|end|>" + bpe_tokenizer().chat_template)
    chat = [{"role": "user", "content": "what is 1 plus 1?"}, {"role": "assistant", "content": "it is 2."}]
    rows = Dataset.from_dict({"messages": [chat]})
    check_same_rendering(rows, a, bpe_tokenizer(), "messages", COLS)  # the same template: no error
    with pytest.raises(DistilTuneError, match="render row 0 to different token ids .first difference at token 0"):
        check_same_rendering(rows, a, b, "messages", COLS)


def test_the_form_comes_from_the_columns():
    assert lm_form(["prompt", "response"]) == "prompt_response"
    assert lm_form(["messages", "text"]) == "messages"
    assert lm_form(["text"]) == "text"
    with pytest.raises(DistilTuneError, match="none of the columns it reads"):
        lm_form(["question", "answer"])
    assert first_difference([1, 2, 3], [1, 2, 3]) is None and first_difference([1, 2], [1, 2, 3]) == 2
