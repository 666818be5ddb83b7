"""distiltune advise: measured shapes, the decision rules, and budgets it cannot meet."""
import json

import pytest

from conftest import tiny_bert
from distiltune.cli import main


@pytest.fixture(scope="module")
def teacher(tmp_path_factory):
    d = tmp_path_factory.mktemp("adv") / "teacher"
    tiny_bert(d, hidden=64, layers=4, heads=2)
    return str(d)


def advise_json(capsys, *argv):
    assert main(["advise", *argv, "--json"]) == 0
    return json.loads(capsys.readouterr().out)


def test_ample_budget_means_fine_tune_the_teacher(teacher, capsys):
    r = advise_json(capsys, "--teacher", teacher, "--latency-ms", "10000", "--size-mb", "1000", "--labelled", "5000")
    assert r["strategy"] == "finetune" and r["student"] is None
    assert "already meets the budget" in r["reasons"][0]


@pytest.mark.parametrize("labelled,strategy", [(5000, "distill_finetune"), (200, "distill")])
def test_size_budget_picks_the_largest_fitting_shape_and_a_distillation_strategy(teacher, capsys, labelled, strategy):
    r = advise_json(capsys, "--teacher", teacher, "--size-mb", "0.1", "--labelled", str(labelled), "--unlabeled", "3000")
    assert r["teacher"]["size_mb_int8_est"] > 0.1 and r["strategy"] == strategy  # not even int8 fits the teacher
    fits = [c for c in r["candidates"] if c["size_mb_fp32"] <= 0.1 or c["size_mb_int8_est"] <= 0.1]
    assert r["student"] == max(fits, key=lambda c: c["params"])
    assert r["student"]["layers"] * r["student"]["hidden"] < 4 * 64
    assert r["estimated_training_hours"] > 0 and "constrained" in r["reasons"][0]


def test_latency_budget_is_met_by_the_measured_student(teacher, capsys):
    r = advise_json(capsys, "--teacher", teacher, "--latency-ms", "1000", "--size-mb", "0.1")
    s = r["student"]
    assert s is not None and s["latency_ms_p50"] <= 1000 and min(s["size_mb_fp32"], s["size_mb_int8_est"]) <= 0.1


@pytest.mark.parametrize("argv,pattern", [
    (["--latency-ms", "0.000001"], "no student shape meets the budget: the fastest measured here is"),
    (["--size-mb", "-3"], "--size-mb -3.0 must be > 0"),
    (["--seq-len", "1"], "--seq-len 1 is out of range"),
])
def test_budgets_it_cannot_meet_or_read(teacher, capsys, argv, pattern):
    code = main(["advise", "--teacher", teacher, *argv])
    err = capsys.readouterr().err
    assert code == 2 and pattern in err and "Traceback" not in err


def test_model_types_it_cannot_shrink(tmp_path, capsys):
    from transformers import GPT2Config

    GPT2Config(n_layer=2, n_embd=32, n_head=2).save_pretrained(tmp_path / "gpt2")
    code = main(["advise", "--teacher", str(tmp_path / "gpt2")])
    err = capsys.readouterr().err
    assert code == 2 and "advise shrinks transformer encoders; " in err and "supported: bert" in err
