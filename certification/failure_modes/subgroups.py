"""Certified accuracy per subgroup (class, Fitzpatrick type, terciles of other metadata), with bounds.

For each subgroup and each radius r of the grid (and the gate radius) the report gives:

* ``certified_accuracy``: the share of the subgroup's examples whose certificate claims "correct with radius
  >= r" (abstentions count as failures);
* ``lower_bound``: a one-sided lower confidence bound on the subgroup's population certified accuracy
  (``certification.dataset_bounds.certified_rate_bound``: Clopper-Pearson minus the per-example alpha);
* ``claim_rate_upper``: a one-sided Clopper-Pearson upper bound on the rate at which *this certification
  procedure* (same sigma, n, alpha) claims r for the subgroup. It is not an upper bound on the true certified
  accuracy: a certificate may under-claim (abstain, or report a radius below the true one) without limit.

A subgroup is ``flagged`` when its lower bound at the gate radius is below the gate threshold. ``underpowered``
is true when even a perfect subgroup of that size could not clear the threshold (lower bound of n/n below it):
the flag then reflects too few examples rather than shown under-performance.

JSON (key ``subgroups``)::

    {"gate_radius": float, "threshold": float, "confidence": float, "alpha": float,
     "bound_method": "clopper-pearson-minus-alpha", "radii": [float],
     "groups": [{"field": "class"|"fitzpatrick"|<metadata field>, "group": str, "definition": str,
                 "n_examples": int, "at_gate": {"radius", "certified_accuracy", "lower_bound",
                 "claim_rate_upper", "count"}, "curve": [same objects, one per radius],
                 "flagged": bool, "underpowered": bool, "clean_accuracy": bound | null,
                 "abstention_rate": bound | null}],
     "flagged": [{"field", "group", "n_examples", "lower_bound", "underpowered"}]}
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Sequence

from certification.dataset_bounds import CERTIFIED_BOUND_METHOD, certified_rate_bound, proportion_bound
from certification.failure_modes.grouping import Group
from certification.certificate_arrays import CertificateArrays
from certification.summary import group_summary
from certification.summary import radius_point as summary_point


@dataclass(frozen=True)
class RadiusPoint:
    """Certified accuracy of one subgroup at one radius (rates in [0, 1]; None when the subgroup is empty)."""

    radius: float
    count: int
    certified_accuracy: float | None
    lower_bound: float | None
    claim_rate_upper: float | None


@dataclass(frozen=True)
class SubgroupStats:
    field: str
    group: str
    definition: str
    n_examples: int
    at_gate: RadiusPoint
    curve: list[RadiusPoint]
    flagged: bool
    underpowered: bool
    clean_accuracy: dict[str, Any] | None  # certified_rate_bound at r = 0 (as metrics/certify.json)
    abstention_rate: dict[str, Any] | None  # proportion_bound


@dataclass(frozen=True)
class SubgroupReport:
    gate_radius: float
    threshold: float
    confidence: float
    alpha: float
    radii: list[float]
    groups: list[SubgroupStats] = field(default_factory=list)
    bound_method: str = CERTIFIED_BOUND_METHOD

    @property
    def flagged(self) -> list[SubgroupStats]:
        return [g for g in self.groups if g.flagged]

    def to_dict(self) -> dict[str, object]:
        out = asdict(self)
        out["flagged"] = [
            {"field": g.field, "group": g.group, "n_examples": g.n_examples,
             "lower_bound": g.at_gate.lower_bound, "underpowered": g.underpowered}
            for g in self.flagged
        ]
        return out


def radius_point(rows: CertificateArrays, radius: float, confidence: float) -> RadiusPoint:
    """:func:`certification.summary.radius_point` of ``rows``, with the claim-rate upper bound."""
    point = summary_point(rows, radius, confidence)
    upper = proportion_bound(point["count"], len(rows), confidence).upper if len(rows) else None
    return RadiusPoint(point["radius"], point["count"], point["certified_accuracy"], point["lower_bound"], upper)


def subgroup_report(
    rows: CertificateArrays,
    groups: Sequence[Group],
    radii: Sequence[float],
    gate_radius: float,
    threshold: float,
    confidence: float,
) -> SubgroupReport:
    """Certified accuracy per subgroup; ``groups`` masks are over ``rows`` (row positions, not split indices).
    Each group's clean accuracy and abstention rate come from :func:`certification.summary.group_summary`."""
    report = SubgroupReport(float(gate_radius), float(threshold), float(confidence), rows.alpha, [float(r) for r in radii])
    for group in groups:
        members = rows.subset(group.mask.nonzero()[0])
        n = len(members)
        at_gate = radius_point(members, gate_radius, confidence)
        curve = [radius_point(members, r, confidence) for r in radii]
        overall = group_summary(members, (), confidence)
        best_possible = certified_rate_bound(n, n, rows.alpha, confidence).lower if n else 0.0
        flagged = at_gate.lower_bound is None or at_gate.lower_bound < threshold
        report.groups.append(SubgroupStats(
            group.field, group.name, group.definition, n, at_gate, curve, flagged, best_possible < threshold,
            overall["clean_accuracy"], overall["abstention_rate"]))
    return report
