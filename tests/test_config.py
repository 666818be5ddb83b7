import dataclasses
import os

import pytest
import yaml

from distiltune.config.io import build_config, parse_config, read_yaml, save_config
from distiltune.errors import DistilTuneError


def write(tmp_path, data, name="c.yaml"):
    p = tmp_path / name
    p.write_text(yaml.safe_dump(data) if isinstance(data, dict) else data)
    return str(p)


def test_yaml_then_flags_override(tmp_path):
    p = write(tmp_path, {"temperature": 3.0, "strategy": "distill", "output_dir": str(tmp_path / "o"), "report_to": "none"})
    cfg, flags = parse_config(["--config", p, "--temperature", "5", "--seed", "7"], "run")
    assert cfg.temperature == 5.0 and cfg.seed == 7 and cfg.strategy == "distill"
    assert not flags.overwrite and not flags.resume


def test_unknown_key_names_the_nearest(tmp_path):
    p = write(tmp_path, {"temprature": 3.0})
    with pytest.raises(DistilTuneError, match="unknown config key 'temprature'.*did you mean 'temperature'"):
        read_yaml(p)


@pytest.mark.parametrize("values, msg", [
    ({"distill_weight": 1.5}, "distill_weight=1.5 is outside \\[0, 1\\]"),
    ({"distill_weight_end": -0.1}, "distill_weight_end=-0.1 is outside"),
    ({"distill_weight_values": [0.5, 2.0]}, "distill_weight_values contains 2.0"),
    ({"temperature": 0.0}, "temperature=0.0 must be > 0"),
    ({"temperature_end": -1.0}, "temperature_end=-1.0 must be > 0"),
    ({"temperature_schedule": "list"}, "temperature_values is empty"),
    ({"num_labeled": 0}, "num_labeled=0 must be >= 1"),
    # TrainingArguments values that, out of range, failed only mid-run or misbehaved without a word
    ({"gradient_accumulation_steps": 0}, "gradient_accumulation_steps=0 must be >= 1"),
    ({"gradient_accumulation_steps": -2}, "gradient_accumulation_steps=-2 must be >= 1"),
    ({"seed": -1}, "seed=-1 must be between 0 and 4294967295"),
    ({"seed": 2 ** 32}, "seed=4294967296 must be between 0 and 4294967295"),
    ({"data_seed": -1}, "data_seed=-1 must be between 0 and"),
    ({"per_device_eval_batch_size": 0}, "per_device_eval_batch_size=0 must be >= 1"),
    ({"eval_accumulation_steps": 0}, "eval_accumulation_steps=0 must be >= 1"),
    ({"dataloader_num_workers": 2, "dataloader_prefetch_factor": 0}, "dataloader_prefetch_factor=0 must be >= 1"),
    ({"eval_strategy": "steps", "eval_steps": -5}, "eval_steps=-5 must be > 0"),
    ({"eval_steps": -0.5}, "eval_steps=-0.5 must be > 0"),
    ({"save_strategy": "steps", "save_steps": 0}, "save_steps=0 must be > 0"),
    ({"save_steps": -1}, "save_steps=-1 must be > 0"),
    ({"logging_steps": 0}, "logging_steps=0 must be > 0"),
    ({"logging_steps": -3}, "logging_steps=-3 must be > 0"),
    ({"warmup_steps": -1}, "warmup_steps=-1 must be >= 0"),
    ({"weight_decay": -0.1}, "weight_decay=-0.1 must be >= 0"),
    ({"max_grad_norm": -1.0}, "max_grad_norm=-1.0 must be >= 0"),
    ({"adam_beta1": 1.0}, r"adam_beta1=1.0 must be in \[0, 1\)"),
    ({"adam_beta2": -0.5}, r"adam_beta2=-0.5 must be in \[0, 1\)"),
    ({"adam_epsilon": -1e-8}, "adam_epsilon=-1e-08 must be >= 0"),
    ({"dataloader_num_workers": -2}, r"dataloader_num_workers=-2 must be >= 0 \(or -1 for auto\)"),
    ({"save_total_limit": -1}, "save_total_limit=-1 must be >= 1, or 0"),
    ({"output_dir": ""}, "output_dir='' is empty"),
    ({"output_dir": "  "}, "output_dir='  ' is empty"),
    ({"text_pair_column": "text"}, "text_pair_column='text' is also the text_column"),
    ({"label_column": "text"}, "label_column='text' is also the text_column"),
    ({"text_pair_column": "b", "label_column": "b"}, "label_column='b' is also the text_pair_column"),
    ({"input_column": "x", "label_column": "x"}, "label_column='x' is also the input_column"),
    ({"validation_size": 1.5}, "validation_size=1.5 is neither a fraction below 1 nor a whole row count"),
    ({"test_size": 20.25}, "test_size=20.25 is neither a fraction below 1 nor a whole row count"),
    ({"load_best_model_at_end": True, "eval_strategy": "epoch", "save_strategy": "steps"},
     "match, except when .* but found - Evaluation strategy: .* - Save strategy: "),  # TrainingArguments' lines, joined
])
def test_invalid_values_raise_one_line(values, msg):
    with pytest.raises(DistilTuneError, match=msg) as e:
        build_config({"report_to": "none", **values})
    assert "\n" not in str(e.value)


@pytest.mark.parametrize("values", [
    {"gradient_accumulation_steps": 1, "seed": 0, "data_seed": 2 ** 32 - 1, "per_device_eval_batch_size": 1},
    {"eval_strategy": "steps", "eval_steps": 0},  # 0: TrainingArguments takes logging_steps
    {"eval_strategy": "steps", "eval_steps": 0.25, "save_steps": 0.5, "logging_steps": 0.1},  # shares of the steps
    {"logging_strategy": "epoch", "logging_steps": 0, "save_strategy": "epoch", "save_steps": 0},  # unused there
    {"warmup_steps": 0, "weight_decay": 0.0, "max_grad_norm": 0.0, "adam_beta1": 0.0, "adam_epsilon": 0.0},
    {"dataloader_num_workers": -1, "save_total_limit": 0},
    {"validation_size": 0.5, "test_size": 40.0},  # a fraction, a whole row count
    {"input_column": "pixel_values", "text_column": "label"},  # text_column is unused with input_column
])
def test_edge_values_stay_accepted(values):
    cfg = build_config({"report_to": "none", **values})
    again = dataclasses.replace(cfg, output_dir=cfg.output_dir + "/stage")  # each stage re-runs the checks
    assert again.seed == cfg.seed


def test_a_key_given_twice_names_the_key_and_both_lines(tmp_path):
    p = write(tmp_path, "seed: 1\ntemperature: 2.0\nseed: 2\n")
    with pytest.raises(DistilTuneError, match=r"gives the key 'seed' twice \(lines 1 and 3\).*keep one of the two") as e:
        read_yaml(p)
    assert "\n" not in str(e.value)
    with pytest.raises(DistilTuneError, match=r"gives the key 'format' twice \(lines 2 and 3\)"):  # nested mappings too
        read_yaml(write(tmp_path, "export:\n  format: onnx\n  format: onnx\n", "nested.yaml"))
    with pytest.raises(DistilTuneError, match=r"gives the key 'seed' twice \(line 1\)"):
        read_yaml(write(tmp_path, "{seed: 1, seed: 2}\n", "flow.yaml"))
    # a mapping merged in ('<<') and then overridden is not a duplicate
    merged = read_yaml(write(tmp_path, "export:\n  <<: {format: onnx, quantize: none}\n  quantize: int8\n", "merge.yaml"))
    assert merged["export"] == {"format": "onnx", "quantize": "int8"}


def test_problems_name_the_flag_or_the_file_line_they_come_from(tmp_path):
    p = write(tmp_path, "report_to: none\nnum_train_epochs: -1\ntemperature: 3.0\n")
    with pytest.raises(DistilTuneError) as e:
        parse_config(["--config", p, "--seed=-4", "--temperature", "0"], "run")
    msg = str(e.value)
    assert f"num_train_epochs=-1 must be > 0 ({p}, line 2)" in msg
    assert "temperature=0.0 must be > 0; use a positive temperature such as 2.0 (--temperature 0 on the command line)" in msg
    assert "(--seed=-4 on the command line)" in msg and "\n" not in msg
    with pytest.raises(DistilTuneError, match=r"num_train_epochs=-1.0 must be > 0 \(--num-train-epochs -1 on the command line\)"):
        parse_config(["--config", write(tmp_path, {"report_to": "none"}, "ok.yaml"), "--num-train-epochs", "-1"], "run")
    with pytest.raises(DistilTuneError, match=r"temperature: inf \(--temperature inf on the command line\) is not a valid"):
        parse_config(["--config", p, "--temperature", "inf"], "run")
    with pytest.raises(DistilTuneError, match=r"learning_rate: 'fast' \(\S*fast\.yaml, line 2\) is not a number"):
        read_yaml(write(tmp_path, "report_to: none\nlearning_rate: fast\n", "fast.yaml"))
    # a YAML string that argparse refuses for its flag's type is the file's, not the command line's
    q = write(tmp_path, "report_to: none\nstudent_layers: '0 2'\n", "layers.yaml")
    with pytest.raises(DistilTuneError, match=rf"student_layers: '0 2' \({q}, line 2\) is refused: invalid int value"):
        parse_config(["--config", q], "run")
    with pytest.raises(DistilTuneError, match=r"max_steps=5 \(--max_steps 5 on the command line\) would be ignored"):
        parse_config(["--max_steps", "5", "--report_to", "none"], "run")


def test_quick_caps_num_labeled_on_small_data_where_a_users_value_is_refused(tmp_path):
    """--quick's num_labeled (300) is 'at most': 60 rows of data keep all their labels. A num_labeled the
    user sets above the training rows is refused, naming the row count."""
    from conftest import make_rows
    from distiltune.data.load import load_task_data

    make_rows(60, 1).to_csv(tmp_path / "train.csv", index=False)
    args = ["--train_file", str(tmp_path / "train.csv"), "--text_column", "sentence", "--report_to", "none",
            "--output_dir", str(tmp_path / "o")]
    cfg, _ = parse_config(["--quick", *args], "run")
    assert cfg.num_labeled == 300
    n = 60 - 9 - 5  # test 15% of 60, then validation 10% of the rest
    assert len(load_task_data(cfg).train) == n
    assert len(load_task_data(dataclasses.replace(cfg, seed=7)).train) == n  # compare's per-seed configs
    save_config(cfg, str(tmp_path / "saved.yaml"))
    assert read_yaml(str(tmp_path / "saved.yaml"))["num_labeled"] == 300
    with pytest.raises(DistilTuneError, match=rf"num_labeled={n + 1} asks for more labelled rows than the training split "
                                              rf"has \({n} rows with text after the seeded validation and test splits\).*"
                                              rf"at most {n}, or leave it unset"):
        load_task_data(parse_config([*args, "--num_labeled", str(n + 1)], "run")[0])
    assert len(load_task_data(parse_config([*args, "--num_labeled", str(n)], "run")[0]).train) == n


def test_bad_yaml_and_non_mapping(tmp_path):
    with pytest.raises(DistilTuneError, match="not valid YAML"):
        read_yaml(write(tmp_path, "a: [1, 2\n"))
    with pytest.raises(DistilTuneError, match="must hold a mapping"):
        read_yaml(write(tmp_path, "- a\n- b\n"))
    with pytest.raises(DistilTuneError, match="config file not found"):
        read_yaml(str(tmp_path / "missing.yaml"))


def test_saved_config_round_trips(tmp_path):
    cfg = build_config({"strategy": "distill_finetune", "temperature": 6.0, "student_layers": [0, 3],
                        "output_dir": str(tmp_path), "report_to": "none"})
    path = str(tmp_path / "config.yaml")
    save_config(cfg, path)
    again = build_config(read_yaml(path), path)
    assert again.temperature_sched == cfg.temperature_sched
    assert again.distill_weight_sched == cfg.distill_weight_sched
    assert again.student_layers == [0, 3] and again.output_dir == cfg.output_dir


def test_subcommand_forces_its_strategy(tmp_path):
    p = write(tmp_path, {"strategy": "distill_finetune", "report_to": "none"})
    cfg, _ = parse_config(["--config", p], "distill", forced={"strategy": "distill", "baseline": False})
    assert cfg.strategy == "distill" and cfg.baseline is False


def test_quick_shrinks_the_job(tmp_path):
    cfg, flags = parse_config(["--quick", "--num_labeled", "2000", "--report_to", "none"], "demo")
    assert flags.quick and cfg.num_labeled == 300 and cfg.num_train_epochs == 1.0


def test_yaml_numbers_without_a_dot_are_numbers(tmp_path):
    """YAML 1.1 reads 3e-5 as a string; the config turns it into the field's number type."""
    p = write(tmp_path, "learning_rate: 3e-5\nseed: '7'\n")
    cfg = build_config(read_yaml(p), p)
    assert cfg.learning_rate == 3e-5 and cfg.seed == 7
    with pytest.raises(DistilTuneError, match="learning_rate: 'fast' .* is not a number"):
        read_yaml(write(tmp_path, "learning_rate: fast\n", "bad.yaml"))


def test_demo_task_picks_its_packaged_config_and_quick_slices_it(capsys):
    from distiltune.cli import main
    from distiltune.commands.run import DEMO_CONFIGS, _demo_config

    argv = _demo_config(["--task", "causal_lm", "--quick"])
    assert argv[:2] == ["--config", DEMO_CONFIGS["causal_lm"]] and argv[2:] == ["--quick"]
    cfg, flags = parse_config(argv + ["--report_to", "none"], "demo")
    assert cfg.task_type == "causal_lm" and cfg.teacher == "demo:smollm2-135m-instruct" and cfg.student == "from_teacher"
    assert flags.quick and cfg.num_labeled == 16 and cfg.max_test_samples == 8 and cfg.generation_samples == 4
    full, _ = parse_config(_demo_config(["--task", "causal_lm"]) + ["--report_to", "none"], "demo")
    assert full.num_labeled == 128 and full.generation_samples == 24
    assert _demo_config(["--quick"])[:2] == ["--config", DEMO_CONFIGS["classification"]]
    assert main(["demo", "--task", "vision"]) == 2
    assert "there is no demo for task 'vision'" in capsys.readouterr().err


def test_the_gpu_example_for_the_qwen_pair_is_a_valid_config():
    cfg, _ = parse_config(["--config", os.path.join(os.path.dirname(os.path.dirname(__file__)), "examples",
                                                    "lm_qwen.yaml"), "--report_to", "none"], "run")
    assert cfg.task_type == "causal_lm" and cfg.answer_checker == "gsm8k" and cfg.teacher_cache_topk == 32
