"""Randomized smoothing (Cohen, Rosenfeld and Kolter, ICML 2019) of an ONNX base classifier.

The smoothed classifier is g(x) = argmax_c P(f(x + e) = c), e ~ N(0, sigma^2 I), where f is the base classifier
(the exported ONNX model, run by onnxruntime) and x is a float32 (C, H, W) image in [0, 1]. Sigma and every radius
are L2 norms in [0, 1]-pixel units. The noise is never clipped to [0, 1]: clipping changes the smoothing
distribution and voids the guarantee.

The methods read like the paper's pseudo-code: :meth:`SmoothedClassifier.certify` is CERTIFY,
:meth:`SmoothedClassifier.predict` is PREDICT, :meth:`SmoothedClassifier._sample_noise` is SAMPLE-UNDER-NOISE and
:meth:`SmoothedClassifier.lower_confidence_bound` is LOWER-CONF-BOUND. Noise is seeded per example from
(seed, example index, phase), so every count is reproducible (see :mod:`certification.noise_sampling`).
"""
from __future__ import annotations

import math
import os
import time
from dataclasses import asdict, dataclass
from typing import Any, Iterable, Iterator, Sequence

import numpy as np
from scipy.stats import binomtest, norm
from statsmodels.stats.proportion import proportion_confint

from certification.errors import InputError
from certification.lighting import LightingCovariance
from certification.records import ABSTAIN
from certification.noise_sampling import (
    PHASE_ESTIMATION,
    PHASE_PREDICT,
    PHASE_SELECTION,
    NoiseJob,
    NoiseStream,
    NoisyCounter,
)
from certification.onnx_model import PROVIDERS, OnnxClassifier, default_threads
from certification.platform_info import platform_record



@dataclass(frozen=True)
class CertifyResult:
    """CERTIFY's answer for one example.

    ``prediction`` is the class cA (or -1 to abstain) and ``radius`` R (0.0 when abstaining): with probability
    at least 1 - alpha over the noise, g(x') = cA for every x' with ||x' - x||_2 < R.
    """

    index: int
    prediction: int
    radius: float
    n0: int
    n: int
    n_a: int
    p_lower: float
    counts_selection: list[int]
    counts_estimation: list[int]
    seconds: float
    label: int | None = None
    #: R = Phi^-1(p_lower) (0.0 when abstaining): g returns cA on the ellipsoid delta^T Sigma^-1 delta < R^2 of the
    #: smoothing covariance (:mod:`certification.lighting`); ``radius`` = sigma * R.
    mahalanobis_radius: float = 0.0

    @property
    def abstained(self) -> bool:
        return self.prediction == ABSTAIN

    @property
    def correct(self) -> bool:
        """The certified class is the label (False when abstaining or when no label is known)."""
        return self.label is not None and self.prediction == self.label

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


def check_parameters(alpha: float, seed: int, **counts: int) -> None:
    """Raise InputError unless 0 < alpha < 0.5, seed >= 0 and every count (n0, n) is an integer >= 1."""
    if not (isinstance(alpha, (int, float)) and 0.0 < float(alpha) < 0.5):
        raise InputError(f"alpha must lie in (0, 0.5), got {alpha}; use e.g. 0.001")
    if not isinstance(seed, (int, np.integer)) or seed < 0:
        raise InputError(f"seed must be a non-negative integer, got {seed!r}")
    for name, value in counts.items():
        if not isinstance(value, (int, np.integer)) or value < 1:
            raise InputError(f"{name} must be an integer of at least 1, got {value!r}")


#: Largest accepted noise level: images live in [0, 1], so noise of this size already drowns any image.
MAX_SIGMA = 10.0


def check_sigma_and_batch(sigma: float, batch_size: int) -> None:
    """Raise InputError unless 0 < sigma <= MAX_SIGMA (finite) and batch_size is an integer >= 1."""
    if isinstance(sigma, bool) or not isinstance(sigma, (int, float)) or not math.isfinite(sigma) or sigma <= 0:
        raise InputError(f"sigma must be a positive number in [0,1]-pixel units, got {sigma}")
    if sigma > MAX_SIGMA:
        raise InputError(f"sigma {sigma} is far beyond the [0, 1] pixel range (at most {MAX_SIGMA}); give sigma in "
                         "[0,1]-pixel units, not 8-bit grey levels")
    if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
        raise InputError(f"batch size must be an integer of at least 1, got {batch_size!r}")


def _check_pixels(images: np.ndarray, where: str) -> None:
    if not np.all(np.isfinite(images)):
        raise InputError(f"{where} contains NaN or inf; clean the data before certifying")
    lo, hi = float(images.min(initial=0.0)), float(images.max(initial=0.0))
    if lo < 0.0 or hi > 1.0:
        raise InputError(f"{where} must lie in [0, 1] (got min {lo:.4g}, max {hi:.4g}); divide 8-bit pixels by 255")


def default_inference_threads() -> int:
    """onnxruntime intra-op threads when none are given: half the usable cores, rounded up (1 on 2 cores).

    The other half draws noise (:func:`default_noise_threads`): on the default model a noise value costs about
    as much CPU time as its inference, and inference stops gaining from threads well before all cores are used
    (``benchmarks/certify_throughput.py`` measures the split; figures in ``benchmarks/RESULTS.md``)."""
    return max(1, (default_threads() + 1) // 2)


def default_noise_threads(base_classifier: OnnxClassifier) -> int:
    """Threads for drawing noise: the usable cores that onnxruntime's CPU threads leave free, at least one
    (with CUDA inference, every core but the one feeding the GPU)."""
    cores = default_threads()
    if base_classifier.session_config.get("provider") == PROVIDERS["cpu"]:
        return max(1, cores - int(base_classifier.session_config["intra_op_num_threads"]))
    return max(1, cores - 1)


def predict_from_counts(counts: Sequence[int] | np.ndarray, alpha: float) -> int:
    """PREDICT's rule on label counts (K,) of n noisy samples: the top class (lowest index among equal counts), or
    -1 (abstain) when the two-sided binomial test (p = 1/2) of the top two counts has a p-value above alpha. The
    device applies the same rule to the counts of models/smoothed.onnx (README: the device PREDICT rule)."""
    counts = np.asarray(counts)
    order = np.argsort(-counts, kind="stable")
    count1, count2 = int(counts[order[0]]), int(counts[order[1]])
    if binomtest(count1, count1 + count2, p=0.5).pvalue > alpha:
        return ABSTAIN
    return int(order[0])


class SmoothedClassifier:
    """A smoothed classifier g built from an ONNX base classifier f and a noise level sigma."""

    ABSTAIN = ABSTAIN

    def __init__(self, base_classifier: OnnxClassifier, sigma: float, batch_size: int = 1000, prefetch: int = 2,
                 noise_threads: int | None = None, lighting: LightingCovariance | None = None) -> None:
        """``sigma``: noise standard deviation in [0, 1]-pixel units; ``batch_size``: noisy copies per inference call;
        ``prefetch``: noisy batches drawn ahead of the model (0: none, noise and inference take turns on the calling
        thread); ``noise_threads``: threads drawing noise (default: the usable cores onnxruntime's threads leave,
        at least one). None of them changes any count. ``lighting``: the anisotropic covariance
        sigma^2 I + tau'^2 V^T V (:mod:`certification.lighting`, its sigma must be ``sigma``); None: N(0, sigma^2 I)."""
        check_sigma_and_batch(sigma, batch_size)
        if lighting is not None and lighting.sigma != float(sigma):
            raise InputError(f"the lighting covariance was built for sigma {lighting.sigma}, not {sigma}; build it with the run's sigma")
        self.lighting = None if lighting is None or lighting.isotropic else lighting
        if noise_threads is not None and (isinstance(noise_threads, bool) or not isinstance(noise_threads, (int, np.integer)) or noise_threads < 1):
            raise InputError(f"the number of noise threads (--noise-threads) must be a positive integer, got {noise_threads!r}")
        self.base_classifier = base_classifier
        self.sigma = float(sigma)
        self.batch_size = int(batch_size)
        self.prefetch = int(prefetch)
        self.noise_threads = int(noise_threads) if noise_threads is not None else default_noise_threads(base_classifier)

    @classmethod
    def from_onnx(
        cls, path: str | os.PathLike[str], sigma: float, batch_size: int = 1000, threads: int | None = None, provider: str = "auto",
        noise_threads: int | None = None, prefetch: int = 2, lighting: LightingCovariance | None = None,
    ) -> "SmoothedClassifier":
        """Smooth the ONNX model at ``path`` (float32 NCHW input in [0, 1], output (N, K) class scores).

        ``threads``: onnxruntime intra-op threads (default: :func:`default_inference_threads`, half the cores);
        ``noise_threads``, ``prefetch``: see the constructor. None of them changes any count."""
        check_sigma_and_batch(sigma, batch_size)
        if threads is None:
            threads = default_inference_threads()
        return cls(OnnxClassifier(path, threads=threads, provider=provider), sigma, batch_size, prefetch=prefetch,
                   noise_threads=noise_threads, lighting=lighting)

    @property
    def num_classes(self) -> int:
        return self.base_classifier.num_classes

    def runtime_record(self) -> dict[str, Any]:
        """The onnxruntime session configuration, the number of noise threads and the platform
        (:func:`certification.platform_info.platform_record`: CPU, numpy SIMD levels, versions, ISA overrides)."""
        return {**self.base_classifier.session_config, "noise_threads": self.noise_threads, "platform": platform_record()}

    # ---------------------------------------------------------------- CERTIFY
    def certify(self, x: np.ndarray, n0: int, n: int, alpha: float, seed: int, index: int = 0) -> CertifyResult:
        """CERTIFY: the class cA and radius R such that, with probability >= 1 - alpha over the noise, g returns cA
        everywhere within L2 radius R of x; or abstain (prediction -1, radius 0.0).

        n0 noisy samples select the top class; a fresh, independent set of n samples estimates its probability;
        the one-sided Clopper-Pearson lower bound pA at level alpha gives R = sigma * Phi^-1(pA); abstain when
        pA < 1/2. ``x`` is one float32 (C, H, W) image in [0, 1]; noise comes from (seed, index).
        With a lighting covariance Sigma the same bound also gives ``mahalanobis_radius`` Phi^-1(pA): g returns cA
        on the whole ellipsoid delta^T Sigma^-1 delta < R^2, which contains the L2 ball of radius sigma * R.
        """
        check_parameters(alpha, seed, n0=n0, n=n)
        images = self._check_images(np.asarray(x)[None], "image")
        return next(self._iter_certify(images, None, n0, n, alpha, seed, self._check_indices([index], 1)))

    def certify_many(self, *args: Any, **kwargs: Any) -> list[CertifyResult]:
        """CERTIFY each image of a float32 (N, C, H, W) batch (the arguments of :meth:`iter_certify`): example j is
        certified with noise index ``indices[j]`` (default: its position j), so a subset or shard keeps the counts
        of the full run."""
        return list(self.iter_certify(*args, **kwargs))

    def iter_certify(
        self,
        images: np.ndarray,
        labels: Sequence[int] | np.ndarray | None,
        n0: int,
        n: int,
        alpha: float,
        seed: int,
        indices: Sequence[int] | np.ndarray | None = None,
    ) -> Iterator[CertifyResult]:
        """CERTIFY each image of ``images`` (labels optional), yielding each result as soon as it is complete (for
        progress and resume); see :meth:`certify_many`."""
        check_parameters(alpha, seed, n0=n0, n=n)
        images = self._check_images(np.asarray(images), "images")
        label_list = self._check_labels(labels, images.shape[0])
        index_list = self._check_indices(indices, images.shape[0])
        return self._iter_certify(images, label_list, n0, n, alpha, seed, index_list)

    def _iter_certify(
        self, images: np.ndarray, labels: list[int] | None, n0: int, n: int, alpha: float, seed: int, indices: list[int]
    ) -> Iterator[CertifyResult]:
        def jobs() -> Iterator[NoiseJob]:
            for x, index in zip(images, indices):
                yield NoiseJob(x, int(seed), index, PHASE_SELECTION, int(n0))
                yield NoiseJob(x, int(seed), index, PHASE_ESTIMATION, int(n))

        counts_stream = self._sample_noise(jobs(), images.shape[1:])
        start = time.perf_counter()
        for position, index in enumerate(indices):
            counts_selection = next(counts_stream)
            counts_estimation = next(counts_stream)
            c_hat_a = int(np.argmax(counts_selection))
            n_a = int(counts_estimation[c_hat_a])
            p_lower = self.lower_confidence_bound(n_a, int(n), float(alpha))
            if p_lower < 0.5:
                prediction, mahalanobis = ABSTAIN, 0.0
            else:
                prediction, mahalanobis = c_hat_a, float(norm.ppf(p_lower))
            radius = self.sigma * mahalanobis if prediction != ABSTAIN else 0.0
            now = time.perf_counter()
            yield CertifyResult(
                index=index,
                prediction=prediction,
                radius=radius,
                n0=int(n0),
                n=int(n),
                n_a=n_a,
                p_lower=p_lower,
                counts_selection=[int(c) for c in counts_selection],
                counts_estimation=[int(c) for c in counts_estimation],
                seconds=now - start,
                label=None if labels is None else labels[position],
                mahalanobis_radius=mahalanobis,
            )
            start = now

    # ---------------------------------------------------------------- PREDICT
    def predict(self, x: np.ndarray, n: int, alpha: float, seed: int, index: int = 0) -> int:
        """PREDICT: g(x), or -1 to abstain. With probability >= 1 - alpha over the noise the answer is either
        -1 or g(x): the top two counts of n noisy samples are compared by a two-sided binomial test and the
        method abstains when its p-value exceeds alpha."""
        check_parameters(alpha, seed, n=n)
        images = self._check_images(np.asarray(x)[None], "image")
        return self._predict_many(images, n, alpha, seed, self._check_indices([index], 1))[0]

    def predict_many(
        self, images: np.ndarray, n: int, alpha: float, seed: int, indices: Sequence[int] | np.ndarray | None = None
    ) -> list[int]:
        """PREDICT for each image of a float32 (N, C, H, W) batch, noise index ``indices[j]`` (default j)."""
        images = self._check_images(np.asarray(images), "images")
        return self._predict_many(images, n, alpha, seed, self._check_indices(indices, images.shape[0]))

    def predict_counts(
        self, images: np.ndarray, n: int, seed: int, indices: Sequence[int] | np.ndarray | None = None
    ) -> list[np.ndarray]:
        """The PREDICT-phase label counts (K,) of n noisy samples per image (for callers that need the counts)."""
        images = self._check_images(np.asarray(images), "images")
        index_list = self._check_indices(indices, images.shape[0])
        check_parameters(0.25, seed, n=n)
        jobs = (NoiseJob(x, int(seed), i, PHASE_PREDICT, int(n)) for x, i in zip(images, index_list))
        return list(self._sample_noise(jobs, images.shape[1:]))

    def _predict_many(self, images: np.ndarray, n: int, alpha: float, seed: int, indices: list[int]) -> list[int]:
        check_parameters(alpha, seed, n=n)
        return [predict_from_counts(counts, alpha) for counts in self.predict_counts(images, n, seed, indices)]

    # ---------------------------------------------------------------- SAMPLE-UNDER-NOISE
    def _sample_noise(self, jobs: Iterable[NoiseJob], chw: tuple[int, ...]) -> Iterator[np.ndarray]:
        """SAMPLE-UNDER-NOISE: for each job, the counts (K,) of f(x + e) over its ``num`` draws e ~ N(0, sigma^2 I)
        (unclipped), drawn from the job's own stream (seed, index, phase); streamed in batches."""
        counter = NoisyCounter(
            self.base_classifier.predict_labels, self.num_classes, self.sigma, self.batch_size, tuple(chw),
            prefetch=self.prefetch, workers=self.noise_threads, lighting=self.lighting,
        )
        return counter.count(jobs)

    def count_stream(self, x: np.ndarray, seed: int, index: int, phase: int) -> "NoiseCountStream":
        """SAMPLE-UNDER-NOISE in installments, for sequential tests: a stream whose ``draw(m)`` returns the label
        counts (K,) of the next m draws of the noise stream (seed, index, phase). Draw j of the stream is draw j of
        the one-shot sampling above (same generator, same float32 arithmetic), so the counts over draws [0, m),
        however they are split into installments, equal a one-shot call with num=m (e.g. CERTIFY's estimation
        counts for phase 1). ``x`` is one float32 (C, H, W) image in [0, 1]."""
        images = self._check_images(np.asarray(x)[None], "image")
        check_parameters(0.25, seed)
        if int(phase) not in (PHASE_SELECTION, PHASE_ESTIMATION, PHASE_PREDICT) or int(index) < 0:
            raise InputError(f"noise stream needs a phase in 0..2 and a non-negative index, got phase {phase}, index {index}")
        return NoiseCountStream(self.base_classifier.predict_labels, self.num_classes, self.batch_size, images[0],
                                NoiseStream(int(seed), int(index), int(phase), images.shape[1:], self.sigma, self.lighting))

    # ---------------------------------------------------------------- LOWER-CONF-BOUND
    @staticmethod
    def lower_confidence_bound(n_a: int, n: int, alpha: float) -> float:
        """LOWER-CONF-BOUND: one-sided (1 - alpha) Clopper-Pearson lower bound on p from n_a successes in n trials."""
        return float(proportion_confint(n_a, n, alpha=2 * alpha, method="beta")[0])

    # ---------------------------------------------------------------- input checks
    def _check_images(self, images: np.ndarray, where: str) -> np.ndarray:
        if images.ndim != 4:
            raise InputError(f"{where} must be float32 (N, C, H, W) (one image: (C, H, W)), got shape {images.shape}")
        if not np.issubdtype(images.dtype, np.floating):
            raise InputError(f"{where} must be float32 in [0, 1], got dtype {images.dtype}; divide 8-bit pixels by 255")
        self.base_classifier.check_input_shape(images.shape[1:], where)
        if self.lighting is not None and tuple(images.shape[1:]) != self.lighting.chw:
            raise InputError(f"{where} have shape {tuple(images.shape[1:])} but the lighting covariance was built for "
                             f"{self.lighting.chw}; build it for the data's image shape")
        images = np.ascontiguousarray(images, dtype=np.float32)
        _check_pixels(images, where)
        return images

    def _check_labels(self, labels: Sequence[int] | np.ndarray | None, count: int) -> list[int] | None:
        if labels is None:
            return None
        array = np.asarray(labels)
        if array.shape != (count,) or (count and not np.issubdtype(array.dtype, np.integer)):
            raise InputError(f"labels must be {count} integers, got dtype {array.dtype} shape {array.shape}")
        bad = array[(array < 0) | (array >= self.num_classes)]
        if bad.size:
            raise InputError(f"label {int(bad[0])} is outside the class range [0, {self.num_classes}) of the model")
        return [int(v) for v in array]

    @staticmethod
    def _check_indices(indices: Sequence[int] | np.ndarray | None, count: int) -> list[int]:
        if indices is None:
            return list(range(count))
        array = np.asarray(indices)
        if array.shape != (count,) or (count and not np.issubdtype(array.dtype, np.integer)):
            raise InputError(f"indices must be {count} integers, got dtype {array.dtype} shape {array.shape}")
        if count and array.min() < 0:
            raise InputError(f"example indices must be non-negative, got {int(array.min())}")
        return [int(v) for v in array]


class NoiseCountStream:
    """Label counts of f(x + e) over successive installments of one noise stream (see
    :meth:`SmoothedClassifier.count_stream`). ``drawn`` is the number of draws (model evaluations) so far.

    The noise is that of :class:`certification.noise_sampling.NoisyCounter`: the images x + e, e taken in order
    from the stream's :class:`certification.noise_sampling.NoiseStream`, unclipped.
    """

    def __init__(self, classify, num_classes: int, batch_size: int, x: np.ndarray, stream: NoiseStream) -> None:
        self._classify = classify
        self._num_classes = int(num_classes)
        self._x = x
        self._stream = stream
        self._buffer = np.empty((int(batch_size), *x.shape), dtype=np.float32)
        self.drawn = 0

    def draw(self, num: int) -> np.ndarray:
        """The int64 counts (K,) of the base classifier's labels over the next ``num`` draws."""
        if not isinstance(num, (int, np.integer)) or num < 0:
            raise InputError(f"the number of draws must be a non-negative integer, got {num!r}")
        counts = np.zeros(self._num_classes, dtype=np.int64)
        remaining = int(num)
        while remaining > 0:
            batch = self._buffer[: min(len(self._buffer), remaining)]
            self._stream.add_to(self._x, batch)
            counts += np.bincount(self._classify(batch), minlength=self._num_classes)[: self._num_classes]
            remaining -= len(batch)
        self.drawn += int(num)
        return counts
