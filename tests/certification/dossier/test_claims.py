"""Generated claims follow the measurements: coverage, the specification and the radius in pixel terms."""
from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest

from pipeline.dossier import evidence_inputs
from certification.dossier import claims
from certification.dossier.evidence import collect_evidence
from certification.certificate_arrays import as_arrays
from certification.records import parse_certify_records
from support.dossier_outputs import corruption_rows, make_outputs
from support.signed_dossier import PARAMS

SIGNING = {"development_key": True, "signer": "dev", "trust_anchor_sha256": "0" * 64, "approvals": {}}


@pytest.fixture(scope="module")
def outputs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_outputs(tmp_path_factory.mktemp("claims"))


def _evidence(root: Path, settings: list[tuple[str, float]] | None = None) -> dict:
    if settings is not None:
        path = root / "metrics" / "evaluate.json"
        doc = json.loads(path.read_text())
        arrays = as_arrays(parse_certify_records((root / "results" / "certify.jsonl").read_bytes(), "t"))
        doc["corruptions"] = corruption_rows(arrays, settings)
        path.write_text(json.dumps(doc))
    return collect_evidence(evidence_inputs(root), PARAMS, {"document_id": "X"}, SIGNING)


def test_coverage_claim_follows_the_measured_lower_bound(tmp_path: Path) -> None:
    root = make_outputs(tmp_path)
    # tiny changes (L2 1e-4, 2e-4): inside every certified radius of a correct image -> covered
    small = _evidence(root, [("sensor_noise", 1e-4)])
    text = " ".join(claims.coverage_sentences(small))
    assert "Covered: sensor_noise severity 1" in text and "Not covered at any measured severity: none" in text
    row = small["claims"]["coverage"][0]
    assert row["covered"]["lower"] >= claims.coverage_standard(small)
    # large changes (L2 5, 10): beyond every radius -> named as not covered, never claimed
    large = _evidence(root, [("sensor_noise", 5.0)])
    text = " ".join(claims.coverage_sentences(large))
    assert "Covered: none." in text and "Not covered at any measured severity: sensor_noise" in text
    assert claims.covered_names(large) == []
    # the bound and n are printed with each partial setting
    mid = _evidence(root, [("jpeg", 0.3)])
    rows = mid["claims"]["coverage"]
    assert 0 < rows[0]["covered"]["successes"] < rows[0]["n"]
    sentence = " ".join(claims.coverage_sentences(mid))
    c = rows[0]["covered"]
    assert f"{c['successes']}/{rows[0]['n']}" in sentence and f"{100 * c['lower']:.1f}%" in sentence


def test_no_template_claims_unmeasured_coverage() -> None:
    from support import REPO

    words = " ".join(p.read_text() for p in (REPO / "dossier_templates").glob("*.yaml"))
    assert "covers sensor noise" not in words and "compression artefacts" not in words
    assert "for every test image" not in words and "acceptable if the gate passes" not in words.lower()


def test_specification_is_the_gate_protocol(outputs: Path) -> None:
    ev = _evidence(outputs)
    spec = " ".join(claims.specification(ev))
    for c in ev["verdict"]["criteria"]:
        assert f"{c['description']}: its {c['bound_kind']} confidence bound must be {c['comparison']} " \
               f"{100 * c['threshold']:.1f}%" in spec
    assert "not a guarantee for every image" in spec
    changed = copy.deepcopy(ev)
    next(c for c in changed["verdict"]["criteria"] if c["name"] == "certified_accuracy")["threshold"] = 0.8
    other = " ".join(claims.specification(changed))
    assert other != spec and "certified accuracy at radius 0.25: its lower confidence bound must be >= 80.0%" in other
    assert "up to 20.0% of images may lack" in other


def test_radius_note_states_pixel_terms_and_the_limit(outputs: Path) -> None:
    ev = _evidence(outputs)
    limit = ev["certify"]["radius_limit"]["radius"]
    note = claims.radius_note(ev)
    assert f"{limit:.3f}" in note and "by construction" in note
    beyond = [p["radius"] for p in ev["certify"]["curve"] if p["radius"] >= limit]
    assert beyond and all(f"{b:.3f}" in note for b in beyond)  # n = 100 samples: the 0.5 radius lies beyond
    r = ev["claims"]["radius"]["gate"]
    assert r["values"] == 3 * 8 * 8 and f"{r['even_gray_levels']:.2f} gray levels" in note
