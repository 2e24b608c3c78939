"""Accuracy under lighting and camera variations, set beside the L2 size of each change and the certified radius.

For each variation and severity (see :mod:`certification.failure_modes.camera_variations`) on the evaluated
examples:

* ``accuracy_smoothed``: share of examples where PREDICT of the smoothed classifier (n samples, alpha) returns
  the label; abstentions count as wrong and are reported as ``abstention_smoothed``;
* ``accuracy_base``: share where the base ONNX model's argmax returns the label (no noise);
* ``l2_mean`` / ``l2_median`` / ``l2_max``: L2 norm of (varied - clean) per image, [0,1]-pixel units;
* ``covered_share``: share of images whose change is within their own certified radius (L2 <= radius;
  abstentions have radius 0). ``coverage`` says "covered" (all), "partial" or "not covered" (none): only a
  covered change is inside what the certificate speaks about;
* ``covered_contradictions``: covered images whose PREDICT returned a class other than the certified one
  (not abstention). Each would contradict a certificate; expected 0.

Accuracies carry one-sided Clopper-Pearson bounds (``*_lower``, ``*_upper``) at ``confidence``.

JSON: ``corruptions`` is a list of objects with keys name, severity, parameter, level, n_examples, l2_mean,
l2_median, l2_max, median_certified_radius, covered_share, coverage, covered_contradictions,
accuracy_smoothed, accuracy_smoothed_lower, accuracy_smoothed_upper, abstention_smoothed, accuracy_base,
accuracy_base_lower, accuracy_base_upper. ``corruptions_clean`` holds the same accuracies on the unchanged
images (name "none", severity 0, L2 0; its covered_share is the share of examples that have a certificate).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Sequence

import numpy as np
import onnxruntime as ort

from certification.dataset_bounds import proportion_bound
from certification.failure_modes.camera_variations import VARIATIONS, apply_variation, variation
from certification.records import ABSTAIN, CertificateArrays
from certification.failure_modes.onnx_base import SmoothedPredictor, base_predict, smoothed_predictions


@dataclass(frozen=True)
class CorruptionResult:
    name: str
    severity: int
    parameter: str
    level: float
    n_examples: int
    l2_mean: float
    l2_median: float
    l2_max: float
    median_certified_radius: float
    covered_share: float
    coverage: str
    covered_contradictions: int
    accuracy_smoothed: float
    accuracy_smoothed_lower: float
    accuracy_smoothed_upper: float
    abstention_smoothed: float
    accuracy_base: float
    accuracy_base_lower: float
    accuracy_base_upper: float

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


def coverage_word(share: float) -> str:
    return "covered" if share >= 1.0 else "partial" if share > 0.0 else "not covered"


def score(
    name: str, severity: int, parameter: str, level: float, rows: CertificateArrays, l2: np.ndarray,
    smoothed: np.ndarray, base: np.ndarray, confidence: float,
) -> CorruptionResult:
    """Summarise one setting: ``rows`` are the evaluated examples' certificates, arrays are aligned with them."""
    n = len(rows)
    smoothed_ok = int((smoothed == rows.label).sum())
    base_ok = int((base == rows.label).sum())
    s_bound = proportion_bound(smoothed_ok, n, confidence)
    b_bound = proportion_bound(base_ok, n, confidence)
    covered = (l2 <= rows.radius) & ~rows.abstained
    contradicted = covered & (smoothed != ABSTAIN) & (smoothed != rows.prediction)
    share = float(covered.mean())
    return CorruptionResult(
        name, int(severity), parameter, float(level), n,
        float(l2.mean()), float(np.median(l2)), float(l2.max()),
        float(np.median(rows.radius)), share, coverage_word(share), int(contradicted.sum()),
        s_bound.estimate, s_bound.lower, float(s_bound.upper), float((smoothed == ABSTAIN).mean()),
        b_bound.estimate, b_bound.lower, float(b_bound.upper),
    )


def evaluate_corruptions(
    classifier: SmoothedPredictor,
    session: ort.InferenceSession,
    images: np.ndarray,
    rows: CertificateArrays,
    predict_n: int,
    alpha: float,
    seed: int,
    confidence: float,
    names: Sequence[str] | None = None,
    severities: Sequence[int] | None = None,
) -> tuple[CorruptionResult, list[CorruptionResult]]:
    """(clean reference, one result per variation and severity) on float32 NCHW ``images`` aligned with ``rows``.

    PREDICT uses the same ``seed`` for clean and varied images, so differences are paired (common noise).
    """
    predict_seed = seed
    clean_smoothed = smoothed_predictions(classifier, images, rows.index, predict_n, alpha, predict_seed)
    clean = score("none", 0, "", 0.0, rows, np.zeros(len(rows)), clean_smoothed, base_predict(session, images), confidence)
    results = []
    for spec in (VARIATIONS if names is None else [variation(name) for name in names]):
        for severity in (severities or range(1, len(spec.levels) + 1)):
            varied = apply_variation(images, rows.index, spec.name, severity, seed)
            l2 = np.sqrt(((varied.astype(np.float64) - images) ** 2).reshape(len(images), -1).sum(axis=1))
            smoothed = smoothed_predictions(classifier, varied, rows.index, predict_n, alpha, predict_seed)
            results.append(score(
                spec.name, severity, spec.parameter, spec.levels[severity - 1], rows, l2,
                smoothed, base_predict(session, varied), confidence,
            ))
    return clean, results
