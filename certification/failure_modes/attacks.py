"""Empirical attacks on the smoothed classifier, and a search for points that contradict a certificate.

For each attack radius eps, PGD (:mod:`certification.failure_modes.pgd`) runs on a torch model carrying the
exported model's weights; every adversarial point x' is then judged on the shipped ONNX artifact with PREDICT
(``screen_n`` samples, a seed phase distinct from certification).

* Empirical robust accuracy at eps: share of attacked examples for which neither the clean image nor any
  attacked point up to eps (a point in a smaller ball is in the larger one) made PREDICT return a class other
  than the label. A PREDICT abstention is no evidence of a wrong class and does not count against the example.
  The attack can only find flips, so this is an empirical upper bound on the smoothed classifier's robust
  accuracy, set beside the certified lower bound from the certificates of the same examples. To save time an
  example is attacked at eps only while it is still robust, or while its certificate reaches beyond eps and
  its class has not yet been moved (``attacked`` counts the examples attacked at each eps).
* Contradiction candidates: an example certified with class c and radius R, and an attacked point at measured
  distance ||x' - x|| < R whose screening PREDICT is not c (another class or abstain). A certificate says the
  smoothed classifier returns c everywhere within R, so each candidate is re-checked with fresh PREDICT samples
  (``confirm_n``, another seed phase). A candidate is CONFIRMED when that PREDICT returns a class other than c
  (abstention is not confirmation). For a valid certificate a confirmation needs a certification failure
  (probability <= alpha) or a PREDICT error (probability <= alpha), so confirmed contradictions are expected 0.

JSON (key ``attack``)::

    {"method": "pgd-l2-smoothadv", "n_examples", "steps", "samples", "sigma", "alpha", "screen_n", "confirm_n",
     "radii": [float, first 0.0], "candidates": int, "confirmed_contradictions": int,
     "contradictions": [{"index", "eps", "distance", "radius", "certified_prediction", "screen_prediction",
                         "confirm_prediction"}]   (confirmed only),
     "empirical_robust_accuracy": [{"radius", "accuracy", "upper_bound", "count", "attacked"}],
     "certified_accuracy": [{"radius", "certified_accuracy", "lower_bound", "count"}],
     "surrogate_agreement": float (torch argmax == ONNX argmax on the clean images),
     "examples": [{"index", "label", "certified_prediction", "radius", "smallest_flipping_eps"}]}
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Sequence

import numpy as np
import onnxruntime as ort
import torch

from certification.dataset_bounds import certified_rate_bound, proportion_bound
from certification.certificate_arrays import CertificateArrays
from certification.records import ABSTAIN
from certification.failure_modes.onnx_base import SmoothedPredictor, base_predict, smoothed_predictions
from certification.failure_modes.pgd import smoothed_pgd_l2


@dataclass(frozen=True)
class Contradiction:
    index: int
    eps: float
    distance: float
    radius: float
    certified_prediction: int
    screen_prediction: int
    confirm_prediction: int


@dataclass
class AttackReport:
    n_examples: int
    steps: int
    samples: int
    sigma: float
    alpha: float
    screen_n: int
    confirm_n: int
    radii: list[float]
    candidates: int = 0
    confirmed_contradictions: int = 0
    contradictions: list[Contradiction] = field(default_factory=list)
    empirical_robust_accuracy: list[dict[str, float]] = field(default_factory=list)
    certified_accuracy: list[dict[str, float]] = field(default_factory=list)
    surrogate_agreement: float = 0.0
    examples: list[dict[str, object]] = field(default_factory=list)
    method: str = "pgd-l2-smoothadv"

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


def attack_smoothed(
    model: torch.nn.Module,
    classifier: SmoothedPredictor,
    session: ort.InferenceSession,
    images: np.ndarray,
    rows: CertificateArrays,
    radii: Sequence[float],
    steps: int,
    samples: int,
    sigma: float,
    screen_n: int,
    confirm_n: int,
    alpha: float,
    confidence: float,
    noise_seed: int,
    screen_seed: int,
    confirm_seed: int,
) -> AttackReport:
    """Attack every example of ``rows`` (float32 NCHW ``images`` aligned with them) at each radius of ``radii``.

    The attack pushes away from the certified class where there is one, else from the label.
    """
    radii = sorted({0.0, *(float(r) for r in radii)})
    report = AttackReport(len(rows), steps, samples, sigma, alpha, screen_n, confirm_n, radii)
    x = torch.from_numpy(np.ascontiguousarray(images, dtype=np.float32))
    target = np.where(rows.abstained, rows.label, rows.prediction)
    with torch.no_grad():
        surrogate = model(x).argmax(dim=1).numpy()
    report.surrogate_agreement = float((surrogate == base_predict(session, images)).mean())
    generator = torch.Generator().manual_seed(noise_seed)
    robust = np.ones(len(rows), dtype=bool)
    smallest_flip = np.full(len(rows), np.nan)
    for eps in radii:
        # attack only where it can still tell something: examples not yet shown non-robust, and certificates
        # whose radius exceeds eps and whose class has not yet been moved (a flip inside a smaller ball stands)
        needed = np.flatnonzero(robust | (~rows.abstained & (rows.radius > eps) & np.isnan(smallest_flip)))
        if needed.size:
            adversarial = smoothed_pgd_l2(
                model, x[needed], torch.from_numpy(target[needed]), eps, steps, samples, sigma, generator
            ).numpy()
            distance = np.sqrt(((adversarial.astype(np.float64) - images[needed]) ** 2).reshape(len(needed), -1).sum(axis=1))
            screened = smoothed_predictions(classifier, adversarial, rows.index[needed], screen_n, alpha, screen_seed)
            robust[needed] &= (screened == rows.label[needed]) | (screened == ABSTAIN)
            flipped = (screened != target[needed]) & (screened != ABSTAIN)
            first = needed[flipped & np.isnan(smallest_flip[needed])]
            smallest_flip[first] = eps
            suspects = np.flatnonzero(
                ~rows.abstained[needed] & (distance < rows.radius[needed]) & (screened != rows.prediction[needed])
            )
            report.candidates += int(suspects.size)
            for k in suspects:
                row = needed[k]
                confirm = classifier.predict(adversarial[k], n=confirm_n, alpha=alpha, seed=confirm_seed, index=int(rows.index[row]))
                if confirm not in (ABSTAIN, int(rows.prediction[row])):
                    report.contradictions.append(Contradiction(
                        int(rows.index[row]), eps, float(distance[k]), float(rows.radius[row]),
                        int(rows.prediction[row]), int(screened[k]), int(confirm),
                    ))
        bound = proportion_bound(int(robust.sum()), len(rows), confidence)
        report.empirical_robust_accuracy.append({
            "radius": eps, "accuracy": bound.estimate, "upper_bound": float(bound.upper), "count": int(robust.sum()),
            "attacked": int(needed.size),
        })
        certified = certified_rate_bound(int(rows.certified_correct_at(eps).sum()), len(rows), rows.alpha, confidence)
        report.certified_accuracy.append(
            {"radius": eps, "certified_accuracy": certified.estimate, "lower_bound": certified.lower, "count": certified.successes}
        )
    report.confirmed_contradictions = len(report.contradictions)
    report.examples = [
        {"index": int(rows.index[i]), "label": int(rows.label[i]), "certified_prediction": int(rows.prediction[i]),
         "radius": float(rows.radius[i]), "smallest_flipping_eps": None if np.isnan(smallest_flip[i]) else float(smallest_flip[i])}
        for i in range(len(rows))
    ]
    return report
