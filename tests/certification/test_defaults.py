"""The CLI's defaults are params.yaml's, defined once in certification.defaults; every subcommand is described."""
from __future__ import annotations

import argparse
from pathlib import Path

import pytest
import yaml

from certification import defaults
from certification.cli import build_parser, main as cli_main

ROOT = Path(__file__).resolve().parents[2]


def test_params_yaml_certify_section_equals_the_library_defaults() -> None:
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    certify = params["certify"]
    assert (certify["n0"], certify["n"], certify["alpha"], certify["seed"], params["runtime"]["certify_batch_size"],
            certify["confidence"]) == (defaults.N0, defaults.N, defaults.ALPHA, defaults.SEED, defaults.BATCH_SIZE,
                                       defaults.CONFIDENCE)
    assert tuple(certify["radii"]) == defaults.RADII


def _subparsers() -> dict[str, argparse.ArgumentParser]:
    action = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    return dict(action.choices)


def test_cli_defaults_are_the_library_defaults() -> None:
    commands = _subparsers()
    certify = commands["certify"].parse_args(["--model", "m.onnx", "--data", "d.npz", "--sigma", "0.25", "--out", "o.jsonl"])
    assert (certify.n0, certify.n, certify.alpha, certify.seed, certify.batch_size, certify.confidence) == (
        defaults.N0, defaults.N, defaults.ALPHA, defaults.SEED, defaults.BATCH_SIZE, defaults.CONFIDENCE)
    assert tuple(certify.radii) == defaults.RADII
    decide = commands["decide"].parse_args(["--model", "m", "--data", "d", "--sigma", "1", "--out", "o", "--radius", "0.25"])
    assert (decide.n0, decide.n_max, decide.seed) == (defaults.N0, defaults.N, defaults.SEED)


def test_every_subcommand_has_a_description_and_help() -> None:
    commands = _subparsers()
    assert {"certify", "predict", "decide", "gate", "summarize", "merge", "audit"} <= set(commands)
    for name, parser in commands.items():
        assert parser.description and len(parser.description) > 20, name


def test_version(capsys) -> None:
    from importlib.metadata import version

    with pytest.raises(SystemExit) as exit_info:
        cli_main(["--version"])
    assert exit_info.value.code == 0
    assert capsys.readouterr().out.strip() == f"smoothcert {version('smoothcert')}"
