"""The gate's optional lighting criterion: brightness offsets up to b* certified correct, judged on a lower bound."""
from __future__ import annotations

import math

import numpy as np
import pytest

from certification.dataset_bounds import certified_rate_bound
from certification.errors import InputError
from certification.gate import Protocol, evaluate, protocol_sha256
from certification.lighting import LightingCovariance
from support.gate_rows import ALPHA, CLASSES, PROTOCOL, SHA, certify_row, decisions, good_rows

MALIGNANT = ["melanoma", "basal_cell_carcinoma"]
COVARIANCE = LightingCovariance.build("dc", 0.05, 0.25, (3, 32, 32))
LIGHTING = {"lighting_brightness_offset": 0.04, "min_lighting_covered_lower": 0.5}


def _lit_rows(radii: list[float]) -> list[dict]:
    """Rows of a lighting run: correct, with Mahalanobis radius R and L2 radius sigma * R."""
    rows = []
    for i, r in enumerate(radii):
        row = certify_row(i, i % 4, i % 4, 0.25 * r)
        rows.append({**row, "mahalanobis_radius": r})
    return rows


def test_null_lighting_keys_leave_the_protocol_and_its_hash_unchanged() -> None:
    plain = Protocol.from_dict(PROTOCOL)
    nulls = Protocol.from_dict({**PROTOCOL, "lighting_brightness_offset": None, "min_lighting_covered_lower": None})
    assert nulls == plain and protocol_sha256(nulls) == protocol_sha256(plain)
    assert "lighting_brightness_offset" not in nulls.to_dict()
    assert protocol_sha256(Protocol.from_dict({**PROTOCOL, **LIGHTING})) != protocol_sha256(plain)


def test_brightness_criterion_counts_the_exact_ellipsoid_test() -> None:
    size = float(COVARIANCE.mahalanobis_norm(np.full((3, 32, 32), 0.04)))
    assert size == pytest.approx(0.04 * math.sqrt(3072 / (0.25**2 + 0.05**2 * 3072)), rel=1e-12)
    radii = [size * 1.01] * 150 + [size * 0.99] * 50  # 150 covered, 50 just short
    verdict = evaluate(decisions(_lit_rows(radii)), Protocol.from_dict({**PROTOCOL, **LIGHTING}), CLASSES, MALIGNANT,
                       ALPHA, SHA, COVARIANCE)
    criterion = next(c for c in verdict.criteria if c.name == "lighting_brightness")
    expected = certified_rate_bound(150, 200, ALPHA, 0.95)
    assert (criterion.successes, criterion.trials) == (150, 200) and criterion.bound == pytest.approx(expected.lower)
    assert criterion.passed == (expected.lower >= 0.5) and criterion.passed
    strict = evaluate(decisions(_lit_rows(radii)), Protocol.from_dict({**PROTOCOL, **LIGHTING, "min_lighting_covered_lower": 0.9}),
                      CLASSES, MALIGNANT, ALPHA, SHA, COVARIANCE)
    assert "lighting_brightness" in strict.failed


@pytest.mark.parametrize(("values", "rows", "covariance", "message"), [
    ({**PROTOCOL, **LIGHTING}, good_rows(), None, "the certificates are isotropic"),
    ({**PROTOCOL, **LIGHTING}, good_rows(), COVARIANCE, "carries no mahalanobis_radius"),
    ({**PROTOCOL, "lighting_brightness_offset": 0.04}, None, None, "set both"),
    ({**PROTOCOL, **LIGHTING, "mode": "sequential"}, None, None, "needs mode fixed"),
    ({**PROTOCOL, **LIGHTING, "lighting_brightness_offset": -0.1}, None, None, "lighting_brightness_offset"),
])
def test_misused_lighting_criterion_is_a_one_line_error(values, rows, covariance, message: str) -> None:
    with pytest.raises(InputError, match=message):
        protocol = Protocol.from_dict(values)
        evaluate(decisions(rows), protocol, CLASSES, MALIGNANT, ALPHA, SHA, covariance)
