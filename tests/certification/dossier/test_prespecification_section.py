"""The dossier shows the protocol frozen before the first test read, and says so plainly when the records disagree."""
from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import pytest

from certification.dossier.attachments import read_pdf_content
from certification.dossier.build import build_dossier
from certification.prespecification import read_test_access
from certification.fileio import write_json_atomic
from pipeline.dossier import evidence_inputs
from support.dossier_outputs import FROZEN_UTC, OPENED_UTC, make_outputs
from support.signed_dossier import APPROVALS, PARAMS, TEMPLATES, identity
from certification.signing.devpki import ensure_dev_pki


@pytest.fixture(scope="module")
def outputs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_outputs(tmp_path_factory.mktemp("prespec"))


def _text(root: Path, **inputs) -> tuple[dict, str]:
    pki = ensure_dev_pki(root / "pki")
    built = build_dossier(dataclasses.replace(evidence_inputs(root), **inputs), PARAMS, TEMPLATES, APPROVALS, identity(pki))
    return built.evidence, re.sub(r"\s+", " ", read_pdf_content(built.unsigned_pdf).text)


def test_the_dossier_states_the_chronology_from_the_records(outputs: Path) -> None:
    evidence, text = _text(outputs)
    chrono = evidence["prespecification"]
    assert chrono["holds"] and (chrono["frozen_utc"], chrono["test_opened_utc"]) == (FROZEN_UTC, OPENED_UTC)
    for value in (FROZEN_UTC, OPENED_UTC, "frozen before first test read yes", "by the certify stage"):
        assert value in text, value
    assert "PRE-SPECIFICATION NOT SHOWN" not in text


def test_records_that_contradict_pre_specification_are_printed_as_such(outputs: Path, tmp_path: Path) -> None:
    access = read_test_access(outputs / "results" / "test_access.json")
    edited = tmp_path / "test_access.json"
    write_json_atomic(edited, dataclasses.replace(access, opened_utc="2026-11-29T00:00:00.000000Z").to_dict())
    evidence, text = _text(outputs, test_access=edited)
    assert evidence["prespecification"]["holds"] is False
    assert "PRE-SPECIFICATION NOT SHOWN" in text and "frozen before first test read NO" in text


def test_a_dossier_built_without_the_records_says_it_does_not_show_pre_specification(outputs: Path) -> None:
    evidence, text = _text(outputs, protocol_record=None, test_access=None)
    assert evidence["prespecification"] is None
    assert "does not show when the acceptance protocol was fixed" in text
