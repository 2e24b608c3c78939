"""The deployed procedure measured: PREDICT at the device's n and alpha on the certified test images.

What runs on the device is PREDICT (Cohen et al.): n noisy copies of the [0,1] float32 NCHW image through the
shipped ONNX model, a two-sided binomial test on the top two counts, abstain when its p-value exceeds alpha.
:func:`measure_deployed_predict` runs exactly that (the library's :meth:`SmoothedClassifier.predict_many`, noise
from the PREDICT phase of (seed, test index), independent of CERTIFY's draws) on every certified test image and
reports:

* ``abstention_rate``: abstentions / images with one-sided Clopper-Pearson lower and upper bounds at
  ``confidence`` (``proportion_bound``; the upper bound is the one compared with a maximum);
* ``predictions``: PREDICT's answer per image (class or -1), in the order of ``indices``, for the triage report;
* ``agreement_with_certify``: share of images where PREDICT's answer equals CERTIFY's prediction (both may
  abstain);
* ``latency``: wall-clock seconds of single-image PREDICT calls (one image, n samples, in batches of
  ``batch_size``) on the machine that ran the stage: median, 95th percentile (nearest rank), min, max,
  repeats; this is the build machine, not necessarily the device, and the platform record says which it was.

JSON (key ``deployed``)::

    {"n": int, "alpha": float, "seed": int, "batch_size": int, "threads": int | null, "n_examples": int,
     "abstention_rate": ProportionBound dict, "agreement_with_certify": float,
     "latency": {"median_s", "p95_s", "min_s", "max_s", "repeats", "images"}, "platform": platform record}
"""
from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass
from typing import Any, Sequence

import numpy as np

from certification.dataset_bounds import proportion_bound
from certification.errors import InputError
from certification.platform_info import platform_record
from certification.records import ABSTAIN
from certification.smoothing import SmoothedClassifier


@dataclass(frozen=True)
class Latency:
    """Seconds per single-image PREDICT call."""

    median_s: float
    p95_s: float
    min_s: float
    max_s: float
    repeats: int
    images: int


@dataclass(frozen=True)
class DeployedMeasurement:
    n: int
    alpha: float
    seed: int
    batch_size: int
    threads: int | None
    n_examples: int
    abstention_rate: dict[str, Any]
    agreement_with_certify: float
    latency: Latency
    platform: dict[str, Any]
    predictions: list[int]

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out.pop("predictions")  # per-image answers feed the triage report; not repeated in the summary
        return out


def time_single_image_predict(classifier: SmoothedClassifier, images: np.ndarray, n: int, alpha: float, seed: int,
                              repeats: int) -> Latency:
    """Time ``repeats`` single-image PREDICT calls, cycling over ``images`` (float32 NCHW); one untimed warm-up."""
    if repeats < 1 or len(images) == 0:
        raise InputError(f"latency needs at least one image and one repeat, got {len(images)} images, {repeats} repeats")
    classifier.predict(images[0], n, alpha, seed, 0)  # warm-up: session allocation and thread start-up
    times = []
    for k in range(repeats):
        start = time.perf_counter()
        classifier.predict(images[k % len(images)], n, alpha, seed, k)
        times.append(time.perf_counter() - start)
    ordered = sorted(times)
    p95 = ordered[max(0, math.ceil(0.95 * len(ordered)) - 1)]
    return Latency(float(np.median(ordered)), float(p95), float(ordered[0]), float(ordered[-1]), int(repeats),
                   int(min(repeats, len(images))))


def measure_deployed_predict(classifier: SmoothedClassifier, images: np.ndarray, indices: Sequence[int],
                             certify_predictions: Sequence[int], n: int, alpha: float, seed: int, confidence: float,
                             latency_repeats: int, threads: int | None = None) -> DeployedMeasurement:
    """PREDICT (n, alpha) on ``images`` (float32 NCHW, test indices ``indices``), its abstention rate with bounds,
    agreement with CERTIFY's predictions, and single-image latency; see the module docstring."""
    if n < 1 or not 0.0 < alpha < 0.5:
        raise InputError(f"deploy.n must be >= 1 and deploy.alpha in (0, 0.5), got n {n}, alpha {alpha}")
    if len(images) != len(indices) or len(indices) != len(certify_predictions) or len(indices) == 0:
        raise InputError(f"{len(images)} images, {len(indices)} indices and {len(certify_predictions)} certificates; they must match and be non-empty")
    answers = [int(a) for a in classifier.predict_many(images, n, alpha, seed, indices=list(indices))]
    abstained = sum(a == ABSTAIN for a in answers)
    agreement = float(np.mean(np.asarray(answers) == np.asarray(certify_predictions, dtype=np.int64)))
    latency = time_single_image_predict(classifier, images, n, alpha, seed, latency_repeats)
    return DeployedMeasurement(
        int(n), float(alpha), int(seed), classifier.batch_size, threads, len(answers),
        proportion_bound(abstained, len(answers), confidence).to_dict(), agreement, latency, platform_record(), answers)
