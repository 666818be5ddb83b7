"""YAML <-> DistillConfig, with strict keys, and the CLI flag parser built from the dataclass."""
from __future__ import annotations

import argparse
import dataclasses
import difflib
import math
import os
import sys
import types
import typing
from enum import Enum

import yaml
from transformers import HfArgumentParser

from .schema import DistillConfig
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


def read_yaml(path: str) -> dict:
    if not os.path.isfile(path):
        raise DistilTuneError(f"config file not found: {path}", "pass the path of an existing YAML file to --config")
    try:
        with open(path) as f:
            data = yaml.safe_load(f)  # data only: no tags that construct Python objects
    except yaml.YAMLError as e:
        line = getattr(getattr(e, "problem_mark", None), "line", None)
        where = f" (line {line + 1})" if line is not None else ""
        raise DistilTuneError(f"{path} is not valid YAML{where}", "fix the YAML syntax") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise DistilTuneError(f"{path} must hold a mapping of config keys, not a {type(data).__name__}",
                              "write one 'key: value' per line")
    check_keys(data, path)
    return {k: _coerce_number(k, v, path) for k, v in data.items()}


def _coerce_number(key: str, value, source: str):
    """YAML 1.1 reads ``3e-5`` (no dot) as a string; turn such strings into the field's number type."""
    if not isinstance(value, str):
        return value
    import typing

    hint = typing.get_type_hints(DistillConfig).get(key)
    kinds = set(typing.get_args(hint)) | {hint}
    for kind in (int, float):
        if kind in kinds and str not in kinds:
            try:
                number = float(value)
            except ValueError:
                raise DistilTuneError(f"{key}: {value!r} in {source} is not a number", f"write {key} as a number") from None
            if kind is int and not number.is_integer():  # also inf, nan
                raise DistilTuneError(f"{key}: {value!r} in {source} is not a whole number", f"write {key} as an integer")
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


def check_types(values: dict, source: str) -> None:
    """Refuse ill-typed values up front: a bool where an int goes, inf/nan, a list of the wrong
    kind. Left to run, they crash mid-run (or worse: an int accelerator_config is read as a file
    descriptor and closed)."""
    hints = typing.get_type_hints(DistillConfig)
    for k, v in values.items():
        if not (_conforms(v, hints[k]) or isinstance(v, LENIENT.get(k, ()))):
            raise DistilTuneError(f"{k}: {v!r} in {source} is not a valid {hints[k]}".replace("\n", " "), f"write {k} as the type named")


def build_config(values: dict, source: str = "config") -> DistillConfig:
    """Construct and validate; validation errors become one-line DistilTuneErrors."""
    check_keys(values, source)
    check_types(values, source)
    try:
        return DistillConfig(**values)
    except DistilTuneError:
        raise
    except (ValueError, TypeError, OverflowError, AttributeError, KeyError, OSError, ImportError) as e:
        msg = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise DistilTuneError(f"invalid config ({source}): {msg}", "correct the value(s) named above") from None


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


def parse_config(argv: list[str], prog: str, defaults: dict | None = None,
                 forced: dict | None = None) -> tuple[DistillConfig, argparse.Namespace]:
    """Parse ``--config`` + flags into a DistillConfig. Flags override the YAML, the YAML overrides
    ``defaults``; ``forced`` (what a subcommand means, e.g. strategy for ``distill``) overrides the YAML."""
    pre = argparse.ArgumentParser(add_help=False)
    add_config_flags(pre)
    pre.add_argument("--quick", action="store_true")
    known, rest = pre.parse_known_args(argv)
    values = dict(defaults or {})
    if known.config:
        values.update(read_yaml(known.config))
    values.update(forced or {})
    parser = _OneLineParser(DistillConfig, prog=f"distiltune {prog}")
    add_config_flags(parser)
    parser.add_argument("--quick", action="store_true", help="Small slice, one epoch: a smoke test in minutes.")
    # Our defaults first, then YAML, then flags (argparse uses set_defaults for the first two).
    parser.set_defaults(**values)
    ns = parser.parse_args(argv)
    raw = {k: v for k, v in vars(ns).items() if k in set(field_names())}
    # Keep only what differs from the dataclass default plus what was set, so unset schedule
    # fields stay None and pick up the strategy's defaults.
    cfg_values = {k: v for k, v in raw.items() if k in values or _differs(k, v)}
    check_types(cfg_values, known.config or "command line")
    if known.quick:
        cfg_values.update(quick_overrides(cfg_values))
    cfg = build_config(cfg_values, known.config or "command line")
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
