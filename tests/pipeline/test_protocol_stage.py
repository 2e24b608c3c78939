"""The protocol stage freezes params.yaml's gate section once; certify records the first test read against it."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from support.dossier_outputs import PROTOCOL


def _params(root: Path, protocol: dict) -> None:
    (root / "params.yaml").write_text(yaml.safe_dump({"gate": protocol}))


def test_an_unchanged_protocol_keeps_its_record_and_a_changed_one_is_frozen_again(tmp_path: Path,
                                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    _params(tmp_path, PROTOCOL)
    from pipeline.protocol import main

    assert main() == 0
    first = Path("results/protocol.json").read_bytes()
    assert main() == 0 and Path("results/protocol.json").read_bytes() == first
    _params(tmp_path, {**PROTOCOL, "radius": 0.5})
    assert main() == 0
    again = json.loads(Path("results/protocol.json").read_text())
    assert again["protocol"]["radius"] == 0.5 and again["frozen_utc"] > json.loads(first)["frozen_utc"]
    assert again["protocol_committed"] is None  # not a git checkout
