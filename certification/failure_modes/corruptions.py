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

With a lighting covariance Sigma (:mod:`certification.lighting`, the run's ``noise.covariance``) three more keys:

* ``lighting_certified_share``: share of the evaluated examples whose actual change delta = varied - clean lies in
  their certified ellipsoid delta^T Sigma^-1 delta < R^2 (exact test; abstentions are not certified);
* ``lighting_certified_share_of_certified``: the same share among the examples that have a certificate;
* ``lighting_contradictions``: ellipsoid-certified images whose PREDICT returned another class (expected 0).

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
from certification.errors import InputError
from certification.lighting import LightingCovariance
from certification.failure_modes.camera_variations import VARIATIONS, apply_variation, variation
from certification.certificate_arrays import CertificateArrays
from certification.records import ABSTAIN
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
    lighting_certified_share: float | None = None
    lighting_certified_share_of_certified: float | None = None
    lighting_contradictions: int | None = None

    def to_dict(self) -> dict[str, object]:
        """Every field; the lighting ones only for a lighting run (isotropic documents keep their keys)."""
        data = asdict(self)
        if self.lighting_certified_share is None:
            for key in ("lighting_certified_share", "lighting_certified_share_of_certified", "lighting_contradictions"):
                del data[key]
        return data


def coverage_word(share: float) -> str:
    return "covered" if share >= 1.0 else "partial" if share > 0.0 else "not covered"


def score(
    name: str, severity: int, parameter: str, level: float, rows: CertificateArrays, l2: np.ndarray,
    smoothed: np.ndarray, base: np.ndarray, confidence: float, lit: np.ndarray | None = None,
) -> CorruptionResult:
    """Summarise one setting: ``rows`` are the evaluated examples' certificates, arrays are aligned with them
    (``lit``: per example, the change lies in the certified ellipsoid; None for isotropic runs)."""
    n = len(rows)
    smoothed_ok = int((smoothed == rows.label).sum())
    base_ok = int((base == rows.label).sum())
    s_bound = proportion_bound(smoothed_ok, n, confidence)
    b_bound = proportion_bound(base_ok, n, confidence)
    covered = (l2 <= rows.radius) & ~rows.abstained
    contradicted = covered & (smoothed != ABSTAIN) & (smoothed != rows.prediction)
    share = float(covered.mean())
    lighting: tuple[float | None, float | None, int | None] = (None, None, None)
    if lit is not None:
        lit = lit & ~rows.abstained
        certified = int((~rows.abstained).sum())
        lighting = (float(lit.mean()), float(lit.sum() / certified) if certified else 0.0,
                    int((lit & (smoothed != ABSTAIN) & (smoothed != rows.prediction)).sum()))
    return CorruptionResult(
        name, int(severity), parameter, float(level), n,
        float(l2.mean()), float(np.median(l2)), float(l2.max()),
        float(np.median(rows.radius)), share, coverage_word(share), int(contradicted.sum()),
        s_bound.estimate, s_bound.lower, float(s_bound.upper), float((smoothed == ABSTAIN).mean()),
        b_bound.estimate, b_bound.lower, float(b_bound.upper), *lighting,
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
    lighting: LightingCovariance | None = None,
    mahalanobis_radius: np.ndarray | None = None,
) -> tuple[CorruptionResult, list[CorruptionResult]]:
    """(clean reference, one result per variation and severity) on float32 NCHW ``images`` aligned with ``rows``.

    PREDICT uses the same ``seed`` for clean and varied images, so differences are paired (common noise). With
    ``lighting`` (the covariance the classifier smooths with) and the rows' ``mahalanobis_radius`` each change is
    also put to the exact ellipsoid test.
    """
    if (lighting is None) != (mahalanobis_radius is None):
        raise InputError("the ellipsoid test needs both the lighting covariance and the rows' mahalanobis_radius")
    predict_seed = seed
    clean_smoothed = smoothed_predictions(classifier, images, rows.index, predict_n, alpha, predict_seed)
    unchanged = None if lighting is None else ~rows.abstained  # delta = 0 lies in every certified ellipsoid
    clean = score("none", 0, "", 0.0, rows, np.zeros(len(rows)), clean_smoothed, base_predict(session, images), confidence,
                  unchanged)
    results = []
    for spec in (VARIATIONS if names is None else [variation(name) for name in names]):
        for severity in (severities or range(1, len(spec.levels) + 1)):
            varied = apply_variation(images, rows.index, spec.name, severity, seed)
            l2 = np.sqrt(((varied.astype(np.float64) - images) ** 2).reshape(len(images), -1).sum(axis=1))
            smoothed = smoothed_predictions(classifier, varied, rows.index, predict_n, alpha, predict_seed)
            lit = None
            if lighting is not None and mahalanobis_radius is not None:
                delta = varied.astype(np.float64) - images.astype(np.float64)
                lit = np.asarray(lighting.certifies(delta, mahalanobis_radius), dtype=bool)
            results.append(score(
                spec.name, severity, spec.parameter, spec.levels[severity - 1], rows, l2,
                smoothed, base_predict(session, varied), confidence, lit,
            ))
    return clean, results
