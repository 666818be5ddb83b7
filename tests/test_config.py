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
])
def test_invalid_values_raise_one_line(values, msg):
    with pytest.raises(DistilTuneError, match=msg) as e:
        build_config({"report_to": "none", **values})
    assert "\n" not in str(e.value)


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
