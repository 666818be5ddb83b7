"""The config's own field groups (data, models, strategy), each field with its help text and, where
it has them, its choices (presets and logit losses come from their registries)."""
from __future__ import annotations

from dataclasses import dataclass, field

from ..losses.logits import logit_loss_names
from ..losses.presets import PRESETS
from ..schedules import KINDS, UNITS

STRATEGIES = ("finetune", "distill", "distill_finetune")
METRICS = ("auto", "accuracy", "f1", "matthews", "pearson", "spearman", "entity_f1", "token_accuracy", "exact_match")
LM_METRICS = ("token_accuracy",)  # causal_lm: higher is better (plateau, retention); perplexity is reported beside
STOPS = ("plateau", "fixed")
TASK_TYPES = ("auto", "classification", "regression", "token_classification", "question_answering", "causal_lm")


def _f(default, help, **kw):
    return field(default=default, metadata={"help": help, **kw})


def _lf(help):
    return field(default=None, metadata={"help": help})


@dataclass
class DataArguments:
    dataset_name: str | None = _f(None, "Hub dataset name (needs internet), or 'demo:rotten_tomatoes' for the bundled demo data.")
    dataset_config_name: str | None = _f(None, "Hub dataset configuration, e.g. 'sst2' for dataset_name 'glue'.")
    train_file: str | None = _f(None, "Local training file (.csv, .json, .jsonl or .parquet).")
    validation_file: str | None = _f(None, "Local validation file; a seeded split of train is used when absent.")
    test_file: str | None = _f(None, "Local test file; a seeded split of train is used when absent.")
    unlabeled_file: str | None = _f(None, "Local file of unlabeled text the student learns from through the teacher alone.")
    text_column: str = _f("text", "Column holding the text (first sentence for pairs).")
    input_column: str | None = _f(None, "For any nn.Module (not text): the dataset column fed to the network, e.g. "
                                        "pixel_values; teacher/student are then factories 'file.py:function'.")
    text_pair_column: str | None = _f(None, "Second sentence column for sentence-pair tasks (GLUE-style), else none.")
    label_column: str = _f("label", "Column holding the label (class name/id, or a number for regression).")
    task_type: str = _f("auto", "'classification', 'regression', 'token_classification' (a tag per word: NER), "
                                "'question_answering' (extractive: an answer span of a context), 'causal_lm' (a decoder "
                                "LLM learns responses or text, token-level KD over the vocabulary), or 'auto' (float "
                                "labels mean regression).", choices=list(TASK_TYPES))
    tokens_column: str = _f("tokens", "token_classification: the column holding each row's words (a list).")
    tags_column: str = _f("ner_tags", "token_classification: the column holding one tag per word (IOB2 names or ids).")
    question_column: str = _f("question", "question_answering: the column holding the question.")
    context_column: str = _f("context", "question_answering: the column holding the context the answer is taken from.")
    answers_column: str = _f("answers", "question_answering: the column holding the answers, SQuAD's layout "
                                        "{'text': [...], 'answer_start': [...]} (character offsets into the context).")
    doc_stride: int | None = _f(None, "question_answering: tokens shared by consecutive windows of a context longer than "
                                      "max_length; default a quarter of max_length.")
    max_answer_length: int = _f(30, "question_answering: the longest answer span predicted, in tokens.")
    prompt_column: str = _f("prompt", "causal_lm: the column holding the prompt (with response_column).")
    response_column: str = _f("response", "causal_lm: the column holding the response the model learns; empty on "
                                          "unlabeled rows.")
    messages_column: str = _f("messages", "causal_lm: the column holding a chat (a list of {role, content}, the last one "
                                          "the assistant's answer), rendered with each model's own chat template.")
    answer_checker: str = _f("auto", "causal_lm: how the final answer of a generation is read and checked against the gold "
                                     "response's: gsm8k (the number after '####'), boxed (the last \\boxed{...}), "
                                     "last_number, none; auto = gsm8k or boxed when every gold test response has one. "
                                     "Greedy generations of the test prompts are then scored (answer_accuracy).",
                             choices=["auto", "none", "gsm8k", "boxed", "last_number"])
    generation_samples: int = _f(64, "causal_lm: test prompts each model answers by greedy generation for answer_accuracy "
                                     "and the report's side-by-side generations (0: none).")
    generation_max_new_tokens: int | None = _f(None, "causal_lm: the longest generation, in tokens; default the longest gold "
                                                     "test response plus a quarter.")
    sequence_kd: bool = _f(False, "causal_lm: sequence-level KD. Before distillation the teacher answers every training "
                                  "prompt that has no gold response (rows past num_labeled, unlabeled_file prompts) by "
                                  "generation, once (cached in the run, resumed after a kill), and the student learns "
                                  "those answers as its responses: token-level terms along them when the two share a "
                                  "tokenizer, cross-entropy alone when they do not (the route across tokenizers; "
                                  "DeepSeek's R1-Distill models were made this way).")
    sequence_kd_max_new_tokens: int | None = _f(None, "causal_lm: the longest teacher answer, in tokens; default the "
                                                      "longest gold training response plus a quarter.")
    sequence_kd_temperature: float = _f(0.0, "causal_lm: 0 = greedy teacher answers; above 0, sampled at this "
                                             "temperature (seeded by seed).")
    metric: str = _f("auto", "Main metric: accuracy, f1 (macro), matthews, pearson, spearman; entity_f1 or token_accuracy "
                             "for token_classification; f1 or exact_match (SQuAD's) for question_answering; token_accuracy "
                             "(top-1 next-token accuracy on gold responses) for causal_lm; auto = accuracy, pearson, "
                             "entity_f1, f1 or token_accuracy.", choices=list(METRICS))
    max_length: int = _f(128, "Truncate texts to this many tokens (each model's own tokenizer).")
    validation_size: float = _f(0.1, "Validation split made from train when none is given: fraction (<1) or row count.")
    test_size: float = _f(0.15, "Test split made from train when none is given: fraction (<1) or row count.")
    num_labeled: int | None = _f(None, "Keep labels for only this many training rows; the rest becomes unlabeled text "
                                       "that the student learns from the teacher's soft labels (few-label setting).")
    max_unlabeled: int | None = _f(None, "Use at most this many unlabeled rows (seeded sample).")
    max_validation_samples: int | None = _f(None, "Use at most this many validation rows (seeded sample).")
    max_test_samples: int | None = _f(None, "Use at most this many test rows (seeded sample).")


@dataclass
class ModelArguments:
    teacher: str | None = _f(None, "Teacher: local folder, hub name, or 'demo:all-mpnet-base-v2'.")
    student: str | None = _f(None, "Student: local folder, hub name, 'demo:all-MiniLM-L6-v2', or 'from_teacher' "
                                   "(keep student_layers of the teacher's layers).")
    student_layers: list[int] | None = _f(None, "Teacher layers copied into a 'from_teacher' student, e.g. 0 2 4 7 9 11; "
                                                "default every other layer.")
    finetune_teacher: str = _f("auto", "Fine-tune the teacher on the labelled data first: yes, no, or auto (when its "
                                       "classifier head is untrained).", choices=["auto", "yes", "no"])
    teacher_stop: str = _f("plateau", "How the teacher's fine-tune ends: 'plateau' (validate every epoch on the task metric, "
                                      "stop after plateau_patience epochs without a new best, at most teacher_max_epochs, "
                                      "keep the best checkpoint) or 'fixed' (exactly teacher_num_train_epochs).",
                           choices=list(STOPS))
    teacher_max_epochs: float = _f(5.0, "teacher_stop plateau: the most epochs the teacher's fine-tune may run (the "
                                        "learning rate decays over these; a stop before leaves it above zero).")
    teacher_num_train_epochs: float = _f(2.0, "teacher_stop fixed: epochs for fine-tuning the teacher.")
    teacher_learning_rate: float = _f(3e-5, "Learning rate for fine-tuning the teacher.")
    freeze_embeddings: bool = _f(False, "Freeze the embeddings of the model being fine-tuned (transfer learning).")
    freeze_layers: int = _f(0, "Freeze the first N transformer layers of the model being fine-tuned.")


@dataclass
class StrategyArguments:
    strategy: str = _f("distill_finetune", "finetune (hard labels only), distill, or distill_finetune (scheduled "
                                           "distillation, then optional hard-label epochs).", choices=list(STRATEGIES))
    temperature: float | None = _f(None, "Softmax temperature T for soft targets (start value when scheduled). Default "
                                         "4.0; 1.0 for causal_lm (a vocabulary's tail at T = 4 outweighs any top-k "
                                         "cache, and the cache's tail draws are read at T = 1).")
    temperature_end: float | None = _f(None, "Final temperature for linear/cosine schedules (default 1.0 for distill_finetune).")
    temperature_schedule: str | None = _f(None, "constant, linear, cosine or list; default constant for distill, linear "
                                                "(high -> low) for distill_finetune.", choices=list(KINDS))
    temperature_values: list[float] | None = _f(None, "Per-epoch temperatures for temperature_schedule 'list'.")
    distill_weight: float | None = _f(None, "Weight w of the distillation term: loss = (1-w)*CE + w*T^2*KL (start value when "
                                            "scheduled). Default 0.5 for distill, 0.9 for distill_finetune.")
    distill_weight_end: float | None = _f(None, "Final distill_weight for linear/cosine schedules (default 0.2 for distill_finetune: "
                                                "distillation-heavy early, task-heavy late).")
    distill_weight_schedule: str | None = _f(None, "constant, linear, cosine or list; default constant for distill, linear "
                                                   "for distill_finetune.", choices=list(KINDS))
    distill_weight_values: list[float] | None = _f(None, "Per-epoch weights for distill_weight_schedule 'list'.")
    schedule_unit: str = _f("step", "Advance schedules every 'step' or only at each 'epoch'.", choices=list(UNITS))
    final_finetune_epochs: float = _f(0.0, "distill_finetune: hard-label-only epochs after distillation.")
    preset: str | None = _f(None, "Named recipe of extra loss terms: distilbert, tinybert, minilm, fitnets, rkd "
                                  "(`distiltune losses` lists them).", choices=list(PRESETS))
    losses: list[str] | None = _f(None, "Extra loss terms beyond CE and the logit term: names, name:weight, or (YAML) "
                                        "mappings {name, weight, weight_end, stage, <options>}; JSON strings on the command line.")
    logit_loss: str = _f("kd", "The logit term weighted by distill_weight: " + ", ".join(logit_loss_names()) + ".",
                         choices=logit_loss_names())
    kd_weighting: str = _f("none", "Dynamic KD: 'confidence' weights each example by the teacher's probability of the "
                                   "true label (top probability when unlabeled); 'none' weights all alike.",
                           choices=["none", "confidence"])
    layer_map: str | None = _f(None, "Default teacher layers for layer-wise terms: uniform, last, skip, dynamic (each "
                                     "student layer matches the closest of its linked teacher layers), or pairs '0:1,1:3'.")
    student_modules: list[str] | None = _f(None, "Default student submodule paths for feature terms (any nn.Module), "
                                                 "paired one to one with teacher_modules.")
    teacher_modules: list[str] | None = _f(None, "Default teacher submodule paths for feature terms.")
    distill_stop: str = _f("plateau", "How distillation (and the baseline student's training) ends: 'plateau' (validate "
                                      "every epoch on the student's task metric, stop after plateau_patience epochs without "
                                      "a new best, at most distill_max_epochs, keep the best) or 'fixed' (num_train_epochs). "
                                      "Schedules span num_train_epochs either way and hold their end values after it.",
                           choices=list(STOPS))
    distill_max_epochs: float | None = _f(None, "distill_stop plateau: the most epochs distillation may run (default "
                                                "num_train_epochs: the learning rate decays over the ceiling, and a longer "
                                                "one left the early epochs noisy, see README); the baseline student gets "
                                                "the same ceiling.")
    plateau_patience: int = _f(2, "Stages that stop on a plateau: epochs without a better validation metric before they stop.")
    plateau_min_epochs: float = _f(1.0, "Stages that stop on a plateau: the fewest epochs they run (the floor).")
    intermediate_epochs: float = _f(1.0, "Epochs of the intermediate stage (terms with stage: intermediate, e.g. the "
                                         "tinybert and fitnets presets), run before the main distillation stage.")
    augment: list[str] | None = _f(None, "Augment the distillation rows: mask, delete, swap, mlm (masked-LM word "
                                         "replacement, TinyBERT-style); copies carry no hard label, the teacher labels them.")
    augment_factor: int | None = _f(None, "Augmented copies per distillation row (seeded, so their teacher logits are "
                                          "cached like any row's); default 1 when augment is set.")
    augment_prob: float = _f(0.15, "Chance that each word of a text is changed by the augmentation (at least one is).")
    augment_mlm_model: str | None = _f(None, "Masked LM for augment 'mlm' (default: the teacher, if it has an MLM head).")
    online_teacher_lr: float | None = _f(None, "Dynamic KD with a teacher that adapts while it teaches: during distillation "
                                               "the teacher keeps fine-tuning on each batch's labelled rows at this learning "
                                               "rate (e.g. 1e-5) and the student learns from its current outputs. The teacher "
                                               "cache is off for that stage (the outputs change every step); the report's "
                                               "teacher is the one before distillation. Sequence classification and "
                                               "regression on transformers.")
    teacher_cache: bool = _f(True, "Compute teacher logits once per (teacher, data, tokenisation) and reuse them every "
                                   "epoch and stage (Arrow on disk, keyed by example; --no_teacher_cache: teacher every step).")
    teacher_cache_topk: int | None = _f(None, "Cache only the k largest teacher logits per row plus one tail value (large "
                                              "label spaces); the remaining mass is spread evenly over the other classes.")
    teacher_cache_tail_samples: int | None = _f(None, "causal_lm: per response token, also this many ids drawn from the "
                                                      "teacher's tail (the ids outside its top-k) at T = 1, with their "
                                                      "log-probabilities (default 10, 0 = none); kd then estimates the "
                                                      "divergence inside the tail that the top-k form cannot see.")
    nan_policy: str = _f("stop", "A NaN/inf loss term: 'stop' (name the term and step; the last good checkpoint is "
                                 "kept) or 'skip' the batch (no update; stops after 10 skipped batches in a row).",
                         choices=["stop", "skip"])
    grad_spike_factor: float = _f(10.0, "Log a gradient-norm spike when a step's norm exceeds this many times the "
                                        "median of the previous 50 steps (0 turns the check off).")
    baseline: bool = _f(True, "Also train the baseline student (same init and budget, labelled data only, no teacher).")
    mixed_precision: str = _f("auto", "bf16, fp16, no, or auto (bf16 where the CPU/GPU supports it).",
                              choices=["auto", "bf16", "fp16", "no"])
    latency_samples: int = _f(100, "Batch-1 forward passes timed for latency percentiles (after warm-up).")
    throughput_batch_size: int = _f(32, "Batch size for the throughput measurement.")
    teacher_lora: dict | str | None = _f(None, "Fine-tune the teacher with LoRA (peft) instead of in full: true, or "
                                                      "{r: 16, alpha: 32, dropout: 0.05, target_modules: all-linear} (JSON "
                                                      "on the command line). The adapters are merged into the weights "
                                                      "before the teacher teaches.")
    student_lora: dict | str | None = _f(None, "Train the student (and the baseline, alike) with LoRA adapters, "
                                                      "merged into the weights when each stage ends; same keys as "
                                                      "teacher_lora. Logit terms only (feature terms read the layers "
                                                      "LoRA wraps).")
    export: dict | str | None = _f(None, "Export the student after the run: a mapping {format: onnx, quantize: int8, "
                                         "min_agreement: 0.999, min_agreement_int8: 0.97 (QA: 0.70), opset: null} or 'onnx' / "
                                         "'onnx:int8' (JSON on the command line); the exported files are evaluated and "
                                         "timed beside the others, and the run fails (exit 1) below an agreement floor.")


GROUPS = (DataArguments, ModelArguments, StrategyArguments)
