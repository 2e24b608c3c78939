"""ISO 14971 risk estimation of the FMEA rows: severity x probability -> risk level, from an editable matrix.

``dossier_templates/risk_matrix.yaml`` defines severity levels (1..5), probability levels (each with the largest
rate it covers, ascending) and, per severity, the risk level of each probability level; risk levels are one of
``acceptable``, ``ALARP``, ``unacceptable``. A row's probability is either a measured failure rate of the evidence
(``measured: <rate name>``; its one-sided upper bound is mapped to the first level whose ``max_rate`` it does not
exceed; a rate the run did not measure is taken at the highest level) or a level stated with a rationale
(``level: P2`` and ``rationale``). The residual-risk statement counts rows per risk level.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping, Sequence

from certification.errors import InputError

RISK_LEVELS = ("acceptable", "ALARP", "unacceptable")
#: measured rates the evidence provides (certification.dossier.risk_evidence.risk_rates)
RATE_NAMES = ("uncertified_at_radius", "abstention", "worst_subgroup_uncertified", "worst_variation_error",
              "export_disagreement", "certificate_error")


@dataclass(frozen=True)
class ProbabilityLevel:
    level: str
    name: str
    max_rate: float


@dataclass(frozen=True)
class RiskMatrix:
    severities: dict[int, str]
    probabilities: tuple[ProbabilityLevel, ...]
    cells: dict[int, tuple[str, ...]]

    def probability_of(self, rate: float | None) -> ProbabilityLevel:
        """The first level whose max_rate the rate does not exceed; the highest level when not measured."""
        if rate is None:
            return self.probabilities[-1]
        return next((p for p in self.probabilities if rate <= p.max_rate), self.probabilities[-1])

    def level(self, name: str) -> ProbabilityLevel:
        return next(p for p in self.probabilities if p.level == name)

    def risk(self, severity: int, probability: str) -> str:
        return self.cells[severity][[p.level for p in self.probabilities].index(probability)]


def parse_matrix(raw: Mapping[str, Any], source: str) -> RiskMatrix:
    """Strictly checked matrix; InputError naming ``source`` and the entry on any unknown or missing level."""
    sev = raw.get("severity")
    if not isinstance(sev, Mapping) or not sev:
        raise InputError(f"{source}: 'severity' must map levels 1..5 to names")
    try:
        severities = {int(k): str(v) for k, v in sev.items()}
    except (TypeError, ValueError):
        raise InputError(f"{source}: severity levels must be integers, got {list(sev)}") from None
    probs = raw.get("probability")
    if not isinstance(probs, list) or not probs:
        raise InputError(f"{source}: 'probability' must be a list of {{level, name, max_rate}}")
    levels = []
    for i, p in enumerate(probs):
        if not isinstance(p, Mapping) or not {"level", "name", "max_rate"} <= set(p):
            raise InputError(f"{source}: probability[{i}] needs level, name and max_rate")
        rate = p["max_rate"]
        if isinstance(rate, bool) or not isinstance(rate, (int, float)) or not 0 < rate <= 1:
            raise InputError(f"{source}: probability[{i}].max_rate must lie in (0, 1], got {rate!r}")
        levels.append(ProbabilityLevel(str(p["level"]), str(p["name"]), float(rate)))
    if [p.max_rate for p in levels] != sorted({p.max_rate for p in levels}) or levels[-1].max_rate != 1.0:
        raise InputError(f"{source}: probability levels must have strictly increasing max_rate ending at 1")
    matrix = raw.get("matrix")
    if not isinstance(matrix, Mapping):
        raise InputError(f"{source}: 'matrix' must map each severity to a list of risk levels")
    cells: dict[int, tuple[str, ...]] = {}
    for s in severities:
        row = matrix.get(s, matrix.get(str(s)))
        if not isinstance(row, list) or len(row) != len(levels):
            raise InputError(f"{source}: matrix.{s} must list {len(levels)} risk levels (one per probability level)")
        for value in row:
            if value not in RISK_LEVELS:
                raise InputError(f"{source}: matrix.{s}: unknown risk level {value!r}; use one of {', '.join(RISK_LEVELS)}")
        cells[s] = tuple(row)
    extra = [k for k in matrix if int(k) not in severities] if all(str(k).isdigit() for k in matrix) else list(matrix)
    if extra:
        raise InputError(f"{source}: matrix has rows for unknown severity levels {extra}")
    return RiskMatrix(severities, tuple(levels), cells)


def check_rows(rows: Sequence[Mapping[str, Any]], matrix: RiskMatrix, source: str) -> None:
    """Every FMEA row names a known severity and either a known measured rate or a known level with a rationale."""
    names = [p.level for p in matrix.probabilities]
    for i, row in enumerate(rows):
        where = f"{source}: rows[{i}] ({row.get('id')})"
        try:
            severity = int(row["severity"])
        except (TypeError, ValueError, KeyError):
            raise InputError(f"{where}: severity must be one of {sorted(matrix.severities)}") from None
        if severity not in matrix.severities:
            raise InputError(f"{where}: unknown severity {row['severity']!r}; use one of {sorted(matrix.severities)}")
        p = row.get("probability")
        if not isinstance(p, Mapping) or ("measured" in p) == ("level" in p):
            raise InputError(f"{where}: probability must hold either 'measured: <rate>' or 'level' with 'rationale'")
        if "measured" in p and p["measured"] not in RATE_NAMES:
            raise InputError(f"{where}: unknown measured rate {p['measured']!r}; use one of {', '.join(RATE_NAMES)}")
        if "level" in p and (p["level"] not in names or not p.get("rationale")):
            raise InputError(f"{where}: probability level {p['level']!r} must be one of {', '.join(names)} with a rationale")


@dataclass(frozen=True)
class AssessedRow:
    id: str
    severity: int
    probability: ProbabilityLevel
    basis: str          # the measured rate with bound and n, or the stated rationale
    risk: str


def _rate_text(rate: Mapping[str, Any] | None, name: str) -> str:
    if rate is None:
        return f"not measured in this run ({name}); taken at the highest level"
    n = f", {rate['failures']}/{rate['trials']}" if rate.get("trials") else ""
    est = f"{100 * rate['estimate']:.1f}%, " if rate.get("estimate") is not None else ""
    return f"{rate['what']}: {est}upper bound {100 * rate['upper']:.2f}%{n}"


def assess(rows: Sequence[Mapping[str, Any]], rates: Mapping[str, Any], matrix: RiskMatrix) -> list[AssessedRow]:
    out = []
    for row in rows:
        severity = int(row["severity"])
        p = row["probability"]
        if "measured" in p:
            rate = rates.get(p["measured"])
            level = matrix.probability_of(None if rate is None else rate["upper"])
            basis = _rate_text(rate, p["measured"])
        else:
            level, basis = matrix.level(p["level"]), " ".join(str(p["rationale"]).split())
        out.append(AssessedRow(str(row["id"]), severity, level, basis, matrix.risk(severity, level.level)))
    return out


def residual_statement(assessed: Sequence[AssessedRow]) -> str:
    """Overall residual risk from the rows: acceptable only when no row is unacceptable."""
    counts = {level: [r.id for r in assessed if r.risk == level] for level in RISK_LEVELS}
    text = (f"Overall residual risk, from the {len(assessed)} rows above: {len(counts['unacceptable'])} unacceptable, "
            f"{len(counts['ALARP'])} ALARP (reduce as far as possible; benefit-risk justification needed), "
            f"{len(counts['acceptable'])} acceptable.")
    if counts["unacceptable"]:
        return text + (" The overall residual risk cannot be stated as acceptable: rows " +
                       ", ".join(counts["unacceptable"]) + " need further risk control or new evidence before release.")
    if counts["ALARP"]:
        return text + (" The overall residual risk is acceptable only if the benefit-risk analysis for rows " +
                       ", ".join(counts["ALARP"]) + " shows the benefit outweighs it; that judgement is the clinical approver's.")
    return text + " The overall residual risk is acceptable."
