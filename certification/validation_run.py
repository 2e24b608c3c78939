"""Validation certification of one candidate model, for sigma selection (:mod:`certification.sigma_selection`).

CERTIFY (:class:`certification.smoothing.SmoothedClassifier`) of the ONNX model on a seeded subset of the
VALIDATION split, with per-example noise streams seeded from (seed, example index) exactly as the certify run's, so
every candidate is judged on the same examples and the same noise. Nothing is written but the summary; the test
split is never read here.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Sequence

from certification.certify_run import RunOptions, open_run, record_from_result
from certification.fileio import sha256_file
from certification.progress import progress
from certification.sigma_selection import ValidationMetrics
from certification.summary import check_summary_options, summarize


@dataclass(frozen=True)
class ValidationSettings:
    """CERTIFY's sample sizes, per-example alpha, noise seed, the subset size (0 = every validation example) and
    the one-sided confidence of the dataset-level bounds."""

    n0: int
    n: int
    alpha: float
    seed: int
    max_examples: int
    confidence: float


def validate_model(model_path: str | os.PathLike[str], val_path: str | os.PathLike[str], sigma: float, radius: float,
                   settings: ValidationSettings, class_names: Sequence[str], *, batch_size: int,
                   threads: int | None = None, noise_threads: int | None = None) -> ValidationMetrics:
    """Certify the validation subset at ``sigma`` and summarise it at ``radius`` (both [0,1]-pixel L2 units).

    Bounds as the certify stage's: clean and certified accuracy with Clopper-Pearson lower bounds at
    ``settings.confidence`` (certified accuracy less the per-example failure probability alpha).
    """
    options = RunOptions(sigma=sigma, alpha=settings.alpha, seed=settings.seed, batch_size=batch_size,
                         max_examples=settings.max_examples, threads=threads, noise_threads=noise_threads)
    options.check(settings.n0, settings.n)
    radii = check_summary_options([0.0, radius], settings.confidence)
    classifier, split, indices = open_run(model_path, val_path, options, num_classes=len(class_names))
    images, labels = split.model_input(indices), split.labels[indices]
    data_sha256, model_sha256 = sha256_file(val_path), classifier.base_classifier.sha256
    records = []
    with progress(total=len(indices), desc="validate", unit="ex") as bar:
        for result in classifier.iter_certify(images, labels, settings.n0, settings.n, settings.alpha, settings.seed,
                                              indices=indices):
            records.append(record_from_result(result, settings.alpha, sigma, settings.seed, model_sha256=model_sha256,
                                              data_sha256=data_sha256))
            bar.update(1)
    summary = summarize(records, radii, settings.confidence, class_names)
    point = next(p for p in summary["curve"] if p["radius"] == float(radius))
    return ValidationMetrics(
        sigma=float(sigma), radius=float(radius), n_examples=int(summary["n_examples"]),
        certified_accuracy=float(point["certified_accuracy"]), certified_accuracy_lower=float(point["lower_bound"]),
        clean_accuracy=float(summary["clean_accuracy"]["estimate"]),
        clean_accuracy_lower=float(summary["clean_accuracy"]["lower"]),
        average_certified_radius=float(summary["average_certified_radius"]),
        abstention_rate=float(summary["abstention_rate"]["estimate"]), n0=settings.n0, n=settings.n,
        alpha=float(settings.alpha), seed=settings.seed, confidence=float(settings.confidence),
    )
