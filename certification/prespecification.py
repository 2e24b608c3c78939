"""Pre-specification evidence: the acceptance protocol is frozen before the test split is first opened.

Two records, each with one writer and one reader here:

- :class:`ProtocolRecord` (``results/protocol.json`` in the pipeline): the protocol as judged by the gate, its
  SHA-256 (:func:`certification.gate.protocol_sha256`), the UTC time it was frozen, the git commit and whether the
  protocol's file was committed at that time. Made by :func:`certification.gate_io.freeze_protocol` in a stage
  that runs before certification; an unchanged protocol keeps its original record (and time).
- :class:`TestAccess` (``results/test_access.json``): written by the first stage that opens the test split,
  immediately *before* it opens it: which protocol record it saw, the split's SHA-256 and the UTC time. It records
  the FIRST opening of a split: later runs on the same split keep it (:func:`first_test_access`), so a protocol
  changed and frozen again after the split was read shows as not pre-specified.

:func:`chronology` states the reviewer's fact: protocol frozen at T1 < test split first opened at T2, the protocol
the gate applied is the one frozen, and the split opened is the one certified. Times are ISO 8601 UTC with
microseconds (``2026-12-02T12:00:00.123456Z``); they are the wall clock of the machine that ran the stage.
"""
from __future__ import annotations

import datetime as dt
import os
import subprocess
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Mapping

from certification.errors import InputError, StaleArtifactError
from certification.fileio import read_json, write_json_atomic

PROTOCOL_FORMAT = "smoothcert.protocol-record/1"
ACCESS_FORMAT = "smoothcert.test-access/1"
_TIME_FORMAT = "%Y-%m-%dT%H:%M:%S.%fZ"


def utc_now() -> str:
    """The current UTC time in the records' format."""
    return dt.datetime.now(dt.timezone.utc).strftime(_TIME_FORMAT)


def parse_time(text: Any, where: str) -> dt.datetime:
    """A records' time back to an aware datetime; anything else is an InputError naming ``where``."""
    try:
        return dt.datetime.strptime(str(text), _TIME_FORMAT).replace(tzinfo=dt.timezone.utc)
    except ValueError:
        raise InputError(f"{where}: time {text!r} is not ISO 8601 UTC like 2026-12-02T12:00:00.000000Z") from None


@dataclass(frozen=True)
class GitState:
    """The commit checked out and whether ``path`` had no uncommitted change (None: not a git checkout)."""

    commit: str
    path_committed: bool | None


def git_state(root: str | os.PathLike[str], path: str | os.PathLike[str]) -> GitState:
    """HEAD of the repository at ``root`` and whether ``path`` (relative to it) equals its committed version."""
    def git(*args: str) -> str:
        return subprocess.run(["git", "-C", str(root), *args], capture_output=True, text=True, check=True,
                              timeout=20).stdout.strip()
    try:
        commit = git("rev-parse", "HEAD")
        changed = git("status", "--porcelain", "--", str(path))
    except (OSError, subprocess.SubprocessError):
        return GitState("unknown (not a git checkout)", None)
    return GitState(commit, changed == "")


@dataclass(frozen=True)
class ProtocolRecord:
    """The acceptance protocol frozen before testing."""

    protocol: dict[str, Any]
    protocol_sha256: str
    frozen_utc: str
    git_commit: str
    protocol_committed: bool | None
    source: str

    def to_dict(self) -> dict[str, Any]:
        return {"format": PROTOCOL_FORMAT, **asdict(self)}


def write_protocol_record(path: str | os.PathLike[str], record: ProtocolRecord) -> None:
    write_json_atomic(path, record.to_dict())


def read_protocol_record(path: str | os.PathLike[str]) -> ProtocolRecord:
    """Read a protocol record and check its format, keys and time (the protocol itself and its hash are checked
    by :func:`certification.gate_io.check_frozen`, the gate's side)."""
    document = _read(path, PROTOCOL_FORMAT, "the protocol stage")
    where = str(path)
    fields = {k: document.get(k) for k in ProtocolRecord.__dataclass_fields__}
    missing = [k for k, v in fields.items() if v is None and k != "protocol_committed"]
    if missing:
        raise InputError(f"{where}: missing key '{missing[0]}'; rerun the protocol stage")
    if not isinstance(fields["protocol"], dict) or not isinstance(fields["protocol_sha256"], str):
        raise InputError(f"{where}: 'protocol' must be a mapping and 'protocol_sha256' a hash; rerun the protocol stage")
    parse_time(fields["frozen_utc"], where)
    return ProtocolRecord(**fields)


@dataclass(frozen=True)
class TestAccess:
    """The first opening of the sealed test split, recorded just before it happened."""

    __test__ = False  # not a pytest test class

    stage: str
    data_path: str
    data_sha256: str
    opened_utc: str
    protocol_sha256: str
    protocol_frozen_utc: str

    def to_dict(self) -> dict[str, Any]:
        return {"format": ACCESS_FORMAT, **asdict(self)}


def record_test_access(path: str | os.PathLike[str], record: ProtocolRecord, stage: str,
                       data_path: str | os.PathLike[str], data_sha256: str, now: str | None = None) -> TestAccess:
    """Write the access record for ``stage`` opening ``data_path``; call it before the split is read.

    Refuses (StaleArtifactError) when the protocol was frozen later than ``now``: a clock that runs backwards
    between stages cannot show pre-specification."""
    opened = now or utc_now()
    if parse_time(record.frozen_utc, "protocol record") >= parse_time(opened, "test access"):
        raise StaleArtifactError(f"the protocol record says it was frozen at {record.frozen_utc}, not before now "
                                 f"({opened}); check the machine's clock and rerun the protocol stage")
    access = TestAccess(stage, Path(data_path).as_posix(), data_sha256, opened, record.protocol_sha256,
                        record.frozen_utc)
    write_json_atomic(path, access.to_dict())
    return access


def read_test_access(path: str | os.PathLike[str]) -> TestAccess:
    document = _read(path, ACCESS_FORMAT, "the certify stage")
    fields = {k: document.get(k) for k in TestAccess.__dataclass_fields__ if k != "__test__"}
    missing = [k for k, v in fields.items() if not isinstance(v, str) or not v]
    if missing:
        raise InputError(f"{path}: missing key '{missing[0]}'; rerun the certify stage")
    parse_time(fields["opened_utc"], str(path))
    return TestAccess(**fields)


def first_test_access(path: str | os.PathLike[str], data_sha256: str) -> TestAccess | None:
    """The recorded first opening of the split hashing to ``data_sha256`` (None: no record, an unreadable one, or a
    record of another split, which a new opening replaces)."""
    if not Path(path).is_file():
        return None
    try:
        access = read_test_access(path)
    except InputError:
        return None
    return access if access.data_sha256 == data_sha256 else None


@dataclass(frozen=True)
class Chronology:
    """What the dossier states about pre-specification; ``holds`` only if every part does."""

    protocol_sha256: str
    frozen_utc: str
    git_commit: str
    protocol_committed: bool | None
    test_opened_utc: str
    test_opened_by: str
    frozen_before_opened: bool
    same_protocol: bool
    same_split: bool

    @property
    def holds(self) -> bool:
        return self.frozen_before_opened and self.same_protocol and self.same_split

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "holds": self.holds}


def chronology(record: ProtocolRecord, access: TestAccess, applied_protocol_sha256: str,
               certified_data_sha256: str) -> Chronology:
    """Compare the records with the protocol the gate applied and the data the certificates name."""
    frozen = parse_time(record.frozen_utc, "protocol record")
    opened = parse_time(access.opened_utc, "test access record")
    return Chronology(record.protocol_sha256, record.frozen_utc, record.git_commit, record.protocol_committed,
                      access.opened_utc, access.stage, frozen < opened and access.protocol_frozen_utc == record.frozen_utc,
                      record.protocol_sha256 == applied_protocol_sha256 == access.protocol_sha256,
                      access.data_sha256 == certified_data_sha256)


def _read(path: str | os.PathLike[str], expected_format: str, producer: str) -> Mapping[str, Any]:
    document = read_json(path)
    if not isinstance(document, dict) or document.get("format") != expected_format:
        raise InputError(f"{path}: not a {expected_format} record; rerun {producer}")
    return document
