"""Incremental randomized smoothing (Ugare, Suresh, Banerjee, Misailovic and Singh, ICLR 2024): certify an
approximate base classifier f^a (the int8, pruned or otherwise changed network) by reusing the certificate of
the original f and estimating only how often the two disagree under the same noise.

For an example x with the original certificate (class cA, lower bound p_A on P(f(x + e) = cA), e ~ N(0,
sigma^2 I), valid with probability >= 1 - alpha_f) and zeta = P(f(x + e) != f^a(x + e)):

    P(f^a(x + e) = cA) >= P(f(x + e) = cA) - zeta >= p_A - zeta_upper,

where zeta_upper is the one-sided Clopper-Pearson upper bound at level alpha_zeta on zeta from n_p fresh noisy
samples, each evaluated by both networks (noise stream phase :data:`PHASE_DISAGREEMENT`, independent of the
original's selection and estimation streams). With p_A^a = p_A - zeta_upper:

**Guarantee.** If p_A^a > 1/2, the smoothed approximate classifier g^a returns cA everywhere within L2 radius
R = sigma * Phi^-1(p_A^a) of x, with probability at least 1 - (alpha_f + alpha_zeta) over the noise of both
certifications (a union bound over the two bounds, as in the paper). Otherwise, and whenever the original
certificate abstained, the answer is to abstain. The record's ``alpha`` is that total, alpha_f + alpha_zeta.

Why it saves work: zeta is small for a faithful approximation, and a bound near 0 needs far fewer samples than
a bound on p_A near 1 (n_p << n), so only n_p evaluations of each network per example are spent instead of
n0 + n of f^a. The price is a smaller radius (p_A^a < p_A); the paper falls back to a full certification
when p_A is low, which this module leaves to the caller (certify the approximate model in full).
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Iterator, Sequence

import numpy as np
from scipy.stats import norm
from statsmodels.stats.proportion import proportion_confint

from certification.errors import InputError
from certification.noise_sampling import NoiseJob, NoisyCounter
from certification.onnx_model import OnnxClassifier
from certification.records import ABSTAIN
from certification.smoothing import check_parameters, check_sigma_and_batch

#: Noise stream phase of the disagreement samples (0, 1, 2 are CERTIFY's selection, estimation and PREDICT).
PHASE_DISAGREEMENT = 3


@dataclass(frozen=True)
class IncrementalResult:
    """The incremental certificate of one example: ``prediction`` cA (or -1) with ``radius`` R, ``p_lower`` =
    max(0, original p_A - ``zeta_upper``), ``disagreements`` of ``n_p`` noisy samples (0 and 0 when the original
    abstained: nothing is sampled)."""

    index: int
    prediction: int
    radius: float
    p_lower: float
    disagreements: int
    n_p: int
    zeta_upper: float
    seconds: float


def disagreement_upper_bound(disagreements: int, n_p: int, alpha: float) -> float:
    """One-sided (1 - alpha) Clopper-Pearson upper bound on zeta from ``disagreements`` in ``n_p`` samples."""
    return float(proportion_confint(disagreements, n_p, alpha=2 * alpha, method="beta")[1])


def incremental_answer(original_prediction: int, original_p_lower: float, zeta_upper: float,
                       sigma: float) -> tuple[int, float, float]:
    """(prediction, radius, p_A^a): cA with sigma * Phi^-1(p_A - zeta_upper) when that bound exceeds 1/2, else
    abstain (-1, 0.0)."""
    p_lower = max(0.0, float(original_p_lower) - float(zeta_upper))
    if original_prediction == ABSTAIN or p_lower <= 0.5:
        return ABSTAIN, 0.0, p_lower
    return int(original_prediction), float(sigma) * float(norm.ppf(p_lower)), p_lower


class IncrementalCertifier:
    """Certifies the smoothed ``approximate`` classifier from certificates of the smoothed ``original`` one."""

    def __init__(self, original: OnnxClassifier, approximate: OnnxClassifier, sigma: float, batch_size: int = 1000,
                 noise_threads: int = 1, prefetch: int = 2) -> None:
        check_sigma_and_batch(sigma, batch_size)
        if original.num_classes != approximate.num_classes:
            raise InputError(f"{approximate.path}: {approximate.num_classes} outputs, but the original model "
                             f"{original.path} has {original.num_classes}; an incremental certificate needs the same classes")
        self.original, self.approximate = original, approximate
        self.sigma, self.batch_size = float(sigma), int(batch_size)
        self.noise_threads, self.prefetch = max(1, int(noise_threads)), int(prefetch)

    def _disagree(self, batch: np.ndarray) -> np.ndarray:
        """1 where f and f^a give different labels on the same noisy image, else 0."""
        return (self.original.predict_labels(batch) != self.approximate.predict_labels(batch)).astype(np.int64)

    def iter_certify(self, images: np.ndarray, predictions: Sequence[int], p_lowers: Sequence[float], n_p: int,
                     alpha_zeta: float, seed: int, indices: Sequence[int]) -> Iterator[IncrementalResult]:
        """The incremental certificate of each image (float32 N, C, H, W in [0, 1]) from its original
        ``predictions[j]`` and ``p_lowers[j]``; noise of example ``indices[j]`` from (seed, index,
        :data:`PHASE_DISAGREEMENT`), so results do not depend on batching, threads or order."""
        check_parameters(alpha_zeta, seed, n_p=n_p)
        images = np.ascontiguousarray(images, dtype=np.float32)
        if not (len(images) == len(predictions) == len(p_lowers) == len(indices)):
            raise InputError("images, original predictions, bounds and indices must have the same length")
        self.approximate.check_input_shape(images.shape[1:], "images")
        self.original.check_input_shape(images.shape[1:], "images")
        # an original bound <= 1/2 cannot give a certificate: nothing is sampled for it
        wanted = [int(p) != ABSTAIN and float(q) > 0.5 for p, q in zip(predictions, p_lowers)]
        jobs = (NoiseJob(x, int(seed), int(i), PHASE_DISAGREEMENT, int(n_p) if w else 0)
                for x, i, w in zip(images, indices, wanted))
        counter = NoisyCounter(self._disagree, 2, self.sigma, self.batch_size, tuple(images.shape[1:]),
                               prefetch=self.prefetch, workers=self.noise_threads)
        start = time.perf_counter()
        for counts, index, prediction, p_lower, sampled in zip(counter.count(jobs), indices, predictions, p_lowers, wanted):
            k, n = (int(counts[1]), int(n_p)) if sampled else (0, 0)
            zeta_upper = disagreement_upper_bound(k, n, alpha_zeta) if sampled else 1.0
            answer, radius, bound = incremental_answer(int(prediction), float(p_lower), zeta_upper, self.sigma)
            now = time.perf_counter()
            yield IncrementalResult(int(index), answer, radius, bound, k, n, zeta_upper, now - start)
            start = now
