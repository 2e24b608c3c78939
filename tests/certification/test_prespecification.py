"""Pre-specification records: the protocol frozen before the test split is first read, and what the dossier states."""
from __future__ import annotations

import dataclasses
import json
import subprocess
from pathlib import Path

import pytest

from certification.errors import InputError, StaleArtifactError
from certification.gate import Protocol, protocol_sha256
from certification.gate_io import check_frozen, freeze_protocol
from certification.prespecification import (GitState, chronology, git_state, read_protocol_record, read_test_access,
                                            record_test_access, write_protocol_record)
from support.dossier_outputs import PROTOCOL

T0, T1 = "2026-11-30T09:00:00.000000Z", "2026-11-30T09:05:00.000001Z"
SPLIT_SHA = "ab" * 32


def _record(tmp_path: Path, protocol: dict = PROTOCOL, now: str = T0):
    record = freeze_protocol(Protocol.from_dict(protocol), "params.yaml section 'gate'", GitState("c" * 40, True), now)
    write_protocol_record(tmp_path / "protocol.json", record)
    return read_protocol_record(tmp_path / "protocol.json")


def test_records_round_trip_and_the_chronology_holds(tmp_path: Path) -> None:
    record = _record(tmp_path)
    assert record.protocol_sha256 == protocol_sha256(Protocol.from_dict(PROTOCOL)) and record.frozen_utc == T0
    record_test_access(tmp_path / "access.json", record, "certify", "data/test.npz", SPLIT_SHA, now=T1)
    access = read_test_access(tmp_path / "access.json")
    result = chronology(record, access, record.protocol_sha256, SPLIT_SHA)
    assert result.holds and result.to_dict()["holds"] is True
    assert (result.frozen_utc, result.test_opened_utc, result.test_opened_by) == (T0, T1, "certify")


def test_the_test_split_cannot_be_recorded_as_opened_before_the_protocol_was_frozen(tmp_path: Path) -> None:
    record = _record(tmp_path, now=T1)
    with pytest.raises(StaleArtifactError, match="frozen at 2026-11-30T09:05:00.000001Z, not before now"):
        record_test_access(tmp_path / "access.json", record, "certify", "data/test.npz", SPLIT_SHA, now=T0)
    assert not (tmp_path / "access.json").exists()


@pytest.mark.parametrize("change, broken", [
    ({"protocol_frozen_utc": "2026-11-30T09:06:00.000000Z"}, "frozen_before_opened"),  # access names another freeze
    ({"opened_utc": "2026-11-30T08:00:00.000000Z"}, "frozen_before_opened"),  # opened before the freeze (edited)
    ({"protocol_sha256": "0" * 64}, "same_protocol"),
    ({"data_sha256": "cd" * 32}, "same_split"),
])
def test_an_edited_access_record_breaks_the_chronology(tmp_path: Path, change: dict, broken: str) -> None:
    record = _record(tmp_path)
    access = record_test_access(tmp_path / "access.json", record, "certify", "data/test.npz", SPLIT_SHA, now=T1)
    result = chronology(record, dataclasses.replace(access, **change), record.protocol_sha256, SPLIT_SHA)
    assert not getattr(result, broken) and not result.holds


def test_the_gate_applies_only_the_frozen_protocol(tmp_path: Path) -> None:
    record = _record(tmp_path)
    check_frozen(record, Protocol.from_dict(PROTOCOL), "params.yaml")
    with pytest.raises(StaleArtifactError, match="not the one frozen before testing"):
        check_frozen(record, Protocol.from_dict({**PROTOCOL, "radius": 0.5}), "params.yaml")
    edited = dataclasses.replace(record, protocol={**PROTOCOL, "min_clean_accuracy": 0.1})
    with pytest.raises(InputError, match="the record was edited"):
        check_frozen(edited, Protocol.from_dict(PROTOCOL), "params.yaml")


@pytest.mark.parametrize("document, message", [
    ({"format": "other"}, "not a smoothcert.protocol-record/1 record"),
    ({"format": "smoothcert.protocol-record/1", "protocol": {}}, "missing key"),
])
def test_bad_protocol_records_are_refused(tmp_path: Path, document: dict, message: str) -> None:
    (tmp_path / "p.json").write_text(json.dumps(document))
    with pytest.raises(InputError, match=message):
        read_protocol_record(tmp_path / "p.json")


def test_a_bad_time_is_refused(tmp_path: Path) -> None:
    record = _record(tmp_path)
    document = {**record.to_dict(), "frozen_utc": "yesterday"}
    (tmp_path / "p.json").write_text(json.dumps(document))
    with pytest.raises(InputError, match="not ISO 8601 UTC"):
        read_protocol_record(tmp_path / "p.json")


def test_git_state_says_whether_the_protocol_file_was_committed(tmp_path: Path) -> None:
    assert git_state(tmp_path, "params.yaml").path_committed is None
    run = lambda *a: subprocess.run(["git", "-C", str(tmp_path), *a], check=True, capture_output=True)  # noqa: E731
    run("init", "-q")
    (tmp_path / "params.yaml").write_text("gate: {}\n")
    run("add", "params.yaml")
    run("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "-m", "p")
    state = git_state(tmp_path, "params.yaml")
    assert state.path_committed is True and len(state.commit) == 40
    (tmp_path / "params.yaml").write_text("gate: {radius: 1}\n")
    assert git_state(tmp_path, "params.yaml").path_committed is False
