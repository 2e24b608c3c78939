"""Per-example certification results (results/certify.jsonl) and the dataset numbers recomputed from them.

An example is *certified at radius r* when its prediction is correct and its certified radius is >= r
(abstentions have prediction -1, correct false and radius 0). Dataset-level lower bounds use
:func:`certification.dataset_bounds.certified_rate_bound` (method clopper-pearson-minus-alpha).
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any, Sequence

from certification.dataset_bounds import certified_rate_bound
from certification.errors import InputError

REQUIRED_KEYS = ("index", "label", "prediction", "correct", "radius")
TOLERANCE = 1e-9


@dataclass(frozen=True)
class CertifyRecord:
    """One example's certificate: test-set index, true label, prediction (-1 abstain), correctness, radius."""

    index: int
    label: int
    prediction: int
    correct: bool
    radius: float

    def certified_at(self, radius: float) -> bool:
        return self.correct and self.radius >= radius


def parse_records(data: bytes, source: str = "results/certify.jsonl") -> list[CertifyRecord]:
    """Parse JSON lines; InputError naming the line and key on malformed input or an empty file."""
    records = []
    for number, line in enumerate(data.decode("utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise InputError(f"{source}: line {number} is not valid JSON ({exc.msg})") from None
        missing = [k for k in REQUIRED_KEYS if k not in row]
        if missing:
            raise InputError(f"{source}: line {number} lacks key '{missing[0]}'")
        records.append(CertifyRecord(int(row["index"]), int(row["label"]), int(row["prediction"]),
                                     bool(row["correct"]), float(row["radius"])))
    if not records:
        raise InputError(f"{source}: no certification results; run the certify stage")
    return records


def certified_count(records: Sequence[CertifyRecord], radius: float) -> int:
    return sum(r.certified_at(radius) for r in records)


def recompute_from_records(data: bytes, evidence: dict[str, Any]) -> tuple[bool, str]:
    """Compare the evidence's headline numbers with those recomputed from the attached certify.jsonl.

    Returns (all equal, description). Checks the file hash, the example count, the clean-accuracy and
    abstention counts, and every tabulated radius's certified accuracy and lower bound.
    """
    from certification.fileio import sha256_bytes

    problems: list[str] = []
    certify = evidence["certify"]
    if sha256_bytes(data) != evidence["hashes"]["certify_jsonl_sha256"]:
        problems.append("certify.jsonl hash differs from the evidence")
    records = parse_records(data)
    n = len(records)
    if n != certify["n_examples"]:
        problems.append(f"{n} examples, evidence says {certify['n_examples']}")
    correct = sum(r.correct for r in records)
    if correct != certify["clean_accuracy"]["successes"]:
        problems.append(f"{correct} correct, evidence says {certify['clean_accuracy']['successes']}")
    abstained = sum(r.prediction == -1 for r in records)
    if abstained != certify["abstention_rate"]["successes"]:
        problems.append(f"{abstained} abstentions, evidence says {certify['abstention_rate']['successes']}")
    alpha, confidence = certify["params"]["alpha"], certify["confidence"]
    for point in certify["curve"]:
        k = certified_count(records, point["radius"])
        bound = certified_rate_bound(k, n, alpha, confidence)
        if not math.isclose(k / n, point["certified_accuracy"], abs_tol=TOLERANCE):
            problems.append(f"certified accuracy at r={point['radius']}: {k / n} vs {point['certified_accuracy']}")
        if not math.isclose(bound.lower, point["lower_bound"], abs_tol=1e-6):
            problems.append(f"lower bound at r={point['radius']}: {bound.lower} vs {point['lower_bound']}")
    if problems:
        return False, "; ".join(problems)
    return True, (f"{n} examples, {correct} correct, {abstained} abstentions and "
                  f"{len(certify['curve'])} curve points recomputed from certify.jsonl equal the evidence")
