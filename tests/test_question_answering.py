"""Extractive QA, unit tier: windows over long contexts and the best span over them, start/end
distributions moved between tokenizers through characters (mass conserved, equal to a direct
computation), SQuAD files, and refused data and models. The runs are in test_question_answering_runs.py."""
import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from transformers import BertForQuestionAnswering, BertTokenizerFast

from distiltune.cli import main
from qa_helpers import args, errors, make_questions, piece_tokenizer, qa, windows_of, word_tokenizer  # noqa: F401 (qa: fixture)
from conftest import write_jsonl


# ---- unit ----

def test_windows_overlap_and_label_the_answer_or_no_answer(tmp_path):
    tok = word_tokenizer(tmp_path / "t")
    ctx = " ".join(f"w{i}" for i in range(14)) + " per3 jr " + " ".join(f"w{i}" for i in range(6))
    start = ctx.index("per3")
    rows = [{"id": "a", "question": "who is", "context": ctx, "answers": {"text": ["per3 jr"], "answer_start": [start]}}]
    win = windows_of(rows, tok, length=12, stride=3)  # [CLS] who is [SEP] + 7 context words + [SEP]
    assert len(win) == 5 and set(win["example"]) == {0}  # 22 words, 7 a window, 4 new ones each
    spans = [[ctx[a:b] for a, b in zip(s, e) if a >= 0] for s, e in zip(win["offset_start"], win["offset_end"])]
    for before, after in zip(spans, spans[1:]):
        assert before[-3:] == after[:3]  # doc_stride tokens shared by consecutive windows
    for w in range(len(win)):
        s, e = win["labels"][w]
        if "per3" in spans[w] and "jr" in spans[w]:
            assert ctx[win["offset_start"][w][s]:win["offset_end"][w][e]] == "per3 jr"
        else:
            assert (s, e) == (0, 0)  # the answer is not (wholly) in this window: [CLS]
        assert win["span_mask"][w][0] == 1 and win["span_mask"][w][1:4] == [0, 0, 0]  # [CLS] yes, question no


def test_best_span_over_windows_recovers_the_answer_from_its_windows(tmp_path):
    """Logits that point at the gold tokens of the one window holding the answer (and at [CLS] in the
    others) give back the exact answer text; scores are SQuAD's."""
    from distiltune.tasks.qa_spans import SpanLabels, span_metrics

    tok = piece_tokenizer(tmp_path / "p")
    rows = make_questions(6, seed=4, words=(15, 25))
    win = windows_of(rows, tok, length=16, stride=4)
    assert len(win) > len(rows)  # long contexts: several windows each
    n = max(len(x) for x in win["input_ids"])
    logits = np.full((len(win), 2, n), -5.0, dtype=np.float32)
    for w, (s, e) in enumerate(win["labels"]):
        logits[w, 0, s] = logits[w, 1, e] = 5.0 if s else 1.0  # a real span beats "no answer" scores
    offsets = [[(a, b) if a >= 0 else None for a, b in zip(s, e)] for s, e in zip(win["offset_start"], win["offset_end"])]
    labels = SpanLabels(np.asarray(win["example"]), offsets, {i: r["context"] for i, r in enumerate(rows)},
                        {i: r["answers"]["text"] for i, r in enumerate(rows)})
    m = span_metrics(logits, labels)
    assert m["exact_match"] == 1.0 and m["f1"] == 1.0
    logits[:, 1] = np.roll(logits[:, 1], 1, axis=-1)  # every end one token later: still the span, never EM
    assert span_metrics(logits, labels)["exact_match"] < 1.0


def test_position_map_follows_move_distribution_and_conserves_mass():
    from distiltune.data.windows import position_map
    from distiltune.tasks.qa_spans import move_distribution

    source = [None, (0, 4), (5, 7), (7, 9), (10, 14), None]   # "per3 w1 2 jr.." style spans
    target = [None, (0, 3), (3, 4), (5, 9), (10, 12), (12, 14), None]
    probs = np.array([0.1, 0.3, 0.2, 0.1, 0.25, 0.05])
    for side in ("start", "end"):
        m = position_map(source, target, side)
        moved, lost = move_distribution(probs, source, target, side)
        ref = np.zeros(len(target))
        for k, j in enumerate(m):
            if j >= 0:
                ref[j] += probs[k]
        assert np.allclose(ref, moved)
        assert moved.sum() + lost == pytest.approx(1.0)
    assert list(position_map(source, target, "start")) == [-1, 1, 3, 3, 4, -1]
    assert list(position_map(source, target, "end")) == [-1, 2, 3, 3, 5, -1]


def test_moved_teacher_distribution_is_exact_at_any_temperature():
    """softmax(moved / T) is the teacher's softened distribution with each token's mass moved whole."""
    from distiltune.models.spans import moved_to_student

    torch.manual_seed(0)
    logits = torch.randn(1, 2, 6)
    where = torch.tensor([[0, 1, 1, 2, -1, 3], [0, 2, 2, 2, -1, 3]])  # several teacher tokens on one student token
    t4 = torch.cat([logits, (where + 1).float()[None]], dim=1)
    for temp in (1.0, 2.0, 4.0):
        got = torch.softmax(moved_to_student(t4, 5, temp) / temp, dim=-1)
        for side in range(2):
            keep = where[side] >= 0
            p = torch.softmax(logits[0, side][keep] / temp, -1)
            want = torch.zeros(5).index_add_(0, where[side][keep], p)
            assert torch.allclose(got[0, side], want, atol=1e-6), (temp, side)
            assert got[0, side].sum().item() == pytest.approx(1.0, abs=1e-6)


def test_span_kd_across_tokenizers_equals_direct_computation(qa):
    """The kd term on a collated batch, teacher live on its own tokens of each student window, against
    KD computed by hand: the teacher's softened start/end distribution moved through characters."""
    from distiltune.data.windows import SpanCollator, encode_teacher_windows
    from distiltune.losses import build_term
    from distiltune.training.forward import forward_all

    t_tok, s_tok = BertTokenizerFast.from_pretrained(qa["teacher"]), BertTokenizerFast.from_pretrained(qa["student"])
    teacher = BertForQuestionAnswering.from_pretrained(qa["teacher"]).eval()
    student = BertForQuestionAnswering.from_pretrained(qa["student"]).eval()
    win = encode_teacher_windows(windows_of(make_questions(3, seed=9, words=(10, 14)), s_tok, 20, 6), t_tok,
                                 "question", "context", 64)
    batch = SpanCollator(s_tok, t_tok)([win[i] for i in range(len(win))])
    term = build_term("kd")
    s_out, t_out, info = forward_all(student, teacher, dict(batch), [term], temperature=2.0)
    got = term(s_out, t_out, info | {"temperature": 2.0})

    per = []
    for i in range(len(win)):
        r = win[i]
        s = student(input_ids=torch.tensor([r["input_ids"]]), token_type_ids=torch.tensor([r["token_type_ids"]]))
        t = teacher(input_ids=torch.tensor([r["teacher_input_ids"]]), token_type_ids=torch.tensor([r["teacher_token_type_ids"]]))
        allowed = torch.tensor(r["span_mask"]).bool()
        for side, (s_l, t_l, m) in enumerate(((s.start_logits[0], t.start_logits[0], r["teacher_start_map"]),
                                              (s.end_logits[0], t.end_logits[0], r["teacher_end_map"]))):
            m = torch.tensor(m)
            keep = m >= 0
            p = torch.zeros(len(r["input_ids"])).index_add_(0, m[keep], torch.softmax(t_l[keep] / 2.0, -1))
            log_q = F.log_softmax(s_l.masked_fill(~allowed, -1e4) / 2.0, -1)
            on = p > 0
            per.append((p[on] * (p[on].log() - log_q[on])).sum() * 4.0)
        assert np.all(np.asarray(r["teacher_start_map"])[np.asarray(r["teacher_start_map"]) >= 0] < len(r["input_ids"]))
    want = torch.stack(per).mean()
    assert got.item() == pytest.approx(want.item(), rel=1e-5)


@pytest.mark.parametrize("case", ["misplaced", "stride", "no_context", "not_squad", "unanswered"])
def test_bad_qa_input_is_one_line_and_writes_nothing(qa, tmp_path, capsys, case):
    d = tmp_path / "data"
    d.mkdir()
    test = make_questions(20, seed=5)
    extra = []
    if case == "misplaced":
        for r in test[:3]:
            r["answers"]["answer_start"][0] += 1
    elif case == "stride":
        extra = ["--doc_stride", "24"]
    elif case == "no_context":
        test = [{k: v for k, v in r.items() if k != "context"} | {"passage": r["context"]} for r in test]
    elif case == "not_squad":
        test[1]["answers"] = "per3"
    else:
        test[2]["answers"] = {"text": [], "answer_start": []}
    qa = dict(qa, files=dict(qa["files"], test=write_jsonl(d / "test.jsonl", test)))
    out = tmp_path / "out"
    assert main(["run", *args(qa, out, *extra)]) == 2
    err = errors(capsys)
    want = {"misplaced": "3 answers in the test data are not at their answer_start",
            "stride": "doc_stride=24 is not below max_length=24", "no_context": "column 'context' is missing",
            "not_squad": "not SQuAD's {'text': [...], 'answer_start': [...]}",
            "unanswered": "1 questions of the test data have no answer"}[case]
    assert len(err) == 1 and want in err[0] and "fix:" in err[0], err
    assert not out.exists()


def test_qa_rows_without_the_task_type_and_models_of_the_other_task_are_refused(qa, tmp_path, capsys):
    from test_token_classification import piece_tokenizer as tagger_tokenizer
    from test_token_classification import tiny_tagger

    out = tmp_path / "out"
    no_task = [a for a in args(qa, out) if a not in ("--task_type", "question_answering")]
    assert main(["run", *no_task]) == 2
    err = errors(capsys)
    assert len(err) == 1 and "holds questions and contexts per row" in err[0] and "task_type: question_answering" in err[0]
    tagger = tiny_tagger(tmp_path / "tagger", tagger_tokenizer(tmp_path / "tagger"), 32, 1, seed=0)
    assert main(["run", *args(dict(qa, teacher=tagger), out)]) == 2
    err = errors(capsys)
    assert len(err) == 1 and "is a token classifier (BertForTokenClassification), but this task needs a " \
        "question-answering model" in err[0], err
    from test_token_classification import make_sentences

    words = {s: write_jsonl(tmp_path / f"{s}.jsonl", make_sentences(30, i)) for i, s in enumerate(("train", "validation", "test"))}
    ner = ["run", "--task_type", "token_classification", "--train_file", words["train"], "--validation_file",
           words["validation"], "--test_file", words["test"], "--teacher", qa["teacher"], "--student", tagger,
           "--output_dir", str(out), "--report_to", "none"]
    assert main(ner) == 2
    err = errors(capsys)
    assert len(err) == 1 and "is a question-answering model (BertForQuestionAnswering), but this task needs a " \
        "token classifier" in err[0], err
    assert not out.exists()


def test_squad_json_and_its_unittest_file_are_read(tmp_path):
    """The official layout (data -> paragraphs -> qas) as rows; the 10-question file shipped with the
    SQuAD package when it is in the cache (fetched by demo:squad)."""
    from distiltune.data.qa_data import _read_qa

    doc = {"version": "1.1", "data": [{"title": "t", "paragraphs": [{"context": "w1 per3 w2", "qas": [
        {"id": "x", "question": "who is", "answers": [{"text": "per3", "answer_start": 3}]}]}]}]}
    path = tmp_path / "squad.json"
    path.write_text(json.dumps(doc))
    ds = _read_qa(str(path), "train_file")
    assert ds[0] == {"id": "x", "question": "who is", "context": "w1 per3 w2",
                     "answers": {"text": ["per3"], "answer_start": [3]}}
    lines = tmp_path / "rows.json"  # JSON lines under a .json name: the table reader
    lines.write_text("\n".join(json.dumps(r) for r in make_questions(3, seed=1)))
    assert len(_read_qa(str(lines), "train_file")) == 3
    from distiltune.assets import cache_dir

    shipped = cache_dir() / "squad" / "unittest-squad.json"
    if shipped.is_file():
        from distiltune.data.qa_data import misplaced_answers

        rows = _read_qa(str(shipped), "test_file")
        assert len(rows) == 10 and misplaced_answers(rows) == 0


def test_int8_agreement_floor_is_the_users_else_the_tasks():
    from distiltune.export.options import export_options, floor

    opts = export_options("onnx:int8")
    assert floor(opts, "int8", "qa") == 0.70 and floor(opts, "int8", "text") == 0.97 and floor(opts, "fp32", "qa") == 0.999
    assert floor(export_options({"format": "onnx", "quantize": "int8", "min_agreement_int8": 0.9}), "int8", "qa") == 0.9


def test_token_level_terms_across_tokenizers_are_refused_before_any_work(qa, tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["run", *args(qa, out, "--preset", "tinybert")]) == 2
    err = errors(capsys)
    assert len(err) == 1 and "tokenizers differ" in err[0] and "from_teacher" in err[0], err
    assert not out.exists()


def test_an_online_teacher_is_refused_for_qa(qa, tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["run", *args(qa, out, "--online_teacher_lr", "1e-4")]) == 2
    err = errors(capsys)
    assert len(err) == 1 and "task_type question_answering: online_teacher_lr" in err[0], err
    assert not out.exists()
