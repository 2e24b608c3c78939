"""Dataset-level summary arithmetic on hand-made records."""
from __future__ import annotations

import pytest

from certification.dataset_bounds import certified_rate_bound, proportion_bound
from certification.errors import InputError
from certification.summary import curve_csv, summarize
from support.linear_fixture import make_record

RECORDS = [
    make_record(0, 0, 0, 0.5),
    make_record(1, 0, 1, 0.9),  # wrong: counts as radius 0
    make_record(2, 1, -1, 0.0),  # abstained
    make_record(3, 1, 1, 0.25),
    make_record(4, 0, 0, 0.125),
]


def test_summary_numbers() -> None:
    s = summarize(RECORDS, [0.25, 0.0, 0.5], confidence=0.9, class_names=["a", "b", "c"])
    assert s["n_examples"] == 5
    assert s["clean_accuracy"] == certified_rate_bound(3, 5, 0.01, 0.9).to_dict()
    assert s["abstention_rate"] == proportion_bound(1, 5, 0.9).to_dict()
    assert s["average_certified_radius"] == pytest.approx((0.5 + 0.25 + 0.125) / 5)
    assert s["median_radius"] == pytest.approx(0.125)
    assert [(r["radius"], r["count"]) for r in s["curve"]] == [(0.0, 3), (0.25, 2), (0.5, 1)]  # sorted, inclusive >=
    assert s["curve"][1]["lower_bound"] == certified_rate_bound(2, 5, 0.01, 0.9).lower
    assert s["per_class"]["a"]["n_examples"] == 3 and s["per_class"]["b"]["abstention_rate"]["successes"] == 1
    assert s["per_class"]["c"] == {"n_examples": 0, "clean_accuracy": None, "abstention_rate": None,
                                   "average_certified_radius": None, "median_radius": None, "curve": []}
    csv = curve_csv(s["curve"]).splitlines()
    assert csv[0] == "radius,certified_accuracy,lower_bound" and csv[2].startswith("0.25,0.4,")


def test_summary_rejects_bad_input() -> None:
    with pytest.raises(InputError):
        summarize([], [0.0], 0.9)
    with pytest.raises(InputError):
        summarize(RECORDS, [-0.1], 0.9)
    with pytest.raises(InputError):
        summarize(RECORDS, [0.0], 0.9, class_names=["only"])


def test_certify_metrics_record_the_radius_limit() -> None:
    """metrics/certify.json names the largest radius its n and alpha can certify (read by the dossier)."""
    from certification.radius_units import max_certifiable_radius
    from certification.summary import REQUIRED_KEYS, certify_metrics

    records = [make_record(i, 0, 0, 0.3) for i in range(3)]
    r = records[0]
    doc = certify_metrics(records, model={"sha256": r.model_sha256}, data={"sha256": r.data_sha256}, max_examples=0,
                          radii=[0.0, 0.25], confidence=0.95, class_names=["a"], runtime={}, noise={})
    assert doc["radius_limit"]["radius"] == pytest.approx(max_certifiable_radius(r.sigma, r.n, r.alpha))
    assert "radius_limit.radius" in REQUIRED_KEYS
