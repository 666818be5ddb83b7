"""YAML <-> DistillConfig, with strict keys, and the CLI flag parser built from the dataclass."""
from __future__ import annotations

import argparse
import dataclasses
import difflib
import itertools
import math
import os
import re
import shlex
import sys
import types
import typing
from enum import Enum

import yaml
from transformers import HfArgumentParser

from .schema import AtMost, DistillConfig
from ..errors import DistilTuneError
from .quick import quick_overrides


last_output_dir: str | None = None


def field_names() -> list[str]:
    return [f.name for f in dataclasses.fields(DistillConfig) if f.init]


def check_keys(data: dict, source: str) -> None:
    known = set(field_names())
    for key in data:
        if key not in known:
            near = difflib.get_close_matches(str(key), known, n=1, cutoff=0.6)
            hint = f"did you mean '{near[0]}'?" if near else "run `distiltune <command> --help` for the valid keys"
            raise DistilTuneError(f"unknown config key {key!r} in {source}", hint)


class _DuplicateKey(yaml.YAMLError):
    def __init__(self, key, first: int, again: int):
        super().__init__(f"duplicate key {key!r}")
        self.key, self.first, self.again = key, first, again


class _StrictLoader(yaml.SafeLoader):
    """safe_load (data only: no tags that construct Python objects) that refuses a key given twice
    in one mapping (plain safe_load keeps the last value silently), and notes the line of each
    top-level key so that errors can point at it."""

    key_lines: dict

    def construct_document(self, node):
        if isinstance(node, yaml.MappingNode):
            self.key_lines = {k.value: k.start_mark.line + 1 for k, _ in node.value if isinstance(k, yaml.ScalarNode)}
        return super().construct_document(node)

    def construct_mapping(self, node, deep=False):
        if isinstance(node, yaml.MappingNode):
            seen: dict = {}
            for key_node, _ in node.value:
                if key_node.tag == "tag:yaml.org,2002:merge":  # '<<: *anchor' may be overridden on purpose
                    continue
                key, line = self.construct_object(key_node, deep=True), key_node.start_mark.line + 1
                try:
                    if key in seen:
                        raise _DuplicateKey(key, seen[key], line)
                    seen[key] = line
                except TypeError:  # an unhashable key: SafeLoader's own error names it
                    continue
        return super().construct_mapping(node, deep=deep)


def _load_yaml(path: str) -> tuple[dict, dict[str, int]]:
    """The checked, number-coerced values of a YAML config file and the line of each key."""
    if not os.path.isfile(path):
        raise DistilTuneError(f"config file not found: {path}", "pass the path of an existing YAML file to --config")
    loader = None
    try:
        with open(path) as f:
            loader = _StrictLoader(f)
            try:
                data = loader.get_single_data()
            finally:
                loader.dispose()
    except _DuplicateKey as e:
        lines = f"lines {e.first} and {e.again}" if e.first != e.again else f"line {e.first}"
        raise DistilTuneError(f"{path} gives the key {e.key!r} twice ({lines}); only one value can count",
                              f"keep one of the two '{e.key}:' entries") from None
    except yaml.YAMLError as e:
        line = getattr(getattr(e, "problem_mark", None), "line", None)
        where = f" (line {line + 1})" if line is not None else ""
        raise DistilTuneError(f"{path} is not valid YAML{where}", "fix the YAML syntax") from None
    if data is None:
        return {}, {}
    if not isinstance(data, dict):
        raise DistilTuneError(f"{path} must hold a mapping of config keys, not a {type(data).__name__}",
                              "write one 'key: value' per line")
    check_keys(data, path)
    lines = getattr(loader, "key_lines", {})
    return {k: _coerce_number(k, v, _in_file(path, lines.get(k))) for k, v in data.items()}, lines


def _in_file(path: str, line: int | None) -> str:
    return path + (f", line {line}" if line else "")


def read_yaml(path: str) -> dict:
    return _load_yaml(path)[0]


def _coerce_number(key: str, value, source: str):
    """YAML 1.1 reads ``3e-5`` (no dot) as a string; turn such strings into the field's number type."""
    if not isinstance(value, str):
        return value
    hint = typing.get_type_hints(DistillConfig).get(key)
    kinds = set(typing.get_args(hint)) | {hint}
    for kind in (int, float):
        if kind in kinds and str not in kinds:
            try:
                number = float(value)
            except ValueError:
                raise DistilTuneError(f"{key}: {value!r} ({source}) is not a number", f"write {key} as a number") from None
            if kind is int and not number.is_integer():  # also inf, nan
                raise DistilTuneError(f"{key}: {value!r} ({source}) is not a whole number", f"write {key} as an integer")
            return int(number) if kind is int else number
    return value


# Values YAML and the CLI legitimately give in another shape than the field's annotation.
LENIENT = {"finetune_teacher": (bool,), "export": (bool,), "losses": (str, dict, list), "layer_map": (list, dict)}


def _conforms(value, hint) -> bool:
    kinds = typing.get_args(hint) if typing.get_origin(hint) in (typing.Union, types.UnionType) else (hint,)
    for kind in kinds:
        origin = typing.get_origin(kind)
        if kind is type(None) and value is None or kind is typing.Any:
            return True
        if origin is typing.Literal and value in typing.get_args(kind):
            return True
        if kind is bool and isinstance(value, bool):
            return True
        if kind is int and isinstance(value, int) and not isinstance(value, bool):
            return True
        if kind is float and isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
            return True
        if kind is str and isinstance(value, str):
            return True
        if isinstance(kind, type) and issubclass(kind, Enum) and isinstance(value, str):
            return True
        if isinstance(kind, type) and not origin and kind not in (bool, int, float, str) and isinstance(value, kind):
            return True
        if (kind is list or origin is list) and isinstance(value, list):
            arg = (typing.get_args(kind) or (typing.Any,))[0]
            if all(_conforms(v, arg) for v in value):
                return True
        if (kind is dict or origin is dict) and isinstance(value, dict):
            return True
    return False


Source = typing.Union[str, typing.Mapping[str, str]]  # one place for every value, or one per key


def _where(key: str, source: Source) -> str:
    """Where a value was given: a file (and line), a flag on the command line, a subcommand."""
    return source if isinstance(source, str) else source.get(key, "config")


def check_types(values: dict, source: Source) -> None:
    """Refuse ill-typed values up front: a bool where an int goes, inf/nan, a list of the wrong
    kind. Left to run, they crash mid-run (or worse: an int accelerator_config is read as a file
    descriptor and closed)."""
    hints = typing.get_type_hints(DistillConfig)
    for k, v in values.items():
        if not (_conforms(v, hints[k]) or isinstance(v, LENIENT.get(k, ()))):
            raise DistilTuneError(f"{k}: {v!r} ({_where(k, source)}) is not a valid {hints[k]}".replace("\n", " "),
                                  f"write {k} as the type named")


def _named_keys(problem: str, keys) -> list[str]:
    """The given keys a problem is about: the one it starts with, else every one it names."""
    first = re.match(r"[A-Za-z_]\w*", problem.lstrip("-"))
    if first and first.group(0) in keys:
        return [first.group(0)]
    found = ((m.start(), k) for k in keys for m in [re.search(rf"(?<!\w){re.escape(k)}(?!\w)", problem)] if m)
    return [k for _, k in sorted(found)]


def _one_line(text: str) -> str:
    return " ".join(line.strip() for line in text.splitlines() if line.strip())


def build_config(values: dict, source: Source = "config") -> DistillConfig:
    """Construct and validate; validation errors become one-line DistilTuneErrors. ``source`` names
    where the values came from: one string for all, or a mapping key -> where (``parse_config``),
    so that each problem points at its flag or its line in the file."""
    for key in values:
        check_keys({key: values[key]}, _where(key, source))
    check_types(values, source)
    try:
        return DistillConfig(**values)
    except DistilTuneError:
        raise
    except (ValueError, TypeError, OverflowError, AttributeError, KeyError, OSError, ImportError) as e:
        problems = [_one_line(p) for p in getattr(e, "problems", [str(e)])] or [type(e).__name__]
        problems = [p or type(e).__name__ for p in problems]
        if isinstance(source, str):
            msg = f"invalid config ({source}): " + "; ".join(problems)
        else:
            def located(p: str) -> str:
                wheres = list(dict.fromkeys(_where(k, source) for k in _named_keys(p, values)))
                return f"{p} ({'; '.join(wheres)})" if wheres else p

            msg = "invalid config: " + "; ".join(located(p) for p in problems)
        raise DistilTuneError(msg, "correct the value(s) named above") from None


class _OneLineParser(HfArgumentParser):
    """argparse prints usage plus an error; we print just the error line and exit 2."""

    def error(self, message):
        sys.stderr.write(f"distiltune: error: {message} -> fix: see `distiltune {self.prog.split()[-1]} --help`\n")
        sys.exit(2)


def add_config_flags(sub: argparse.ArgumentParser) -> None:
    sub.add_argument("--config", help="YAML file with config keys (flags given on the command line override it).")
    sub.add_argument("--overwrite", action="store_true", help="Replace a previous run in output_dir.")
    sub.add_argument("--resume", action="store_true",
                     help="Continue a previous run in output_dir: reuse finished stages, resume the unfinished one.")


# TrainingArguments keys that distiltune's stages do not use: a value other than the default would be
# dropped without a word (each stage trains for its own epochs; the loss terms are distiltune's).
NOT_USED = {
    "max_steps": (-1, "every distiltune stage trains for its epochs", "set num_train_epochs (fractions such as 0.5 "
                                                                      "work) and drop max_steps"),
    "label_smoothing_factor": (0.0, "distiltune's loss terms replace the Trainer's loss",
                               "drop label_smoothing_factor (soft targets come from the teacher)"),
}


def _flag_text(argv: list[str], name: str, value) -> str:
    """The flag as typed: ``--seed -1``, ``--num-train-epochs=-1``, ``--student_layers 0 2``."""
    dashed = name.replace("_", "-")
    spellings = {f"--{name}", f"--{dashed}", f"--no_{name}", f"--no-{dashed}"}
    for i in range(len(argv) - 1, -1, -1):  # the last one given wins
        flag, eq, _ = argv[i].partition("=")
        if flag in spellings:
            if eq or flag.startswith("--no"):
                return shlex.quote(argv[i])
            args = list(itertools.takewhile(lambda t: not t.startswith("--"), argv[i + 1:]))
            return " ".join([flag, *(shlex.quote(a) for a in args)])
    return f"--{name} {shlex.quote(str(value))}"  # an abbreviated flag


_UNSET = object()  # the default of every key while finding which ones the command line set


class _Refused(Exception):
    pass


class _RaisingParser(_OneLineParser):
    def error(self, message):
        raise _Refused(message)


def _parser(prog: str, kind: type) -> HfArgumentParser:
    parser = kind(DistillConfig, prog=f"distiltune {prog}")
    add_config_flags(parser)
    parser.add_argument("--quick", action="store_true", help="Small slice, one epoch: a smoke test in minutes.")
    return parser


def _refused_value(refused: _Refused, parser: HfArgumentParser, values: dict, sources: dict, prog: str) -> DistilTuneError:
    """argparse's complaint about a YAML value (``argument --student_layers/...: invalid int value: '1 2'``),
    named as the key and the line of the file it is on."""
    message = " ".join(str(refused).split())  # one line, whatever the value held
    flag = re.match(r"argument (--?[\w-]+)", message)
    action = parser._option_string_actions.get(flag.group(1)) if flag else None
    key = action.dest if action is not None and action.dest in values else None
    if key is None:
        return DistilTuneError(f"{message} (in the config)", f"see `distiltune {prog} --help`")
    why = message.split(": ", 1)[-1]
    return DistilTuneError(f"{key}: {values[key]!r} ({_where(key, sources)}) is refused: {why}",
                           f"write {key} as `distiltune {prog} --help` describes it")


def parse_config(argv: list[str], prog: str, defaults: dict | None = None,
                 forced: dict | None = None) -> tuple[DistillConfig, argparse.Namespace]:
    """Parse ``--config`` + flags into a DistillConfig. Flags override the YAML, the YAML overrides
    ``defaults``; ``forced`` (what a subcommand means, e.g. strategy for ``distill``) overrides the YAML."""
    pre = argparse.ArgumentParser(add_help=False)
    add_config_flags(pre)
    pre.add_argument("--quick", action="store_true")
    known, rest = pre.parse_known_args(argv)
    values = dict(defaults or {})
    sources = {k: f"the default of `distiltune {prog}`" for k in values}
    if known.config:
        from_file, lines = _load_yaml(known.config)
        values.update(from_file)
        sources.update({k: _in_file(known.config, lines.get(k)) for k in from_file})
    values.update(forced or {})
    sources.update({k: f"set by `distiltune {prog}`" for k in forced or {}})
    # Our defaults first, then YAML, then flags (argparse uses set_defaults for the first two; it
    # also converts string defaults with each flag's type, so a YAML string can fail in there too).
    parser = _parser(prog, _RaisingParser)
    parser.set_defaults(**values)
    try:
        ns, refused = parser.parse_args(argv), None
    except _Refused as e:
        ns, refused = None, e
    # Which keys the command line itself set: parsed again with no defaults, only they are there.
    # A bad flag stops here: one line, exit 2.
    flags = _parser(prog, _OneLineParser)
    fields = set(field_names())
    flags.set_defaults(**{k: _UNSET for k in fields})
    flagged = {k: v for k, v in vars(flags.parse_args(argv)).items() if k in fields and v is not _UNSET}
    sources.update({k: f"{_flag_text(argv, k, v)} on the command line" for k, v in flagged.items()})
    if refused is not None:  # the flags parse alone: the value argparse refused came from the file (or a subcommand)
        raise _refused_value(refused, parser, values, sources, prog)
    raw = {k: v for k, v in vars(ns).items() if k in fields}
    # Keep only what differs from the dataclass default plus what was set, so unset schedule
    # fields stay None and pick up the strategy's defaults.
    cfg_values = {k: v for k, v in raw.items() if k in values or _differs(k, v)}
    check_types(cfg_values, sources)
    for k, (default, why, fix) in NOT_USED.items():
        if k in cfg_values and cfg_values[k] != default:
            raise DistilTuneError(f"{k}={cfg_values[k]} ({_where(k, sources)}) would be ignored: {why}", fix)
    if known.quick:
        quick = quick_overrides(cfg_values)
        if cfg_values.get("num_labeled") is None:  # --quick's own slice: at most 300 labels, not a demand for 300
            quick["num_labeled"] = AtMost(quick["num_labeled"])
        sources.update({k: "set by --quick" for k, v in quick.items() if cfg_values.get(k) != v})
        cfg_values.update(quick)
    cfg = build_config(cfg_values, sources)
    global last_output_dir
    last_output_dir = cfg.output_dir  # where the CLI writes a crash log
    return cfg, known


def _differs(name: str, value) -> bool:
    f = next(f for f in dataclasses.fields(DistillConfig) if f.name == name)
    default = f.default if f.default is not dataclasses.MISSING else (
        f.default_factory() if f.default_factory is not dataclasses.MISSING else None)
    return value != default and value is not None


OWN_DICT_FIELDS = ("export",)


def to_yaml_dict(cfg: DistillConfig) -> dict:
    """All init fields, JSON/YAML-safe, so the file loads back into the same config."""
    out = {}
    for name in field_names():
        v = getattr(cfg, name)
        if hasattr(v, "value"):  # enums
            v = v.value
        if isinstance(v, int) and not isinstance(v, bool):
            v = int(v)  # AtMost (--quick's num_labeled) is an int to YAML
        if isinstance(v, (str, int, float, bool, type(None))) or (
                isinstance(v, (list, tuple)) and all(isinstance(x, (str, int, float, bool, dict)) for x in v)):
            out[name] = list(v) if isinstance(v, tuple) else v
        elif isinstance(v, dict) and v and name in OWN_DICT_FIELDS:  # e.g. export: {format: onnx, ...}
            out[name] = v
    return out


def save_config(cfg: DistillConfig, path: str) -> None:
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        yaml.safe_dump(to_yaml_dict(cfg), f, sort_keys=True)
    os.replace(tmp, path)
