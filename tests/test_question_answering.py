"""Extractive QA: windows over long contexts and the best span over them, start/end distributions
moved between tokenizers through characters (mass conserved, equal to a direct computation), SQuAD
files and refused data, and a run in which the distilled tiny student beats its baseline."""
import json
import os
import random

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from transformers import BertConfig, BertForQuestionAnswering, BertTokenizerFast

from conftest import SPECIAL
from distiltune.cli import main

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


def write_jsonl(path, rows):
    with open(path, "w") as f:
        for r in rows:
            f.write(json.dumps(r) + "\n")
    return str(path)


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
            "--mixed_precision", "no", "--report_to", "none", *extra]


# ---- unit ----

def windows_of(rows, tok, length, stride):
    from datasets import Dataset

    from distiltune.data.qa_data import _rows
    from distiltune.data.windows import encode_windows

    class Cfg:
        question_column, context_column, answers_column = "question", "context", "answers"

    ds = _rows(Dataset.from_list(rows), Cfg, "test", answered=True)
    return encode_windows(ds, tok, "question", "context", length, stride)


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


def errors(capsys) -> list[str]:
    return [line for line in capsys.readouterr().err.splitlines() if line.startswith("distiltune: error:")]


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
    from test_token_classification import write_jsonl as write_words

    words = {s: write_words(tmp_path / f"{s}.jsonl", make_sentences(30, i)) for i, s in enumerate(("train", "validation", "test"))}
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


# ---- e2e ----

@pytest.fixture(scope="module")
def qa_run(qa, tmp_path_factory):
    """The teacher fine-tuned on 600 questions; the student and its baseline have 40 of them, the
    student also the other 560 through the teacher (its own tokenizer, moved through characters)."""
    taught = tmp_path_factory.mktemp("qa_teacher")
    code = main(["finetune", *args(dict(qa, student=qa["teacher"]), taught, "--num_train_epochs", "4", "--max_length", "48",
                                   "--learning_rate", "3e-3", "--per_device_train_batch_size", "16")])
    assert code == 0
    out = tmp_path_factory.mktemp("qa_run")
    code = main(["run", *args(dict(qa, teacher=str(taught / "student")), out, "--num_labeled", "40", "--num_train_epochs", "4",
                              "--learning_rate", "3e-3", "--per_device_train_batch_size", "16", "--final_finetune_epochs", "1",
                              "--export", json.dumps({"format": "onnx", "quantize": "int8", "min_agreement_int8": 0.5}))])
    assert code == 0
    return out


def test_distilled_reader_beats_its_baseline_across_tokenizers(qa_run):
    report = json.loads((qa_run / "report.json").read_text())
    m = report["models"]
    assert report["metric"] == "f1"
    assert m["teacher"]["metric"] >= 0.9, m["teacher"]
    assert m["student"]["metric"] >= m["baseline_student"]["metric"] + 0.05, {k: v["metric"] for k, v in m.items()}
    assert {"exact_match", "f1_len_1", "em_len_2"} <= set(m["student"]["metrics"])
    assert m["student"]["metrics"]["exact_match"] <= m["student"]["metrics"]["f1"]
    assert report["task"] == "question_answering (answer spans)"
    assert report["plots"]["by_answer_length"] == os.path.join("plots", "by_answer_length.png")
    assert (qa_run / "plots" / "by_answer_length.png").is_file()
    assert "f1_per_type" not in report["plots"]  # answer-length buckets are not entity types


def test_saved_reader_loads_with_transformers_auto_classes(qa_run):
    """transformers 5 removed the question-answering pipeline; the folder loads with its auto classes
    (and the model card says so)."""
    from transformers import AutoModelForQuestionAnswering, AutoTokenizer

    teacher = json.loads((qa_run / "report.json").read_text())["models"]["teacher"]["path"]
    model, tok = AutoModelForQuestionAnswering.from_pretrained(teacher), AutoTokenizer.from_pretrained(teacher)
    context = "w1 w2 per3 jr w4 loc5 w6"
    enc = tok("who is the", context, return_tensors="pt", return_offsets_mapping=True)
    offsets = enc.pop("offset_mapping")[0]
    with torch.no_grad():
        out = model(**enc)
    start, end = int(out.start_logits[0].argmax()), int(out.end_logits[0].argmax())
    assert context[offsets[start][0]:offsets[end][1]] == "per3 jr"
    student = qa_run / "student"
    assert AutoModelForQuestionAnswering.from_pretrained(str(student)).config.architectures == ["BertForQuestionAnswering"]
    card = (student / "README.md").read_text()
    assert "pipeline_tag: question-answering" in card and "AutoModelForQuestionAnswering" in card


def test_exported_reader_agrees_and_predict_prints_the_answer_span(qa_run, capsys):
    report = json.loads((qa_run / "report.json").read_text())
    onnx = report["models"]["student_onnx"]
    assert onnx["agreement"] >= 0.99 and onnx["metric"] == pytest.approx(report["models"]["student"]["metric"], abs=0.01)
    assert "student_int8" in report["models"] and "agreement" in report["models"]["student_int8"]
    meta = json.loads((qa_run / "student_onnx" / "distiltune_export.json").read_text())
    assert meta["kind"] == "qa" and meta["doc_stride"] == 8 and meta["max_length"] == 24
    teacher_export = qa_run / "teacher_onnx"  # the teacher knows the task well: its answers can be checked
    teacher = report["models"]["teacher"]["path"]
    assert main(["export", "--model", teacher, "--output-dir", str(teacher_export),
                 "--config", str(qa_run / "config.yaml")]) == 0
    capsys.readouterr()
    context = "w1 w2 w3 per3 jr w4 w5 w6 w7 w8 w9 w10 w11 w12 w13 w14 w15 loc5 w16"  # longer than one window
    assert main(["predict", "--model", str(teacher_export), "--json", f"who is the\t{context}",
                 f"where is the\t{context}"]) == 0
    found = [json.loads(line) for line in capsys.readouterr().out.strip().splitlines()]
    assert [(f["answer"], context[f["start"]:f["end"]]) for f in found] == [("per3 jr", "per3 jr"), ("loc5", "loc5")], found


def test_compare_on_qa_shares_the_teacher_and_distillation_beats_labels_alone(qa, qa_run, tmp_path):
    """compare on the QA task: the given (trained) teacher is shared, and with 40 labels distilling
    beats fine-tuning the same student on them alone."""
    teacher = json.loads((qa_run / "report.json").read_text())["models"]["teacher"]["path"]
    out = tmp_path / "cmp"
    code = main(["compare", "--seeds", "1", "--strategies", "finetune", "distill",
                 *args(dict(qa, teacher=teacher), out, "--num_labeled", "40", "--num_train_epochs", "4",
                       "--learning_rate", "3e-3", "--per_device_train_batch_size", "16", "--disable_tqdm", "true")])
    assert code == 0
    r = json.loads((out / "compare.json").read_text())
    assert r["strategies"]["distill"]["metric"]["mean"] > r["strategies"]["finetune"]["metric"]["mean"] + 0.05, r
    assert r["teacher"]["metric"] >= 0.9


def test_two_processes_distil_qa_like_one(qa, qa_run, tmp_path):
    """torchrun with two CPU processes on the QA task: the run finishes, its report and folders are
    written once, and the student learns as in one process (same global batch)."""
    import subprocess
    import sys

    teacher = json.loads((qa_run / "report.json").read_text())["models"]["teacher"]["path"]
    env = dict(os.environ, HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false", OMP_NUM_THREADS="1", CUDA_VISIBLE_DEVICES="")
    env["PYTHONPATH"] = os.pathsep.join([os.path.dirname(os.path.dirname(os.path.abspath(__file__))), env.get("PYTHONPATH", "")])
    common = ["distill", *args(dict(qa, teacher=teacher), None, "--num_labeled", "40", "--num_train_epochs", "3",
                               "--learning_rate", "3e-3", "--disable_tqdm", "true", "--baseline", "false")]
    outs = {}
    for name, launcher, batch in (("one", [sys.executable, "-m", "distiltune.cli"], "16"),
                                  ("two", [os.path.join(os.path.dirname(sys.executable), "torchrun"), "--nproc_per_node",
                                           "2", "-m", "distiltune.cli"], "8")):
        out = tmp_path / name
        argv = [a if a != "None" else str(out) for a in common] + ["--per_device_train_batch_size", batch]
        done = subprocess.run(launcher + argv, env=env, capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, (done.stdout[-2000:], done.stderr[-3000:])
        outs[name] = json.loads((out / "report.json").read_text())["models"]["student"]["metric"]
    assert outs["two"] == pytest.approx(outs["one"], abs=0.05), outs
    assert outs["two"] > 0.3, outs  # the baseline on the 40 labels alone: about 0.14 (test_distilled_reader_...)


def test_token_level_terms_across_tokenizers_are_refused_before_any_work(qa, tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["run", *args(qa, out, "--preset", "tinybert")]) == 2
    err = errors(capsys)
    assert len(err) == 1 and "tokenizers differ" in err[0] and "from_teacher" in err[0], err
    assert not out.exists()


def test_from_teacher_reader_takes_feature_terms_on_aligned_positions(qa, qa_run, tmp_path):
    """Same tokenizer (one layer of the teacher, its embeddings and span head): token positions align,
    so the hidden-state term of the distilbert preset runs beside KD, and the reader stays as good as
    its teacher-initialised baseline (which starts from the trained teacher's own head)."""
    teacher = json.loads((qa_run / "report.json").read_text())["models"]["teacher"]["path"]
    out = tmp_path / "ft"
    code = main(["run", *args(dict(qa, teacher=teacher, student="from_teacher"), out, "--student_layers", "1",
                              "--preset", "distilbert", "--num_labeled", "40", "--num_train_epochs", "4",
                              "--learning_rate", "3e-3", "--per_device_train_batch_size", "16", "--disable_tqdm", "true")])
    assert code == 0
    m = json.loads((out / "report.json").read_text())["models"]
    assert m["student"]["metric"] >= 0.9 and m["student"]["metric"] >= m["baseline_student"]["metric"] - 0.02, m
    log = json.loads((out / "logs" / "distill.json").read_text())
    assert any(e.get("loss_hidden_cosine", 0) > 0 for e in log)


def test_validation_during_training_reports_squad_scores(qa, tmp_path):
    """eval_strategy epoch on a QA fine-tune: validation is scored as the test split is (windows joined
    per question, SQuAD's F1), and load_best_model_at_end keeps the best epoch by it."""
    out = tmp_path / "ft"
    code = main(["finetune", *args(dict(qa, student=qa["teacher"]), out, "--num_train_epochs", "3", "--max_length", "48",
                                   "--learning_rate", "3e-3", "--per_device_train_batch_size", "16", "--eval_strategy",
                                   "epoch", "--save_strategy", "epoch", "--load_best_model_at_end", "true",
                                   "--disable_tqdm", "true")])
    assert code == 0
    evals = [e for e in json.loads((out / "logs" / "student.json").read_text()) if "eval_f1" in e]
    assert len(evals) == 3 and all(0.0 <= e["eval_f1"] <= 1.0 and e["eval_exact_match"] <= e["eval_f1"] for e in evals)
    assert evals[-1]["eval_f1"] > evals[0]["eval_f1"] or evals[0]["eval_f1"] > 0.9, evals
    r = json.loads((out / "report.json").read_text())
    assert r["checkpoint_selection"]["student"]["metric"] == "f1"


def test_advise_takes_a_qa_teacher(qa, capsys):
    """advise measures shapes of the teacher's encoder: a QA teacher (span head) works as a classifier does."""
    assert main(["advise", "--teacher", qa["teacher"], "--size-mb", "0.075", "--labelled", "600", "--unlabeled", "2400",
                 "--seq-len", "24", "--json"]) == 0
    r = json.loads(capsys.readouterr().out)
    assert r["strategy"] == "distill" and r["student"] is not None, r


def test_resume_of_a_finished_qa_run_reuses_every_stage(qa, qa_run):
    """--resume with unchanged inputs: no stage trains again (model files untouched), the teacher
    cache is reused, and the scores are the same."""
    before = json.loads((qa_run / "report.json").read_text())["models"]
    stamps = {name: (qa_run / name / "model.safetensors").stat().st_mtime_ns for name in ("student", "baseline_student")}
    teacher = before["teacher"]["path"]
    code = main(["run", *args(dict(qa, teacher=teacher), qa_run, "--num_labeled", "40", "--num_train_epochs", "4",
                              "--learning_rate", "3e-3", "--per_device_train_batch_size", "16", "--final_finetune_epochs", "1",
                              "--export", json.dumps({"format": "onnx", "quantize": "int8", "min_agreement_int8": 0.5}),
                              "--resume")])
    assert code == 0
    after = json.loads((qa_run / "report.json").read_text())["models"]
    assert {n: (qa_run / n / "model.safetensors").stat().st_mtime_ns for n in stamps} == stamps
    assert {n: after[n]["metric"] for n in ("student", "baseline_student")} == \
        {n: before[n]["metric"] for n in ("student", "baseline_student")}
