"""The config's generic typed parser: plain data checked against dataclass annotations.

``parse_value(tp, value, path, problems)`` walks a value (parsed YAML or
JSON) against an annotation (a dataclass, ``List``, ``Dict``, ``Optional``,
``Union[str, float]``, ``bool``, ``int``, ``float``, ``str``) and records each
problem with its dotted path, e.g. ``training.learning_rate: expected a
number, got 'fast'``. The schema itself is :mod:`pipelines.config.schema`.
"""
from __future__ import annotations

import dataclasses
import difflib
import re
import typing
from typing import Any, Dict, List, Union


class ConfigError(ValueError):
    """A config is invalid. ``problems`` holds ``(dotted_key, message)`` pairs."""

    def __init__(self, problems: List[tuple]):
        self.problems = list(problems)
        lines = [f"{key}: {msg}" if key else msg for key, msg in self.problems]
        super().__init__("invalid config:\n  " + "\n  ".join(lines))


# YAML 1.2's float syntax. PyYAML reads YAML 1.1, whose floats need a dot and a signed
# exponent, so an unquoted ``1e-3`` or ``2E5`` arrives as the text '1e-3': a number field
# takes such text when it is a number in this syntax, and nothing else ('fast', '1_0', 'nan').
FLOAT_TEXT = re.compile(r"[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?\Z")


def _describe(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _join(path: str, key: Any) -> str:
    return f"{path}.{key}" if path else str(key)


def parse_value(tp: Any, value: Any, path: str, problems: List[tuple]) -> Any:
    """Checks ``value`` against the annotation ``tp``; records problems."""
    origin = typing.get_origin(tp)
    if origin is Union:
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if value is None:
            return None
        if len(args) == 1:
            return parse_value(args[0], value, path, problems)
        for arg in args:  # Union[str, float, List[...]]: accept the first that fits
            if typing.get_origin(arg) in (list, List) and isinstance(value, list):
                return parse_value(arg, value, path, problems)
            if arg is str and isinstance(value, str):
                return value
            if arg is float and isinstance(value, (int, float)) and not isinstance(value, bool):
                return float(value)
        lists = any(typing.get_origin(a) in (list, List) for a in args)
        problems.append((path, f"expected a string{',' if lists else ' or'} a number"
                         f"{' or a list of them' if lists else ''}, got {_describe(value)}"))
        return None
    if origin in (list, List):
        (item_tp,) = typing.get_args(tp)
        if not isinstance(value, list):
            problems.append((path, f"expected a list, got {_describe(value)}"))
            return []
        return [parse_value(item_tp, v, _join(path, i), problems) for i, v in enumerate(value)]
    if origin in (dict, Dict):
        key_tp, item_tp = typing.get_args(tp)
        if not isinstance(value, dict):
            problems.append((path, f"expected a mapping, got {_describe(value)}"))
            return {}
        return {parse_value(key_tp, k, path, problems): parse_value(item_tp, v, _join(path, k), problems)
                for k, v in value.items()}
    if dataclasses.is_dataclass(tp):
        return _parse_dataclass(tp, value, path, problems)
    if tp is bool:
        if not isinstance(value, bool):
            problems.append((path, f"expected true or false, got {_describe(value)}"))
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            problems.append((path, f"expected an integer, got {_describe(value)}"))
        return value
    if tp is float:
        if isinstance(value, str) and FLOAT_TEXT.match(value):
            return float(value)  # 1e-3: a number YAML 1.1 reads as text
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            problems.append((path, f"expected a number, got {_describe(value)}"))
            return value
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            problems.append((path, f"expected a string, got {_describe(value)}"))
        return value
    raise TypeError(f"unsupported annotation {tp!r} at {path}")  # a bug here, not in the config


def _parse_dataclass(cls: Any, value: Any, path: str, problems: List[tuple]) -> Any:
    if not isinstance(value, dict):
        problems.append((path, f"expected a mapping, got {_describe(value)}"))
        return None
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    for key in value:
        if key not in fields:
            known = ", ".join(sorted(fields))
            near = difflib.get_close_matches(str(key), list(fields), n=1)
            hint = f"; did you mean {near[0]!r}?" if near else ""
            problems.append((_join(path, key), f"unknown key (known keys: {known}){hint}"))
    kwargs = {}
    for name, field in fields.items():
        key_path = _join(path, name)
        if name in value:
            kwargs[name] = parse_value(hints[name], value[name], key_path, problems)
        elif field.default is dataclasses.MISSING and field.default_factory is dataclasses.MISSING:
            problems.append((key_path, "required key is missing"))
    try:
        return cls(**kwargs)
    except TypeError:  # a required key was missing: already reported
        return None
