"""The dossier's check that its attached per-example results (certify.jsonl) produce the evidence's numbers.

The check recomputes the dataset summary from the attached rows with the producer of metrics/certify.json
itself (:func:`certification.summary.summarize`), so the dossier's numbers and the check cannot drift apart.
"""
from __future__ import annotations

import math
from typing import Any, Mapping

from certification.fileio import sha256_bytes
from certification.records import parse_certify_records
from certification.summary import summarize

TOLERANCE = 1e-9


def recompute_from_records(data: bytes, evidence: Mapping[str, Any]) -> tuple[bool, str]:
    """Compare the evidence's headline numbers with those recomputed from the attached certify.jsonl.

    Returns (all equal, description). Checks the file hash, the example count, the clean-accuracy and abstention
    counts and bounds, and every tabulated radius's certified accuracy and lower bound.
    """
    problems: list[str] = []
    certify = evidence["certify"]
    if sha256_bytes(data) != evidence["hashes"]["certify_jsonl_sha256"]:
        problems.append("certify.jsonl hash differs from the evidence")
    records = parse_certify_records(data, "attached certify.jsonl")
    radii = [float(point["radius"]) for point in certify["curve"]]
    again = summarize(records, radii, float(certify["confidence"]), certify["class_names"])
    if again["n_examples"] != certify["n_examples"]:
        problems.append(f"{again['n_examples']} examples, evidence says {certify['n_examples']}")
    for key in ("clean_accuracy", "abstention_rate"):
        mine, theirs = again[key], certify[key]
        if mine["successes"] != theirs["successes"] or not math.isclose(mine["lower"], theirs["lower"], abs_tol=TOLERANCE):
            problems.append(f"{key}: {mine['successes']} of {mine['trials']}, evidence says {theirs['successes']} of {theirs['trials']}")
    for mine, theirs in zip(again["curve"], certify["curve"]):
        for key in ("certified_accuracy", "lower_bound"):
            if not math.isclose(mine[key], theirs[key], abs_tol=TOLERANCE):
                problems.append(f"{key} at r={mine['radius']}: {mine[key]} vs {theirs[key]}")
    if problems:
        return False, "; ".join(problems)
    return True, (f"{again['n_examples']} examples, {again['clean_accuracy']['successes']} correct, "
                  f"{again['abstention_rate']['successes']} abstentions and {len(again['curve'])} curve points "
                  "recomputed from certify.jsonl equal the evidence")
