"""Final-answer checkers: GSM8K's '#### N', \\boxed{...} and the last number, numbers compared as
written plainly; auto-detection from the gold responses; greedy generation cut at end of sequence."""
from __future__ import annotations

import pytest
import torch

from distiltune.tasks.answers import CHECKERS, detect, is_correct, plain_number


@pytest.mark.parametrize("text,want", [("1,250", "1250"), ("$18", "18"), ("18.00", "18"), ("-3", "-3"), ("0.5", "0.5"),
                                       ("7.", "7"), ("abc", None)])
def test_numbers_are_compared_as_written_plainly(text, want):
    assert plain_number(text) == want


def test_gsm8k_reads_the_number_after_the_marker_not_the_working():
    gold = "Natalia sold 48/2 = <<48/2=24>>24 clips in May.\nAltogether she sold 48+24 = <<48+24=72>>72 clips.\n#### 72"
    assert CHECKERS.get("gsm8k")(gold) == "72"
    assert is_correct("gsm8k", "She sold 24 in May, so 72 in all.\n#### 72", gold)
    assert not is_correct("gsm8k", "She sold 72 clips.", gold)  # no marker: no final answer, however close
    assert not is_correct("gsm8k", "#### 71", gold)
    assert is_correct("gsm8k", "#### $1,000", "#### 1000")


def test_boxed_matches_braces_and_takes_the_last_box():
    read = CHECKERS.get("boxed")
    assert read(r"so \boxed{3} first, then \boxed{\frac{1}{2}}") == r"\frac{1}{2}"
    assert read(r"the answer is \boxed{ 1,024 }") == "1024"
    assert read(r"cut off \boxed{\frac{1}{2") is None


def test_last_number_and_auto_detection():
    assert CHECKERS.get("last_number")("it is 12.") == "12"
    assert CHECKERS.get("last_number")("no digits") is None
    assert detect(["a\n#### 5", "b\n#### 6"]) == "gsm8k"
    assert detect([r"\boxed{5}", r"so \boxed{x+1}"]) == "boxed"
    assert detect(["a\n#### 5", "free text"]) is None  # one gold without an answer: nothing to check reliably
    assert detect([]) is None


def test_unknown_checker_names_the_registered_ones():
    with pytest.raises(KeyError, match="gsm8k"):
        CHECKERS.get("gsm8")


def test_greedy_generate_cuts_at_end_of_sequence_and_keeps_order():
    from transformers import LlamaConfig, LlamaForCausalLM

    from distiltune.models.lm import greedy_generate

    torch.manual_seed(0)
    model = LlamaForCausalLM(LlamaConfig(vocab_size=40, hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                                         num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=64))
    prompts = [[5, 6, 7], [8], [9, 10, 11, 12, 13]]
    alone = [greedy_generate(model, [p], pad_id=0, eos_ids=[], max_new_tokens=6, progress=False)[0] for p in prompts]
    together = greedy_generate(model, prompts, pad_id=0, eos_ids=[], max_new_tokens=6, progress=False)
    assert together == alone and all(len(g) == 6 for g in together)  # left padding changes nothing
    stop = alone[0][2]
    cut = greedy_generate(model, prompts[:1], pad_id=0, eos_ids=[stop], max_new_tokens=6, progress=False)[0]
    assert cut == alone[0][:alone[0].index(stop)]
