"""Config files: YAML read strictly (known keys, no key twice, numbers YAML 1.1 leaves as text) and
the resolved config written back so that it loads into the same config."""
from __future__ import annotations

import dataclasses
import difflib
import os
import typing

import yaml

from ..errors import DistilTuneError
from .schema import DistillConfig


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
