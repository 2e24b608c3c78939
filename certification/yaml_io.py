"""The one YAML reader of the project (params.yaml, protocol files, dossier templates): safe, strict about keys.

YAML allows a key twice in one mapping and keeps the last value silently, so ``radius: 0.25`` followed by
``radius: 0.0`` would gate at 0.0; here a repeated key is an :class:`~certification.errors.InputError` naming the key
and its line.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import yaml

from certification.errors import InputError, MissingInputError


class _StrictLoader(yaml.SafeLoader):
    """yaml.SafeLoader that refuses a key repeated within one mapping."""


def _mapping(loader: _StrictLoader, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
    seen: set[Any] = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        if key in seen:
            raise yaml.constructor.ConstructorError(None, None, f"duplicate key {key!r}", key_node.start_mark)
        seen.add(key)
    return loader.construct_mapping(node, deep=deep)


_StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _mapping)


def parse_yaml(text: str, source: str) -> Any:
    """The YAML document in ``text`` (None for an empty one); InputError naming ``source`` on a syntax error or a
    repeated key."""
    try:
        return yaml.load(text, Loader=_StrictLoader)  # noqa: S506 - a SafeLoader subclass
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise InputError(f"{source}: not valid YAML ({problem}{where})") from None


def read_yaml(path: str | os.PathLike[str]) -> Any:
    """:func:`parse_yaml` of a UTF-8 file; MissingInputError when it does not exist."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise MissingInputError(f"{path}: file not found") from None
    except (UnicodeDecodeError, IsADirectoryError):
        raise InputError(f"{path}: not a UTF-8 text file") from None
    return parse_yaml(text, str(path))
