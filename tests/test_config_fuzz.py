"""Fuzz the config path (hypothesis): every config a user can write gives a DistillConfig or one clean
DistilTuneError line (exit 2), never a traceback.

Properties (derandomized, no example database, so CI sees the same examples every run):
- parse_config, the path of ``distiltune run --config x.yaml`` (with and without ``--quick``);
- read_yaml + build_config, the path of ``distiltune export --config x.yaml`` (deploy.py);
- read_yaml on arbitrary YAML text (syntax errors, non-mappings, Python tags);
- cli.main on configs that are invalid by construction (an unknown loss term is always added, and
  run_pipeline is patched to fail loudly, so no example can start a real run);
- a config that is accepted holds the declared types (a wrong type that slips through becomes a
  traceback later, in the middle of a run).
The regression cases at the end are the minimal failing inputs these properties found.
"""
from __future__ import annotations

import contextlib
import dataclasses
import io
import os
import types
import typing
import warnings
from unittest import mock

import pytest
import yaml
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from distiltune import cli
from distiltune.data.augment import METHODS
from distiltune.config.schema import DistillConfig
from distiltune.config.io import build_config, field_names, parse_config, read_yaml
from distiltune.errors import DistilTuneError
from distiltune.losses import LOSSES

FIELDS = field_names()
HINTS = typing.get_type_hints(DistillConfig)
CHOICES = {f.name: list(f.metadata["choices"]) for f in dataclasses.fields(DistillConfig) if f.metadata.get("choices")}
# transformers opens these as files when given a string; an int (or bool) there is taken for an open file
# descriptor (accelerator_config: 1 reads and then closes stdout), so ints only go through the fd test below.
PATH_FIELDS = ("accelerator_config", "deepspeed", "fsdp_config")
# output_dir always points into a temporary folder: no example may write into the repository.
FUZZED = [n for n in FIELDS if n != "output_dir"]
POISON = "no_such_loss_term"  # an unknown loss term: a config holding it is invalid whatever else it holds

INF, NAN = float("inf"), float("nan")
TEXT = ["", " ", "inf", "-inf", "nan", "1e400", "-1", "0", "0.5", "3e-5", "yes", "no", "none", "null", "true",
        "{", "{}", '{"a": 1}', '{"name": "kd"}', "[1, 2]", "a:b", "0:1,1:3", "0:inf", "onnx", "onnx:int8", "list",
        "linear", "cosine", "steps", "epoch", "kd:x", "hidden_mse:0.5", "uniform", "middle", "mean", "a\nb", "~",
        "demo:nothing", "missing.json"] + LOSSES.names()
LOSS_OPTIONS = ["weight", "weight_end", "weight_schedule", "stage", "key", "layers", "student_modules",
                "teacher_modules", "pool", "projection", "heads", "student_layer", "teacher_layer", "relation_heads",
                "relations", "weighting"]

numbers = st.one_of(st.integers(), st.sampled_from([0, 1, -1, 2, 8, 2 ** 31, 2 ** 63]), st.floats(),
                    st.sampled_from([0.0, 0.5, 1.0, 1.5, -1.0, INF, -INF, NAN, 1e308]))
scalars = st.one_of(st.none(), st.booleans(), numbers, st.text(max_size=8), st.sampled_from(TEXT))
values = st.one_of(scalars, st.lists(scalars | st.lists(numbers, max_size=2), max_size=3),
                   st.dictionaries(st.text(max_size=6) | st.sampled_from(["format", "quantize", "opset", "name"] + LOSS_OPTIONS),
                                   scalars, max_size=3))
loss_entries = st.one_of(st.sampled_from(TEXT), st.fixed_dictionaries(
    {"name": st.sampled_from(LOSSES.names())},
    optional={k: st.one_of(scalars, st.lists(scalars | st.lists(numbers, max_size=2), max_size=3)) for k in LOSS_OPTIONS}))


def _kinds(hint) -> tuple:
    return typing.get_args(hint) if typing.get_origin(hint) in (typing.Union, types.UnionType) else (hint,)


def _element(hint):
    kinds = _kinds(hint)
    if int in kinds:
        return st.integers(-2, 20) | st.sampled_from([INF, 1.5, True])
    if float in kinds:
        return st.floats() | st.sampled_from([INF, NAN, 0.5])
    return st.sampled_from(TEXT + list(METHODS))


def _near_valid(name: str):
    """Values of roughly the declared type (edge values included), so the deeper checks are reached."""
    kinds, out = _kinds(HINTS[name]), []
    if name in CHOICES:
        out.append(st.sampled_from(CHOICES[name]))
    if bool in kinds:
        out.append(st.booleans())
    if int in kinds:
        out.append(st.integers(-2, 300) | st.sampled_from([INF, NAN, 1.5, 10 ** 30]))
    if float in kinds:
        out.append(st.floats(-2, 300) | st.sampled_from([INF, -INF, NAN, 0.0]))
    if str in kinds:
        out.append(st.sampled_from(TEXT))
    for k in kinds:
        if typing.get_origin(k) is list:
            out.append(st.lists(_element(typing.get_args(k)[0]), max_size=3))
        if k is dict or typing.get_origin(k) is dict:
            out.append(st.dictionaries(st.sampled_from(["format", "quantize", "min_agreement", "opset", "a"]), scalars,
                                       max_size=2))
    if name == "losses":
        out.append(st.lists(loss_entries, max_size=3))
    if name == "layer_map":
        out.append(st.lists(st.lists(st.integers(-1, 12) | st.sampled_from([INF, NAN, "x"]), max_size=3), max_size=2))
    return st.one_of(*out) if out else values


def _value(name: str):
    if name in PATH_FIELDS:  # no ints/bools here: see PATH_FIELDS
        return st.one_of(st.none(), st.floats(), st.text(max_size=8), st.sampled_from(TEXT),
                         st.dictionaries(st.text(max_size=6), scalars, max_size=2))
    return st.one_of(values, _near_valid(name))


unknown_keys = st.one_of(st.text(max_size=12), st.integers(), st.none()).filter(lambda k: k not in FIELDS)
def _config(known: list, unknown: dict) -> dict:
    return {**dict(known), **unknown}


configs = st.builds(
    _config,
    st.lists(st.sampled_from(FUZZED).flatmap(lambda n: st.tuples(st.just(n), _value(n))), max_size=6,
             unique_by=lambda kv: kv[0]),
    st.one_of(st.just({}), st.just({}), st.just({}), st.dictionaries(unknown_keys, values, min_size=1, max_size=1)))

FUZZ = settings(max_examples=200, deadline=None, derandomize=True, database=None, report_multiple_bugs=False,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    return tmp_path_factory.mktemp("config_fuzz")


@contextlib.contextmanager
def _sandbox(workdir, err):
    """Relative paths resolve in the temp folder; env vars that TrainingArguments sets are undone."""
    with contextlib.chdir(workdir), mock.patch.dict(os.environ), contextlib.redirect_stderr(err), \
            warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


def _write(workdir, data: dict | str) -> str:
    """A YAML file (raw text as given); a mapping gets report_to: none and an output_dir in the temp folder."""
    if isinstance(data, dict):
        data = yaml.safe_dump({"report_to": "none", "output_dir": str(workdir / "out"), **data}, allow_unicode=True)
    path = workdir / "config.yaml"
    path.write_text(data, encoding="utf-8")
    return str(path)


def _clean(e: DistilTuneError) -> DistilTuneError:
    assert str(e) and "\n" not in str(e), f"a DistilTuneError must be one line: {str(e)!r}"
    return e


def _config_or_clean_error(workdir, load):
    """What ``load()`` gives: a DistillConfig, or a clean error. Any other exception escapes: a traceback."""
    err = io.StringIO()
    with _sandbox(workdir, err):
        try:
            result = load()
        except DistilTuneError as e:
            return _clean(e)
        except SystemExit as e:  # the flag parser's own error path (_OneLineParser.error): one line, exit 2
            assert e.code == 2, e.code
            assert err.getvalue().count("distiltune: error:") == 1 and "Traceback" not in err.getvalue(), err.getvalue()
            return e
    cfg = result[0] if isinstance(result, tuple) else result
    assert isinstance(cfg, DistillConfig), type(cfg)
    return cfg


@FUZZ
@given(data=configs, quick=st.booleans())
def test_config_file_gives_a_config_or_a_clean_error(workdir, data, quick):
    path = _write(workdir, data)
    _config_or_clean_error(workdir, lambda: parse_config(["--config", path] + ["--quick"] * quick, "run"))


@settings(FUZZ, max_examples=120)
@given(data=configs)
def test_export_config_path_gives_a_config_or_a_clean_error(workdir, data):
    path = _write(workdir, data)  # deploy.py: build_config(read_yaml(path) ...)
    _config_or_clean_error(workdir, lambda: build_config(read_yaml(path) | {"baseline": False}, path))


@settings(FUZZ, max_examples=150)
@given(text=st.one_of(st.text(max_size=40), st.sampled_from([
    "a: [1, 2\n", "- a\n- b\n", "42\n", "'just a string'\n", "a: 1\na: 2\n", "? [1, 2]\n: 3\n", "&a [*a]\n",
    "\t- x\n", "{a: 1}: 2\n", "!!binary aGVsbG8=\n", "temperature: !!float nan\n", "%YAML 9.9\n---\na: 1\n"])))
@example(text="!!python/object/apply:os.system ['echo pwned']\n")  # data only: safe_load refuses Python tags
@example(text="a: !!python/name:os.system\n")
def test_any_yaml_text_gives_values_or_a_clean_error(workdir, text):
    path = _write(workdir, text)
    with _sandbox(workdir, io.StringIO()):
        try:
            assert isinstance(read_yaml(path), dict)
        except DistilTuneError as e:
            _clean(e)


@settings(FUZZ, max_examples=60)
@given(data=configs, key=st.sampled_from(FUZZED), value=scalars, last=st.booleans())
def test_a_key_given_twice_is_refused_naming_it(workdir, data, key, value, last):
    """Plain safe_load keeps the last of two values for one key without a word; the config refuses it."""
    data = {k: v for k, v in data.items() if k != key}
    once = yaml.safe_dump({key: value}, allow_unicode=True)
    rest = yaml.safe_dump(data, allow_unicode=True) if data else ""
    text = once + rest + once if last else rest + once + once
    path = _write(workdir, text)
    with _sandbox(workdir, io.StringIO()), pytest.raises(DistilTuneError) as e:
        read_yaml(path)
    assert f"gives the key {key!r} twice" in _clean(e.value).problem, str(e.value)


@settings(FUZZ, max_examples=100)
@given(data=configs, quick=st.booleans())
def test_cli_prints_one_error_line_never_a_traceback(workdir, data, quick):
    data = {**data, "losses": [POISON]}  # always invalid: no example can start a real run
    argv = ["run", "--config", _write(workdir, data), "--output_dir", str(workdir / "cli_out")] + ["--quick"] * quick
    err, out = io.StringIO(), io.StringIO()
    with mock.patch("distiltune.pipeline.run.run_pipeline", side_effect=AssertionError("a valid config reached run_pipeline")), \
            mock.patch("tempfile.tempdir", str(workdir)), _sandbox(workdir, err), contextlib.redirect_stdout(out):
        try:
            code = cli.main(argv)
        except SystemExit as e:  # argparse errors leave through sys.exit(2) after one line
            code = e.code
    assert code == 2, f"exit {code}, not 2 (bad input): {err.getvalue()}"  # 1 = 'runtime failure': a crash
    assert "Traceback" not in err.getvalue()
    assert len([line for line in err.getvalue().splitlines() if line.startswith("distiltune: error:")]) == 1, err.getvalue()


# --- an accepted config holds the declared types --------------------------------------------------------------
# The checker is config_io's (documented leniency: finetune_teacher/export accept YAML's bare yes/no; losses
# entries may be mappings; layer_map may be explicit pairs); these tests check every path that builds a config
# applies it, whatever hypothesis throws at it.
from distiltune.config.io import LENIENT, _conforms  # noqa: E402  (next to the tests that use it)


def _ill_typed(values: dict) -> dict:
    return {k: v for k, v in values.items()
            if not (_conforms(v, HINTS[k]) or isinstance(v, LENIENT.get(k, ())))}


@settings(FUZZ, max_examples=200)
@given(data=configs)
def test_an_accepted_config_holds_the_declared_types(workdir, data):
    path = _write(workdir, data)
    with mock.patch("distiltune.config.io.build_config", wraps=build_config) as spy:
        cfg = _config_or_clean_error(workdir, lambda: parse_config(["--config", path], "run"))
    if isinstance(cfg, DistillConfig):  # the values after the YAML's '3e-5' and the flag parser's 'yes' conversions
        handed = spy.call_args.args[0]
        assert not _ill_typed(handed), f"accepted, but not of the declared type: {_ill_typed(handed)}"


# --- regressions: the minimal failing inputs found by the properties above -------------------------------------
# Each must give a clean DistilTuneError (or the flag parser's one-line exit 2), not a traceback.
CLEAN_ERROR_CASES = {
    "int-field-inf-string": ({"max_length": "inf"}, []),  # OverflowError, config_io.py _coerce_number
    "int-field-huge-string": ({"seed": "1e400"}, []),
    "logging-steps-inf": ({"logging_steps": INF}, []),  # OverflowError, transformers training_args.py
    "eval-steps-inf": ({"eval_strategy": "steps", "eval_steps": INF}, []),
    "metric-for-best-model-not-str": ({"metric_for_best_model": True}, []),  # AttributeError: .endswith
    "deepspeed-set": ({"deepspeed": "ds.json"}, []),  # ImportError (not installed) / missing file
    "accelerator-config-missing-file": ({"accelerator_config": "missing.json"}, []),  # FileNotFoundError
    "fsdp-config-missing-file": ({"fsdp": "full_shard", "fsdp_config": "missing.json"}, []),  # FileNotFoundError
    "fsdp-item-not-str": ({"fsdp": [True]}, []),  # AttributeError: .upper
    "layer-map-inf": ({"layer_map": [[INF, 1]], "losses": ["hidden_mse"]}, []),  # OverflowError, layer_map.py
    "loss-layers-inf": ({"losses": [{"name": "hidden_mse", "layers": [[INF, 0]]}]}, []),
    "quick-num-labeled-list": ({"num_labeled": [1]}, ["--quick"]),  # TypeError, config/quick.py quick_overrides
    "quick-final-finetune-epochs-null": ({"final_finetune_epochs": None}, ["--quick"]),
    "newline-in-value": ({"temperature": "a\nb"}, []),  # a two-line error message
    "newline-in-unknown-key": ({"a\nb": 1}, []),
    "yaml-string-refused-by-argparse-newline": ({"bf16": "\n"}, []),  # argparse's message for a YAML value held a newline
    "gradient-accumulation-0": ({"gradient_accumulation_steps": 0}, []),  # ZeroDivisionError mid-run
    "seed-negative": ({"seed": -1}, []),  # numpy refuses it after the output folder is made
    "adam-beta-1": ({"adam_beta1": 1.0}, []),  # torch.optim refuses it after the output folder is made
    "output-dir-empty": ({"output_dir": ""}, []),  # FileNotFoundError mid-run
    "label-column-is-text-column": ({"label_column": "text"}, []),  # KeyError from Arrow mid-load
    "max-steps-ignored": ({"max_steps": 10}, []),  # every stage trains for its epochs: silently dropped
}


@pytest.mark.parametrize("data, flags", CLEAN_ERROR_CASES.values(), ids=CLEAN_ERROR_CASES.keys())
def test_known_bad_config_gives_a_clean_error(workdir, data, flags):
    path = _write(workdir, data)
    result = _config_or_clean_error(workdir, lambda: parse_config(["--config", path] + flags, "run"))
    assert not isinstance(result, DistillConfig), "an invalid config was accepted"


ILL_TYPED_CASES = {
    "max-length-inf": {"max_length": INF},
    "num-labeled-inf": {"num_labeled": INF},
    "batch-size-float": {"per_device_train_batch_size": 1.5},
    "student-layers-inf": {"student_layers": [INF]},
    "teacher-cache-topk-nan": {"teacher_cache_topk": NAN},
    "validation-size-nan": {"validation_size": NAN},
    "warmup-steps-inf": {"warmup_steps": INF},
    "teacher-not-str": {"teacher": 5},
    "text-column-list": {"text_column": [1]},
    "report-to-int": {"report_to": 5},
    "float-field-null": {"weight_decay": None},
}


@pytest.mark.parametrize("data", ILL_TYPED_CASES.values(), ids=ILL_TYPED_CASES.keys())
def test_known_ill_typed_config_is_refused(workdir, data):
    path = _write(workdir, data)
    result = _config_or_clean_error(workdir, lambda: parse_config(["--config", path], "run"))
    assert not isinstance(result, DistillConfig), f"accepted, but not of the declared type: {data}"


@pytest.mark.parametrize("data", [{"metric_for_best_model": False}, {"max_length": "inf"}], ids=["metric-bool", "int-inf"])
def test_known_bad_config_exits_2_on_the_command_line(workdir, data):
    """Bad input is exit 2 with one 'distiltune: error:' line, not exit 1 'runtime failure' with a crash log."""
    argv = ["run", "--config", _write(workdir, {**data, "losses": [POISON]}), "--output_dir", str(workdir / "cli_out")]
    err = io.StringIO()
    with mock.patch("distiltune.pipeline.run.run_pipeline", side_effect=AssertionError("a valid config reached run_pipeline")), \
            mock.patch("tempfile.tempdir", str(workdir)), _sandbox(workdir, err), contextlib.redirect_stdout(io.StringIO()):
        code = cli.main(argv)
    assert code == 2 and err.getvalue().startswith("distiltune: error:"), (code, err.getvalue())


def test_accelerator_config_int_is_not_an_open_file_descriptor(workdir):
    """``accelerator_config: 1`` must be refused: transformers would open (read, then close) fd 1, stdout."""
    r, w = os.pipe()  # our own descriptor, holding valid JSON, stands in for stdout
    os.write(w, b"{}")
    os.close(w)
    try:
        result = _config_or_clean_error(workdir, lambda: build_config({"report_to": "none", "accelerator_config": r}))
        still_open = _is_open(r)
        assert still_open, "the config closed a file descriptor it was handed as accelerator_config"
        assert not isinstance(result, DistillConfig), "accelerator_config: <int> was accepted"
    finally:
        if _is_open(r):
            os.close(r)


def _is_open(fd: int) -> bool:
    try:
        os.fstat(fd)
        return True
    except OSError:
        return False
