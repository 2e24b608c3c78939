"""The one YAML reader refuses repeated keys (the last value would win silently) wherever params are read."""
from __future__ import annotations

from pathlib import Path

import pytest

from certification.errors import InputError
from certification.gate_io import load_protocol
from certification.yaml_io import parse_yaml
from pipeline.stage import load_section
from support.gate_rows import PROTOCOL


def test_a_repeated_key_is_refused_with_its_line() -> None:
    with pytest.raises(InputError, match=r"params.yaml: not valid YAML \(duplicate key 'radius' at line 3\)"):
        parse_yaml("gate:\n  radius: 0.25\n  radius: 0.0\n", "params.yaml")
    assert parse_yaml("a: {b: 1}\nc: [1, 1]\n", "x") == {"a": {"b": 1}, "c": [1, 1]}  # repeated values are fine


def test_protocol_and_params_sections_refuse_repeated_keys(tmp_path: Path) -> None:
    body = "".join(f"  {k}: {v}\n" for k, v in PROTOCOL.items())
    params = tmp_path / "params.yaml"
    params.write_text("gate:\n" + body + "  radius: 0.0\n")
    with pytest.raises(InputError, match="duplicate key 'radius'"):
        load_protocol(params)
    params.write_text("train:\n  lr: 0.01\n  lr: 100\n")
    with pytest.raises(InputError, match="duplicate key 'lr'"):
        load_section("train", {"lr": float}, params)
    params.write_text("gate: {}\ngate: {}\n")
    with pytest.raises(InputError, match="duplicate key 'gate'"):
        load_section("gate", {}, params)
