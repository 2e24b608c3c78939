"""The dossier of a lighting run: words and numbers of the lighting certificate, only when lighting is on."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from pipeline.dossier import evidence_inputs
from certification.dossier import claims
from certification.dossier.evidence import collect_evidence
from certification.dossier.templates import load_texts
from certification.dossier import render
from certification.dossier.layout import styles
from certification.errors import StaleArtifactError
from certification.lighting import LightingCovariance
from support.dossier_outputs import make_outputs
from support.signed_dossier import PARAMS, TEMPLATES

SIGNING = {"development_key": True, "signer": "dev", "trust_anchor_sha256": "0" * 64, "approvals": {}}


def _text(flowable) -> str:
    """Printed words of a paragraph or of a table's cells (tables hold paragraphs or strings)."""
    if hasattr(flowable, "getPlainText"):
        return flowable.getPlainText()
    cells = getattr(flowable, "_cellvalues", None) or []
    return " ".join(_text(c) if not isinstance(c, str) else c for row in cells for c in row)


def _light(root: Path, shares: list[float]) -> None:
    """Turn the outputs into a lighting run's: the covariance in metrics/certify.json, ellipsoid shares per setting."""
    certify = json.loads((root / "metrics" / "certify.json").read_text())
    covariance = LightingCovariance.build("dc+ramps", 0.05, certify["params"]["sigma"], (3, 8, 8))
    certify["noise"]["covariance"] = covariance.to_record()
    (root / "metrics" / "certify.json").write_text(json.dumps(certify))
    evaluate = json.loads((root / "metrics" / "evaluate.json").read_text())
    for row, share in zip(evaluate["corruptions"], shares):
        row.update(lighting_certified_share=share, lighting_certified_share_of_certified=share, lighting_contradictions=0)
    evaluate["lighting"] = {"covariance": covariance.to_record(), "covered_extents": {
        "n_certified": 50, "brightness_offset": {"median": 0.11, "min": 0.02}, "gain_change": {"median": 0.3, "min": 0.1},
        "ramp_strength": {"median": 0.09, "min": 0.01}}}
    (root / "metrics" / "evaluate.json").write_text(json.dumps(evaluate))


def test_lighting_words_appear_only_for_a_lighting_run(tmp_path: Path) -> None:
    root = make_outputs(tmp_path / "iso")
    plain = collect_evidence(evidence_inputs(root), PARAMS, {"document_id": "X"}, SIGNING)
    assert "lighting" not in plain["claims"] and claims.lighting_sentences(plain) == []
    assert "lighting" not in load_texts(TEMPLATES, plain).threat_model  # dropped, never filled
    sigma = plain["certify"]["params"]["sigma"]
    prediction = " ".join(load_texts(TEMPLATES, plain).deployed_procedure["prediction"].split())
    assert f"independent Gaussian noise (sigma = {sigma:.3f}, not clipped)" in prediction and "lighting" not in prediction

    lit_root = make_outputs(tmp_path / "lit")
    _light(lit_root, [1.0, 1.0, 0.0, 0.0])  # brightness severities 1-2 certified for all, jpeg for none
    ev = collect_evidence(evidence_inputs(lit_root), PARAMS, {"document_id": "X"}, SIGNING)
    text = " ".join(claims.lighting_sentences(ev))
    assert "K = 9 fixed orthonormal lighting directions" in text and "tau = 0.050" in text
    assert "Covered by the lighting certificate: brightness severity 1" in text
    assert "Not covered by the lighting certificate at any measured severity: jpeg" in text
    assert "brightness offset of every pixel up to +-0.110 (0.020)" in text
    prediction = " ".join(load_texts(TEMPLATES, ev).deployed_procedure["prediction"].split())
    assert "plus lighting noise along 9 fixed lighting directions (dc+ramps, tau = 0.050 per pixel" in prediction
    words = load_texts(TEMPLATES, ev).threat_model["lighting"]
    assert "K = 9 lighting directions (dc+ramps, tau = 0.050" in " ".join(words["specification"].split())
    assert {row["item"] for row in words["not_covered"]} >= {"Contrast and gamma changes", "Blur, motion blur and JPEG compression"}
    # section 3 as rendered (the flowables the PDF is built from)
    flowables = render._threat(ev, load_texts(TEMPLATES, ev), styles())
    printed = " ".join(" ".join(_text(f) for f in flowables).split())
    for phrase in ("Lighting certificate (anisotropic smoothing)", "Contrast and gamma changes", "mahalanobis_radius"):
        assert phrase in printed, phrase


def test_lighting_run_needs_the_evaluate_stage_s_ellipsoid_test(tmp_path: Path) -> None:
    root = make_outputs(tmp_path)
    _light(root, [])
    evaluate = json.loads((root / "metrics" / "evaluate.json").read_text())
    for row in evaluate["corruptions"]:
        row.pop("lighting_certified_share", None)
    (root / "metrics" / "evaluate.json").write_text(json.dumps(evaluate))
    with pytest.raises(StaleArtifactError, match="no lighting_certified_share; rerun the evaluate stage"):
        collect_evidence(evidence_inputs(root), PARAMS, {"document_id": "X"}, SIGNING)
