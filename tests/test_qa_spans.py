"""Extractive QA building blocks: SQuAD's reader and answer checks, EM/F1 (official definitions),
the best span over windows of a hand-made context, and start/end distributions moved across
tokenizers through character offsets (mass conserved)."""
import json

import numpy as np
import pytest

from distiltune.data.qa_data import check_qa_rows, misplaced_answers, read_squad
from distiltune.errors import DistilTuneError
from distiltune.tasks.qa_spans import best_span, move_distribution, normalize_answer, squad_scores, token_at

CONTEXT = "The Eiffel Tower was finished in 1889 in Paris."


def squad_file(tmp_path, answer_start=33):
    doc = {"version": "1.1", "data": [{"title": "t", "paragraphs": [{"context": CONTEXT, "qas": [
        {"id": "q1", "question": "When was it finished?", "answers": [{"text": "1889", "answer_start": answer_start}]},
        {"id": "q2", "question": "Where is it?", "answers": [{"text": "Paris", "answer_start": 41},
                                                             {"text": "in Paris", "answer_start": 38}]}]}]}]}
    p = tmp_path / "squad.json"
    p.write_text(json.dumps(doc))
    return str(p)


def test_squad_file_becomes_rows_and_answers_are_checked(tmp_path):
    ds = read_squad(squad_file(tmp_path))
    assert ds["id"] == ["q1", "q2"] and ds["context"] == [CONTEXT, CONTEXT]
    assert ds["answers"][1] == {"text": ["Paris", "in Paris"], "answer_start": [41, 38]}
    assert misplaced_answers(ds) == 0
    check_qa_rows(ds, "train", max_length=128, doc_stride=32)
    moved = read_squad(squad_file(tmp_path, answer_start=30))
    with pytest.raises(DistilTuneError, match="1 answers in the test data are not at their answer_start"):
        check_qa_rows(moved, "test", max_length=128, doc_stride=32)
    with pytest.raises(DistilTuneError, match="doc_stride=128 is not below max_length=128"):
        check_qa_rows(ds, "train", max_length=128, doc_stride=128)
    with pytest.raises(DistilTuneError, match="column 'context' is missing"):
        check_qa_rows(ds.remove_columns("context"), "train", max_length=128, doc_stride=32)


def test_squad_metrics_follow_the_official_definitions():
    assert normalize_answer("The  Eiffel-Tower!") == "eiffeltower"
    scores = squad_scores(["in Paris", "1889 in Paris"], [["Paris", "in Paris"], ["1889"]])
    # q1: exact (after normalisation); q2: F1 of {1889} vs {1889, in, paris} = 2 * 1 * 1/3 / (4/3) = 0.5
    assert scores["exact_match"] == pytest.approx(50.0)
    assert scores["f1"] == pytest.approx(100.0 * (1.0 + 0.5) / 2)


def test_best_span_over_windows_respects_context_order_and_length():
    # Two windows over CONTEXT; tokens outside the context have no offsets.
    words = [(m, m + len(w)) for m, w in [(0, "The"), (4, "Eiffel"), (11, "Tower"), (17, "was"), (21, "finished"),
                                          (30, "in"), (33, "1889"), (38, "in"), (41, "Paris")]]
    w1 = [None] + words[:6] + [None]
    w2 = [None] + words[4:] + [None]
    s1, e1 = np.zeros(8), np.zeros(8)
    s2, e2 = np.zeros(7), np.zeros(7)
    s2[3], e2[3] = 5.0, 5.0  # "1889" in the second window
    s2[0] = 9.0              # a question token: never a start
    e2[2] = 7.0              # an end before the best start: not a span with it
    assert best_span([(s1, e1, w1), (s2, e2, w2)]) == (33, 37, 10.0)
    s2[1] = 6.0              # "finished in" (2 tokens, 6 + 7) now beats "1889" (5 + 5) ...
    assert best_span([(s1, e1, w1), (s2, e2, w2)]) == (21, 32, 13.0)
    assert best_span([(s1, e1, w1), (s2, e2, w2)], max_answer_length=1) == (33, 37, 10.0)  # ... unless too long
    assert best_span([(s1, e1, [None] * 8)]) is None


def test_start_and_end_mass_move_to_the_target_token_at_each_characters_end():
    # source: "Eiffel" as one token; target: "Eif" + "fel"
    source = [None, (4, 10), (11, 16)]
    target = [None, (4, 7), (7, 10), (11, 16), None]
    probs = np.array([0.1, 0.6, 0.3])
    start, lost = move_distribution(probs, source, target, "start")
    assert start.tolist() == pytest.approx([0.0, 0.6, 0.0, 0.3, 0.0]) and lost == pytest.approx(0.1)
    end, _ = move_distribution(probs, source, target, "end")
    assert end.tolist() == pytest.approx([0.0, 0.0, 0.6, 0.3, 0.0])
    assert start.sum() + lost == pytest.approx(probs.sum()) and end.sum() + lost == pytest.approx(probs.sum())
    # a character past the target's window has nowhere to go
    short, lost = move_distribution(np.array([0.0, 0.5, 0.5]), source, target[:3], "start")
    assert short.sum() == pytest.approx(0.5) and lost == pytest.approx(0.5)
    assert token_at(10, target) == 3  # the space between tokens: the next token
