"""YAML <-> DistillConfig, with strict keys, and the CLI flag parser built from the dataclass."""
from __future__ import annotations

import argparse
import dataclasses
import itertools
import math
import re
import shlex
import sys
import types
import typing
from enum import Enum

from transformers import HfArgumentParser

from ..constants import AtMost
from .files import (_in_file, _load_yaml, check_keys, field_names, read_yaml, save_config,  # noqa: F401
                    to_yaml_dict)
from .schema import DistillConfig
from ..errors import DistilTuneError
from .quick import quick_overrides


last_output_dir: str | None = None


# Values YAML and the CLI legitimately give in another shape than the field's annotation.
LENIENT = {"finetune_teacher": (bool,), "export": (bool,), "teacher_lora": (bool,), "student_lora": (bool,), "losses": (str, dict, list), "layer_map": (list, dict)}


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


def _refuse_unused(cfg_values: dict, sources: dict) -> None:
    for k, (default, why, fix) in NOT_USED.items():
        if k in cfg_values and cfg_values[k] != default:
            raise DistilTuneError(f"{k}={cfg_values[k]} ({_where(k, sources)}) would be ignored: {why}", fix)


def _apply_quick(cfg_values: dict, sources: dict) -> None:
    quick = quick_overrides(cfg_values)
    if cfg_values.get("num_labeled") is None:  # --quick's own slice: at most 300 labels, not a demand for 300
        quick["num_labeled"] = AtMost(quick["num_labeled"])
    sources.update({k: "set by --quick" for k, v in quick.items() if cfg_values.get(k) != v})
    cfg_values.update(quick)


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
    _refuse_unused(cfg_values, sources)
    if known.quick:
        _apply_quick(cfg_values, sources)
    cfg = build_config(cfg_values, sources)
    global last_output_dir
    last_output_dir = cfg.output_dir  # where the CLI writes a crash log
    return cfg, known


def _differs(name: str, value) -> bool:
    f = next(f for f in dataclasses.fields(DistillConfig) if f.name == name)
    default = f.default if f.default is not dataclasses.MISSING else (
        f.default_factory() if f.default_factory is not dataclasses.MISSING else None)
    return value != default and value is not None


