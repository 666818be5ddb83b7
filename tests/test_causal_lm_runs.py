"""The causal-LM task through the CLI on tiny Llama models built here: a teacher that learnt a small
arithmetic task teaches a smaller student through its cached per-token top-k, the student beats the
same student trained on the labelled responses alone, the saved folder generates with transformers'
pipeline, and bad input gets one line before anything is written."""
from __future__ import annotations

import json
import os
import random

import pytest

from conftest import FIXED
from distiltune.cli import main
from lm_helpers import bpe_tokenizer, tiny_llama

COMMON = ["--task_type", "causal_lm", "--max_length", "32", "--per_device_train_batch_size", "16",
          "--learning_rate", "3e-3", "--disable_tqdm", "true", *FIXED]


def write_rows(path, n=400, seed=0, response=True):
    rng = random.Random(seed)
    with open(path, "w") as f:
        for _ in range(n):
            a, b = rng.randrange(10), rng.randrange(10)
            row = {"prompt": f"what is {a} plus {b}?"}
            if response:
                row["response"] = f" it is {a + b}."
            f.write(json.dumps(row) + "\n")
    return str(path)


def save_model(path, hidden, layers, seed, tok=None):
    tok = tok or bpe_tokenizer()
    tiny_llama(len(tok), hidden=hidden, layers=layers, seed=seed).save_pretrained(path)
    tok.save_pretrained(path)
    return str(path)


@pytest.fixture(scope="module")
def lm_task(tmp_path_factory):
    """Rows, a teacher fine-tuned on all of them (SFT through the CLI itself) and a fresh small student."""
    d = tmp_path_factory.mktemp("lm")
    rows = write_rows(d / "train.jsonl")
    base = save_model(d / "base", 64, 4, seed=0)
    out = d / "teacher_run"
    assert main(["run", "--train_file", rows, "--teacher", base, "--student", base, "--strategy", "finetune",
                 "--num_train_epochs", "8", "--output_dir", str(out), "--baseline", "false", *COMMON]) == 0
    return {"rows": rows, "teacher": str(out / "student"), "student": save_model(d / "student", 32, 2, seed=5), "dir": d}


def test_distilled_student_beats_the_same_student_on_the_labels_alone(lm_task, tmp_path):
    out = tmp_path / "run"
    assert main(["run", "--train_file", lm_task["rows"], "--teacher", lm_task["teacher"], "--student", lm_task["student"],
                 "--num_labeled", "40", "--num_train_epochs", "6", "--output_dir", str(out), "--answer_checker",
                 "last_number", "--generation_samples", "60", *COMMON]) == 0
    report = json.loads((out / "report.json").read_text())
    models = report["models"]
    # measured: teacher 0.870, student 0.817, baseline 0.670 (token accuracy on the gold responses)
    assert models["teacher"]["metric"] > models["student"]["metric"] > models["baseline_student"]["metric"] + 0.01
    assert report["schedules"]["temperature"] == "constant 1.0"  # causal_lm's default, not the classifiers' 4.0
    for name in ("teacher", "student", "baseline_student"):
        m = models[name]["metrics"]
        assert m["perplexity"] == pytest.approx(2.718281828 ** m["nll"], rel=1e-6) and m["tokens"] > 0
    assert models["student"]["metrics"]["perplexity"] < models["baseline_student"]["metrics"]["perplexity"]
    # distilled, the student's next-token distributions sit closer to the teacher's than its twin's do
    s, b = models["student"]["metrics"], models["baseline_student"]["metrics"]
    assert s["kl_to_teacher"] < b["kl_to_teacher"] and s["top1_agreement"] > b["top1_agreement"], (s, b)
    t = models["teacher"]["metric"]
    want = (models["student"]["metric"] - models["baseline_student"]["metric"]) / (t - models["baseline_student"]["metric"])
    assert report["gap_recovered"] == pytest.approx(want) and 0 < report["gap_recovered"] < 1
    for name in ("teacher", "student", "baseline_student"):  # greedy generation with the KV cache, side by side
        g = models[name]["generation"]
        assert g["prefill_ms_batch1"] > 0 and g["decode_tokens_per_s_batch1"] > 0 and g["decode_tokens_per_s_batch8"] > 0
    # greedy answers to 60 test prompts, read by the last-number checker (measured: teacher 0.35, student 0.03,
    # baseline 0: a one-token answer after a few tokens of preamble is where the small models slip)
    gen = report["generations"]
    assert gen["checker"] == "last_number" and gen["rows"] == 60
    acc = {n: models[n]["metrics"]["answer_accuracy"] for n in models}
    assert acc["teacher"] > acc["baseline_student"] and acc["student"] >= acc["baseline_student"], acc
    assert all(models[n]["metrics"]["answers_checked"] == 60 for n in models)
    assert len(gen["examples"]) == 3 and all({"prompt", "gold", *models} <= set(ex) for ex in gen["examples"])
    assert gen["examples"][0]["prompt"].startswith("what is ")
    md = (out / "report.md").read_text()
    assert "| perplexity |" in md and "## Generations side by side" in md and "answer accuracy of greedy" in md
    from transformers import pipeline

    generated = pipeline("text-generation", model=str(out / "student"))("what is 2 plus 3?", max_new_tokens=6,
                                                                          do_sample=False)[0]["generated_text"]
    assert generated.startswith("what is 2 plus 3?") and len(generated) > len("what is 2 plus 3?")


def _refused(argv, capsys, tmp_path):
    out = tmp_path / "out"
    code = main(argv + ["--output_dir", str(out)])
    err = capsys.readouterr().err
    assert code == 2 and not out.exists(), err
    assert "Traceback" not in err and err.count("-> fix:") >= 1
    return err


def test_bad_input_is_refused_in_one_line_before_anything_is_written(lm_task, tmp_path, capsys):
    rows, teacher, student = lm_task["rows"], lm_task["teacher"], lm_task["student"]
    other = save_model(tmp_path / "other_tok", 32, 2, seed=1, tok=bpe_tokenizer(vocab_size=400))
    auto = COMMON[2:]  # no task_type: the teacher's architecture (LlamaForCausalLM) makes the task causal_lm
    err = _refused(["run", "--train_file", rows, "--teacher", teacher, "--student", other, *auto], capsys, tmp_path)
    assert "different tokenizers" in err and "sequence_kd: true" in err
    long = tmp_path / "long.jsonl"
    with open(rows) as f, open(long, "w") as g:  # every 50th prompt asked three times over (18 tokens)
        for i, line in enumerate(f):
            row = json.loads(line)
            row["prompt"] = row["prompt"] * (3 if i % 50 == 0 else 1)
            g.write(json.dumps(row) + "\n")
    err = _refused(["run", "--train_file", str(long), "--teacher", teacher, "--student", student, *COMMON,
                    "--max_length", "12"], capsys, tmp_path)
    assert "rows have prompts of max_length=12 tokens or more for the student's tokenizer (the longest: 18)" in err
    err = _refused(["run", "--train_file", rows, "--teacher", teacher, "--student", student, *COMMON,
                    "--losses", "hidden_mse:0.5"], capsys, tmp_path)
    assert "loss term 'hidden_mse' is not available for causal_lm" in err
    err = _refused(["run", "--train_file", rows, "--teacher", teacher, "--student", student, *COMMON,
                    "--export", '{"format": "onnx"}'], capsys, tmp_path)
    assert "ONNX export of causal LMs is not built" in err
    prompts = write_rows(tmp_path / "prompts.jsonl", n=50, response=False)
    err = _refused(["run", "--train_file", rows, "--test_file", prompts, "--teacher", teacher, "--student", student,
                    *COMMON], capsys, tmp_path)
    assert "the test data has no 'response' column, but test rows are scored on their gold responses" in err
    short = tmp_path / "short_head"  # an output layer with fewer rows than its tokenizer has tokens
    tok = bpe_tokenizer()
    tiny_llama(len(tok) - 5, hidden=32, layers=2).save_pretrained(short)
    tok.save_pretrained(short)
    err = _refused(["run", "--train_file", rows, "--teacher", teacher, "--student", str(short), *COMMON],
                   capsys, tmp_path)
    assert f"has {len(tok) - 5} output rows but its tokenizer has {len(tok)} tokens" in err
    both = ["run", "--train_file", rows, "--teacher", teacher, "--student", student, *COMMON]
    err = _refused(both + ["--teacher_cache_topk", str(len(tok) + 1)], capsys, tmp_path)
    assert f"teacher_cache_topk={len(tok) + 1} is more than the {len(tok)} tokens" in err
    err = _refused(both + ["--teacher_cache_topk", "0"], capsys, tmp_path)
    assert "teacher_cache_topk=0 must be >= 1" in err
    err = _refused(both + ["--prompt_column", "question"], capsys, tmp_path)
    assert "none of the columns it reads (columns: prompt, response)" in err
    err = _refused(["run", "--train_file", write_rows(tmp_path / "prompts_only.jsonl", n=50, response=False),
                    "--teacher", teacher, "--student", student, *COMMON], capsys, tmp_path)
    assert "none of the columns it reads (columns: prompt)" in err  # the response column is missing
    empty = tmp_path / "empty_answers.jsonl"
    empty.write_text("".join(json.dumps({"prompt": f"what is {i} plus 1?", "response": ""}) + "\n" for i in range(50)))
    err = _refused(["run", "--train_file", str(empty), "--teacher", teacher, "--student", student, *COMMON],
                   capsys, tmp_path)
    assert "column 'response' is empty in every row of the training data" in err
    err = _refused(both + ["--student", "from_teacher", "--student_layers", "0", "7"], capsys, tmp_path)
    assert "7" in err and "layer" in err
    from transformers import BertConfig, BertForSequenceClassification

    encoder = tmp_path / "encoder"
    BertForSequenceClassification(BertConfig(vocab_size=len(tok), hidden_size=32, num_hidden_layers=1,
                                             num_attention_heads=2, intermediate_size=64)).save_pretrained(encoder)
    tok.save_pretrained(encoder)
    err = _refused(both + ["--student", str(encoder)], capsys, tmp_path)
    assert "is a BertForSequenceClassification, not a causal language model" in err
    fake = tmp_path / "model.gguf"
    fake.write_text("not a model")
    err = _refused(both + ["--teacher", str(fake)], capsys, tmp_path)
    assert "is not a GGUF file (it does not begin with the bytes 'GGUF')" in err
    fake.write_bytes(b"GGUF" + bytes(60))  # the magic, then no model
    err = _refused(both + ["--teacher", str(fake)], capsys, tmp_path)
    assert "could not read" in err and "as a causal language model" in err
    err = _refused(both + ["--teacher", str(tmp_path / "absent.gguf")], capsys, tmp_path)
    assert "absent.gguf' does not exist" in err
    err = _refused(both + ["--sequence_kd", "true"], capsys, tmp_path)  # every row keeps its gold response
    assert "sequence_kd: every training row keeps its gold response" in err
    err = _refused(both + ["--sequence_kd", "true", "--strategy", "finetune"], capsys, tmp_path)
    assert "sequence_kd needs a teacher to answer the prompts" in err
    err = _refused(both + ["--sequence_kd", "true", "--num_labeled", "40", "--sequence_kd_temperature", "-1"], capsys,
                   tmp_path)
    assert "sequence_kd_temperature=-1.0 must be >= 0" in err
    err = _refused(both + ["--generation_samples", "-1"], capsys, tmp_path)
    assert "generation_samples=-1 must be >= 0" in err
    assert os.path.isdir(lm_task["teacher"])


def test_sequence_kd_teaches_a_student_with_another_tokenizer_through_the_teachers_answers(lm_task, tmp_path):
    """Across tokenizers token-level KD is undefined; with sequence_kd the teacher answers the 266 prompts
    past num_labeled once (kept in the run), and the student learns those answers by cross-entropy."""
    other = save_model(tmp_path / "other_tok", 32, 2, seed=5, tok=bpe_tokenizer(vocab_size=400))
    out = tmp_path / "run"
    assert main(["run", "--train_file", lm_task["rows"], "--teacher", lm_task["teacher"], "--student", other,
                 "--num_labeled", "40", "--num_train_epochs", "6", "--output_dir", str(out), "--sequence_kd", "true",
                 "--generation_samples", "0", *COMMON]) == 0
    report = json.loads((out / "report.json").read_text())
    models = report["models"]
    # measured: teacher 0.870, student 0.810, baseline 0.773 (token accuracy on the gold test responses)
    assert models["student"]["metric"] > models["baseline_student"]["metric"] + 0.02, models
    assert "kl_to_teacher" not in models["student"]["metrics"]  # no shared vocabulary to compare over
    files = os.listdir(out / "cache" / "answers")
    lines = (out / "cache" / "answers" / files[0]).read_text().splitlines()
    # one line per distinct prompt (the 266 rows ask 92 distinct sums: a repeated prompt is answered once)
    assert len(files) == 1 and len({json.loads(line)["key"] for line in lines}) == len(lines) > 50
    answers = [json.loads(line)["answer"] for line in lines]
    assert sum(a.strip().startswith("it is") for a in answers) > 0.9 * len(answers)  # the teacher's own words


def test_teacher_answers_resume_after_a_kill_and_equal_an_uninterrupted_build(tmp_path):
    from distiltune.data.teacher_answers import teacher_answers

    prompts = [[i, i + 1] for i in range(10)]
    asked = []

    def generate(batch):
        asked.extend(batch)
        return [f"answer {p[0]}" for p in batch]

    whole = teacher_answers(str(tmp_path / "a" / "answers.jsonl"), prompts, generate, batch_size=3, log=lambda *_: None)

    def killed(batch):
        if len(asked) >= 6:
            raise KeyboardInterrupt
        return generate(batch)

    path = tmp_path / "b" / "answers.jsonl"
    asked.clear()
    with pytest.raises(KeyboardInterrupt):
        teacher_answers(str(path), prompts, killed, batch_size=3, log=lambda *_: None)
    with open(path, "a") as f:
        f.write('{"key": "cut off by the ki')  # a line the kill left half-written
    asked.clear()
    again = teacher_answers(str(path), prompts, generate, batch_size=3, log=lambda *_: None)
    assert again == whole and len(asked) == 4  # 6 answered before the kill are kept; only the other 4 are asked
    asked.clear()
    assert teacher_answers(str(path), prompts, generate, log=lambda *_: None) == whole and not asked


def test_lora_trains_adapters_and_saves_merged_plain_models(lm_task, tmp_path):
    """teacher_lora / student_lora: peft adapters on every linear layer, merged when the stage ends, so
    the saved folders are plain models of the base architecture: the embeddings (which LoRA leaves
    alone) equal the base's bit for bit, the linear weights moved, and the models learnt the task."""
    import torch
    from safetensors.torch import load_file
    from transformers import AutoModelForCausalLM

    base = lm_task["teacher"]  # LoRA adapts a trained model: the teacher that learnt the task, trained on again
    out = tmp_path / "run"
    assert main(["run", "--train_file", lm_task["rows"], "--teacher", base, "--finetune_teacher", "yes",
                 "--teacher_lora", '{"r": 8, "alpha": 16}', "--teacher_num_train_epochs", "4",
                 "--student", "from_teacher", "--student_layers", "0", "2", "--student_lora", "true",
                 "--num_labeled", "40", "--num_train_epochs", "4", "--generation_samples", "0",
                 "--output_dir", str(out), *COMMON]) == 0
    models = json.loads((out / "report.json").read_text())["models"]
    before = load_file(os.path.join(base, "model.safetensors"))
    for name in ("teacher", "student", "baseline_student"):
        folder = out / name
        assert not (folder / "adapter_config.json").exists()
        weights = load_file(str(folder / "model.safetensors"))
        assert torch.equal(weights["model.embed_tokens.weight"], before["model.embed_tokens.weight"]), name
        assert not torch.equal(weights["model.layers.0.self_attn.q_proj.weight"],
                               before["model.layers.0.self_attn.q_proj.weight"]), name
        assert type(AutoModelForCausalLM.from_pretrained(folder)).__name__ == "LlamaForCausalLM"
    # measured: teacher 0.870, student 0.857, baseline 0.860 (token accuracy; both students start from two of
    # the trained teacher's layers, so the task is nearly known before either trains)
    assert models["teacher"]["metric"] > 0.8 and min(models[n]["metric"] for n in models) > 0.7, models


def test_lora_settings_are_checked_before_anything_is_written(lm_task, tmp_path, capsys):
    both = ["run", "--train_file", lm_task["rows"], "--teacher", lm_task["teacher"], "--student", lm_task["student"],
            *COMMON]
    err = _refused(both + ["--student_lora", '{"r": 0}'], capsys, tmp_path)
    assert "student_lora r=0 must be a whole number >= 1" in err
    err = _refused(both + ["--teacher_lora", '{"rank": 8}'], capsys, tmp_path)
    assert "teacher_lora has an unknown key 'rank'" in err
    err = _refused(both + ["--teacher_lora", "{r: 8"], capsys, tmp_path)
    assert "is not valid JSON" in err
